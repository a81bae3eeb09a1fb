#!/usr/bin/env bash
# Score every checkpoint of a sweep on SUBSET (default test) of DATA with lskd bleu's code path
# (beam BEAM) and write the paper's table: rows = teacher, word-level KD at each T, sequence-level
# KD (+ word-level at each T); columns = noLS / LS teacher (each alpha of the sweep).
#   DATA=data/multi30k/data-bin SAVE=runs/nmt bash recipes/nmt/evaluate.sh
# Output: $SAVE/results.md and $SAVE/results.json (sacreBLEU + signature, chrF, tokenized BLEU);
# per run: $SAVE/<run>/eval/<SUBSET>.{hyp,ref,src,bleu.json} (reused while newer than the checkpoint).
# All settings: recipes/nmt/common.sh and docs/nmt.md.
case "${1:-}" in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"

[ -d "$SAVE" ] || die "SAVE=$SAVE does not exist; train something first"
PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m lskd_plugins.nmt.sweep_table \
  --save "$SAVE" --data "$DATA" --subset "${SUBSET:-test}" --beam "$BEAM" --max-len-b "$MAX_LEN_B" --checkpoint "$CKPT" \
  --device "$DECODE_DEVICE" --max-tokens "${EVAL_MAX_TOKENS:-$MAX_TOKENS}" --out "$SAVE/results"
