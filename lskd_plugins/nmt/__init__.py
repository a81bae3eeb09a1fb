"""Translation tools: data preparation, sequence-level KD data, BLEU, the embedded corpus.

- ``prepare``: ``lskd prepare-mt``, raw parallel text -> normalised text -> joint sentencepiece ->
  fairseq data-bin (every test set of the layout, named in ``data-bin/test_sets.tsv``).
- ``synth_mt``: ``lskd synth-mt``, the embedded synthetic corpus (grammar: docs/synth_mt.md).
- ``decode``: the one in-process beam-search path (fairseq's SequenceGenerator) used by
  ``seqkd`` and ``bleu``; ``inputs``: what they check before decoding (data-bin, checkpoint kind,
  dictionaries symbol by symbol, truncated files); ``options``: the options they share.
- ``seqkd``: ``lskd seqkd``, a teacher's translations of a corpus as a training data-bin.
- ``bleu``: ``lskd bleu``, sacreBLEU / chrF / tokenized BLEU of a checkpoint as one JSON object.

Sweeps and their tables: the study engine (``lskd_plugins.study``, ``lskd study``).
"""
