"""Translation recipes: data preparation, sequence-level KD data, BLEU, and sweep tables.

- ``prepare``: raw parallel text -> normalised text -> joint sentencepiece -> fairseq data-bin.
- ``decode``: the one in-process beam-search path (fairseq's SequenceGenerator) used by
  ``seqkd`` and ``bleu``.
- ``seqkd``: ``lskd seqkd``, a teacher's translations of a corpus as a training data-bin.
- ``bleu``: ``lskd bleu``, sacreBLEU / chrF / tokenized BLEU of a checkpoint as one JSON object.
- ``sweep_table``: every checkpoint of a recipe sweep -> Markdown + JSON table (paper layout).
"""
