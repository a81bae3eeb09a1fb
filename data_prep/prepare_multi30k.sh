#!/usr/bin/env bash
# Multi30k task 1 (Flickr30k captions), en-de by default: train / val / test_2016_flickr.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LAYOUT=multi30k
BASE_URL=${MULTI30K_URL:-https://github.com/multi30k/dataset/raw/master/data/task1/raw}

usage() {
  cat <<USAGE
Usage: $(basename "$0") --out DIR [--raw-dir DIR] [--vocab-size N] [--src en --tgt de] [...]

Multi30k task 1 -> OUT/data-bin (joint sentencepiece, fairseq-preprocess --joined-dictionary).
Splits: train (29000), valid = val (1014), test = test_2016_flickr (1000).
Raw files: {train,val,test_2016_flickr}.{en,de}[.gz], downloaded from
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
}

ARGS=("$@")
main "$@"
