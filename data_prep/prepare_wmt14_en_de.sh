#!/usr/bin/env bash
# WMT'14 English-German: Europarl v7 + Common Crawl + News Commentary v9; newstest2013 / newstest2014.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LAYOUT=wmt14
URLS=(
  "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"
  "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"
  "http://statmt.org/wmt14/training-parallel-nc-v9.tgz"
  "http://statmt.org/wmt14/dev.tgz"
  "http://statmt.org/wmt14/test-full.tgz"
)
MARKERS=(
  "training/europarl-v7.de-en.en"
  "commoncrawl.de-en.en"
  "training/news-commentary-v9.de-en.en"
  "dev/newstest2013.en"
  "test-full/newstest2014-deen-src.en.sgm"
)

usage() {
  cat <<USAGE
Usage: $(basename "$0") --output DIR [--raw-dir DIR] [--vocab-size N] [--src en --tgt de] [...]

WMT'14 en-de -> OUT/data-bin: train = europarl-v7 + commoncrawl + news-commentary-v9 (the corpora
of fairseq's prepare-wmt14en2de.sh --icml17), pairs filtered (1-250 words, ratio 1.5);
valid = newstest2013; test = newstest2014 (full, 3003 sentences, from the sgm files).
Joint sentencepiece, default 32000 pieces. About 4.5M pairs: use --workers.
Raw files: the unpacked archives from statmt.org (downloaded when --raw-dir is not given):
$(printf '  %s\n' "${URLS[@]}")

$COMMON_OPTIONS
USAGE
}

download_raw() {
  local dir=$1 i
  for i in "${!URLS[@]}"; do
    fetch "${URLS[i]}" "$dir/$(basename "${URLS[i]}")"
    unpack "$dir/$(basename "${URLS[i]}")" "$dir" "${MARKERS[i]}"
  done
}

main "$@"
