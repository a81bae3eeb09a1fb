#!/usr/bin/env bash
# Sequence-level KD (Kim & Rush 2016): for every teacher alpha in ALPHAS, decode the training set
# with the teacher (lskd seqkd, beam BEAM) into $SAVE/seqkd_a<ALPHA>/data-bin, then train a student
# on it with ordinary cross-entropy (label smoothing SEQ_LS, default 0) -> $SAVE/seq_a<ALPHA>/.
# SEQ_WORD_KD=1 also trains seq-level + word-level KD students for every T in TEMPS
# (-> $SAVE/seqword_a<ALPHA>_T<T>/).
#   DATA=data/multi30k/data-bin bash recipes/nmt/distill_seq.sh
#   DATA=... SEQ_WORD_KD=1 TEMPS="1" bash recipes/nmt/distill_seq.sh
# Decoding resumes where it stopped (shards); it uses one GPU (or the CPU when GPUS=0).
# All settings: recipes/nmt/common.sh and docs/nmt.md.
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"

for a in $ALPHAS; do
  teacher=$(teacher_ckpt "$a")
  kd_data="$(seqkd_dir "$a")/data-bin"
  if [ -f "$(seqkd_dir "$a")/seqkd.json" ] && [ -d "$kd_data" ] && grep -q '"complete": true' "$(seqkd_dir "$a")/seqkd.json"; then
    log "skip seqkd for alpha $a (done: $kd_data)"
  else
    log "seqkd: decoding the training set with $teacher"
    "$LSKD" seqkd --data "$DATA" --path "$teacher" --out "$(seqkd_dir "$a")" --subset train \
      --beam "$BEAM" --max-len-b "$MAX_LEN_B" --max-tokens "${SEQKD_MAX_TOKENS:-$MAX_TOKENS}" --shard-size "$SEQKD_SHARD_SIZE" \
      --device "$DECODE_DEVICE" ${SEQKD_ARGS:-}
  fi
  train "$(seq_dir "$a")" "$kd_data" --task translation $STUDENT_ARCH_ARGS \
    --criterion label_smoothed_cross_entropy --label-smoothing "$SEQ_LS"
  if [ "$SEQ_WORD_KD" = 1 ]; then
    for t in $TEMPS; do
      # shellcheck disable=SC2046
      train "$(seqword_dir "$a" "$t")" "$kd_data" --task lskd_translation --teacher-path "$teacher" \
        $STUDENT_ARCH_ARGS $(kd_args "$t")
    done
  fi
done
log "sequence-level students done"
