#!/usr/bin/env bash
# IWSLT'14 German-English (TED talks), the split of fairseq's examples/translation/prepare-iwslt14.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LAYOUT=iwslt14
URL=${IWSLT14_URL:-http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz}

usage() {
  cat <<USAGE
Usage: $(basename "$0") --output DIR [--raw-dir DIR] [--vocab-size N] [--src de --tgt en] [...]

IWSLT'14 de-en -> OUT/data-bin, split as fairseq's prepare-iwslt14.sh: train.tags.de-en.* with tag
lines dropped, pairs filtered (1-175 words, ratio 1.5), every 23rd pair held out as valid; test =
IWSLT14.TED.dev2010 + TEDX.dev2012 + TED.tst2010 + tst2011 + tst2012 (xml <seg> lines).
Unlike fairseq's script: no Moses tokenisation and cased text (add --lowercase to match its
lowercasing), a joint sentencepiece model (default 10000 pieces) instead of BPE.
Raw files: the de-en/ directory of de-en.tgz, downloaded from
  $URL
when --raw-dir is not given (--raw-dir may point at de-en/ or at its parent).

$COMMON_OPTIONS
USAGE
}

download_raw() {
  local dir=$1
  fetch "$URL" "$dir/de-en.tgz"
  unpack "$dir/de-en.tgz" "$dir" de-en/train.tags.de-en.de
}

main "$@"
