"""``lskd study CONFIG --miniature``: every step of a study configuration, for real, at a size that
runs on two CPU cores in about a minute; its numbers mean nothing.

- ``raw``: miniature raw data sets in each paper configuration's native layout (ImageNet class
  folders, CUB-200-2011's tarball with its tables, IWSLT'14's ``de-en/`` files, WMT'14's unpacked
  statmt.org archives), from ``lskd synth-mt`` sentences and scikit-learn's embedded digits;
- ``weights``: timm's pretrained weights served from a local Hugging Face cache made for the
  occasion (``HF_HUB_OFFLINE=1``), through timm's own loading path;
- ``rewrite``: the configuration rewritten into its miniature (data paths, sizes, one seed, two
  temperatures) and the replacements of what a CPU cannot do, each one printed line.
"""
