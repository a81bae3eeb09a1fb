#!/usr/bin/env bash
# Multi30k task 1 (Flickr30k captions), en-de by default: train / val / the four official test sets.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LAYOUT=multi30k
BASE_URL=${MULTI30K_URL:-https://github.com/multi30k/dataset/raw/master/data/task1/raw}

usage() {
  cat <<USAGE
Usage: $(basename "$0") --output DIR [--raw-dir DIR] [--vocab-size N] [--src en --tgt de] [...]

Multi30k task 1 -> OUT/data-bin (joint sentencepiece, fairseq-preprocess --joined-dictionary).
Splits: train (29000), valid = val (1014), and the official test sets as fairseq subsets:
test = test_2016_flickr (1000), test1 = test_2017_flickr (1000), test2 = test_2017_mscoco (461),
test3 = test_2018_flickr (1071), named in DIR/data-bin/test_sets.tsv (lskd bleu --subset takes
either name). A test set whose raw files are absent is left out (with a note).
Raw files: {train,val,test_2016_flickr,test_2017_flickr,test_2017_mscoco,test_2018_flickr}.{en,de}[.gz],
downloaded from
  $BASE_URL
when --raw-dir is not given. Offline here: --raw-dir ../shared/data/multi30k/raw
Default vocabulary: 8000 pieces. Other languages of Multi30k (fr, cs): --src/--tgt.

$COMMON_OPTIONS
USAGE
}

download_raw() {
  local dir=$1 src=en tgt=de i
  # the direction, when given, decides which languages to fetch
  for ((i = 1; i <= ${#ARGS[@]}; i++)); do
    case "${ARGS[i-1]}" in --src) src=${ARGS[i]} ;; --tgt) tgt=${ARGS[i]} ;; esac
  done
  for split in train val test_2016_flickr; do
    for lang in "$src" "$tgt"; do
      fetch "$BASE_URL/$split.$lang.gz" "$dir/$split.$lang.gz"
    done
  done
  for split in test_2017_flickr test_2017_mscoco test_2018_flickr; do
    for lang in "$src" "$tgt"; do
      fetch_optional "$BASE_URL/$split.$lang.gz" "$dir/$split.$lang.gz"
    done
  done
}

ARGS=("$@")
main "$@"
