#!/usr/bin/env bash
# The paper's table of a sweep: the study engine's report over every kind (KINDS, default
# "word seq"; SEQ_WORD_KD=1 adds seqword). Every run is scored on every test set of DATA by lskd
# bleu (sacreBLEU + signature, chrF, tokenized BLEU) when it finishes; finished runs are reused by
# their keys, so this trains only what is missing.
#   DATA=data/multi30k/data-bin SAVE=runs/nmt bash recipes/nmt/evaluate.sh
# Output: $SAVE/report.md and $SAVE/report.json (tables with mean +- interval, comparisons, figures).
# All settings: recipes/nmt/common.sh and docs/study.md.
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"
KINDS=${KINDS:-word seq}
[ "${SEQ_WORD_KD:-0}" = 1 ] && KINDS="$KINDS seqword"
run_study "[$(comma $KINDS)]"
cat "$SAVE/report.md"
