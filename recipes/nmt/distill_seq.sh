#!/usr/bin/env bash
# Sequence-level KD (Kim & Rush 2016): for every teacher alpha in ALPHAS, decode the training set
# with the teacher (lskd seqkd, beam BEAM), then train a student on it with ordinary cross-entropy
# (label smoothing SEQ_LS, default 0). SEQ_WORD_KD=1 also trains seq-level + word-level KD students
# for every T in TEMPS. Through the study engine; decoding resumes where it stopped (shards).
#   DATA=data/multi30k/data-bin bash recipes/nmt/distill_seq.sh
#   DATA=... SEQ_WORD_KD=1 TEMPS="1" bash recipes/nmt/distill_seq.sh
# Output: $SAVE/runs/translation/{seqkd,seq,seqword}_eps<ALPHA>..._s<SEED INDEX>-<key>/, $SAVE/report.md.
# All settings: recipes/nmt/common.sh and docs/study.md.
case "${1:-}" in -h|--help) sed -n '2,10p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"
if [ "${SEQ_WORD_KD:-0}" = 1 ]; then run_study "[seq, seqword]"; else run_study "[seq]"; fi
