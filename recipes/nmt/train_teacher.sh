#!/usr/bin/env bash
# Teachers with label smoothing ALPHA (default: both 0.0 and 0.1), fairseq's own
# label_smoothed_cross_entropy (true class 1 - alpha, the others alpha / (V - 1)).
#   DATA=data/multi30k/data-bin bash recipes/nmt/train_teacher.sh            # both teachers
#   DATA=... ALPHA=0.1 bash recipes/nmt/train_teacher.sh                      # one
#   DATA=... QUICK=1 SAVE=/tmp/nmt bash recipes/nmt/train_teacher.sh          # CPU smoke run
# Output: $SAVE/teacher_a<ALPHA>/{checkpoint_best.pt,checkpoint_last.pt,train.log,command.txt}.
# All settings: recipes/nmt/common.sh and docs/nmt.md.
case "${1:-}" in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"

for a in $ALPHAS; do
  train "$(teacher_dir "$a")" "$DATA" --task translation $ARCH_ARGS \
    --criterion label_smoothed_cross_entropy --label-smoothing "$a"
done
log "teachers done: $(for a in $ALPHAS; do printf '%s ' "$(teacher_dir "$a")/$CKPT"; done)"
