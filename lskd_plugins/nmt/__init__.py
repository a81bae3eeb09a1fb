"""Translation recipes: data preparation, sequence-level KD data and BLEU.

- ``prepare``: raw parallel text -> normalised text -> joint sentencepiece -> fairseq data-bin.
- ``decode``: the one in-process beam-search path (fairseq's SequenceGenerator) used by
  ``seqkd`` and ``bleu``.
- ``seqkd``: ``lskd seqkd``, a teacher's translations of a corpus as a training data-bin.
- ``bleu``: ``lskd bleu``, sacreBLEU / chrF / tokenized BLEU of a checkpoint as one JSON object.

Sweeps and their tables: the study engine (``lskd_plugins.study``, ``lskd study``).
"""
