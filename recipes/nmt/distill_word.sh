#!/usr/bin/env bash
# Word-level KD students: for every teacher alpha in ALPHAS and temperature T in TEMPS (default
# "1 2 3 64"), loss = (1 - KD_ALPHA) * CE_eps(STUDENT_LS) + KD_ALPHA * T^2 * KL(p_t^T || p_s^T)
# per target token over the full vocabulary (--task lskd_translation --criterion lskd_kd), through
# the study engine (teachers are trained first when missing, reused when finished).
#   DATA=data/multi30k/data-bin bash recipes/nmt/distill_word.sh
#   DATA=... ALPHA=0.1 TEMPS="1 64" bash recipes/nmt/distill_word.sh
# Output: $SAVE/runs/translation/word_eps<ALPHA>_T<T>_s<SEED INDEX>-<key>/, $SAVE/report.md.
# All settings: recipes/nmt/common.sh and docs/study.md.
case "${1:-}" in -h|--help) sed -n '2,10p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"
run_study "[word]"
