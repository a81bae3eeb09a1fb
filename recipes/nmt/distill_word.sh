#!/usr/bin/env bash
# Word-level KD students: for every teacher alpha in ALPHAS and temperature T in TEMPS (default
# "1 2 3 64"), loss = (1 - KD_ALPHA) * CE_eps(STUDENT_LS) + KD_ALPHA * T^2 * KL(p_t^T || p_s^T)
# per target token over the full vocabulary (--task lskd_translation --criterion lskd_kd).
#   DATA=data/multi30k/data-bin bash recipes/nmt/distill_word.sh
#   DATA=... ALPHA=0.1 TEMPS="1 64" bash recipes/nmt/distill_word.sh
# Needs the teachers of train_teacher.sh. Output: $SAVE/word_a<ALPHA>_T<T>/.
# All settings: recipes/nmt/common.sh and docs/nmt.md.
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"

for a in $ALPHAS; do
  teacher=$(teacher_ckpt "$a")
  for t in $TEMPS; do
    # shellcheck disable=SC2046
    train "$(word_dir "$a" "$t")" "$DATA" --task lskd_translation --teacher-path "$teacher" \
      $STUDENT_ARCH_ARGS $(kd_args "$t")
  done
done
log "word-level students done"
