#!/usr/bin/env bash
# Teachers with label smoothing ALPHA (default: both 0.0 and 0.1), fairseq's own
# label_smoothed_cross_entropy (true class 1 - alpha, the others alpha / (V - 1)), and the no-KD
# baseline student, through the study engine (lskd study; no loops here).
#   DATA=data/multi30k/data-bin bash recipes/nmt/train_teacher.sh            # both teachers
#   DATA=... ALPHA=0.1 bash recipes/nmt/train_teacher.sh                      # one
#   DATA=... QUICK=1 SAVE=/tmp/nmt bash recipes/nmt/train_teacher.sh          # CPU smoke run
# Output: $SAVE/runs/translation/teacher_eps<ALPHA>_s<SEED INDEX>-<key>/, $SAVE/report.md.
# All settings: recipes/nmt/common.sh and docs/study.md.
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
source "$(dirname "$0")/common.sh"
run_study "[]"
