#!/usr/bin/env bash
# The demo behind `make demo`: word-level KD from a label-smoothed teacher, on CPU, in minutes.
#
#   lskd synth-mt -> fairseq-preprocess -> teacher (fairseq's label_smoothed_cross_entropy,
#   eps 0.1) -> students (lskd_kd at T = 1 with the paper's NMT weights, and the same student
#   without KD: --kd-alpha 0) -> fairseq-generate --scoring sacrebleu on the test set.
#
# Idempotent: a finished step leaves a marker (.done) and is skipped when rerun; an interrupted
# training resumes from its checkpoint_last.pt. Settings (environment variables):
#   OUT=demo_out  SIZE=8000 (training sentences)  TEACHER_UPDATES=400  STUDENT_UPDATES=300
#   THREADS=2  BEAM=4  KD_T=1  KD_ALPHA=0.9
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,11p' "$0" | cut -c3-; exit 0; fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${OUT:-demo_out}" && cd "${OUT:-demo_out}" && pwd)
SIZE=${SIZE:-8000}
TEACHER_UPDATES=${TEACHER_UPDATES:-400}
STUDENT_UPDATES=${STUDENT_UPDATES:-300}
THREADS=${THREADS:-2}
BEAM=${BEAM:-4}
KD_T=${KD_T:-1}
KD_ALPHA=${KD_ALPHA:-0.9}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS PYTHONUNBUFFERED=1
USER_DIR="$ROOT/lskd_plugins"

for tool in lskd fairseq-preprocess fairseq-train fairseq-generate; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found on PATH; run 'make demo' (it installs .venv) or activate .venv" >&2; exit 1; }
done
mkdir -p "$OUT/logs"
step=0
say() { step=$((step + 1)); echo "[demo $step/6] $*"; }
done_marker() { [ -f "$1/.done" ]; }
# fairseq's progress lines (train/valid summaries) on the terminal, everything in the log.
progress() { tee "$1" | grep --line-buffered -E '\| (train_inner|train|valid) \||lskd: |Stopping|error' || true; }

# Teacher and students: transformers small enough for 2 CPU cores (the paper: 2+2 layers, 256).
TEACHER_ARCH=(--arch transformer --encoder-layers 2 --decoder-layers 2
  --encoder-embed-dim 64 --decoder-embed-dim 64 --encoder-ffn-embed-dim 256 --decoder-ffn-embed-dim 256
  --encoder-attention-heads 4 --decoder-attention-heads 4 --share-all-embeddings)
STUDENT_ARCH=(--arch transformer --encoder-layers 1 --decoder-layers 1
  --encoder-embed-dim 64 --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128
  --encoder-attention-heads 4 --decoder-attention-heads 4 --share-all-embeddings)
TRAIN=(--cpu --num-workers 0 --seed 1 --optimizer adam --adam-betas '(0.9, 0.98)' --lr 2e-3
  --lr-scheduler inverse_sqrt --warmup-updates 100 --dropout 0.1 --max-tokens 4096
  --log-format simple --log-interval 50 --no-progress-bar --no-epoch-checkpoints
  --validate-interval-updates 200 --save-interval-updates 200 --keep-interval-updates 1)

say "synthetic corpus: lskd synth-mt --size $SIZE -> $OUT/text"
if done_marker "$OUT/text"; then echo "  done before, skipped"; else
  lskd synth-mt --out "$OUT/text" --size "$SIZE" --seed 1 --valid 300 --test 300
  touch "$OUT/text/.done"
fi

say "fairseq-preprocess --joined-dictionary -> $OUT/data-bin"
if done_marker "$OUT/data-bin"; then echo "  done before, skipped"; else
  rm -rf "$OUT/data-bin"
  fairseq-preprocess --source-lang en --target-lang de --trainpref "$OUT/text/train" \
    --validpref "$OUT/text/valid" --testpref "$OUT/text/test" --destdir "$OUT/data-bin" \
    --joined-dictionary --workers "$THREADS" > "$OUT/logs/preprocess.log" 2>&1 \
    || { tail -20 "$OUT/logs/preprocess.log" >&2; exit 1; }
  touch "$OUT/data-bin/.done"
  echo "  dictionary: $(wc -l < "$OUT/data-bin/dict.en.txt") types (joined)"
fi

train() {  # name, then fairseq-train arguments
  local name=$1; shift
  if done_marker "$OUT/$name"; then echo "  done before, skipped"; return; fi
  if ! fairseq-train "$OUT/data-bin" "$@" --save-dir "$OUT/$name" 2>&1 | progress "$OUT/logs/$name.log" \
     || [ ! -f "$OUT/$name/checkpoint_best.pt" ]; then
    echo "demo: $name training failed; the end of $OUT/logs/$name.log:" >&2
    tail -5 "$OUT/logs/$name.log" >&2
    exit 1
  fi
  touch "$OUT/$name/.done"
}

say "teacher: label_smoothed_cross_entropy eps 0.1, $TEACHER_UPDATES updates"
train teacher "${TEACHER_ARCH[@]}" "${TRAIN[@]}" --criterion label_smoothed_cross_entropy \
  --label-smoothing 0.1 --max-update "$TEACHER_UPDATES"

say "student with word-level KD: lskd_kd T=$KD_T alpha=$KD_ALPHA (eps 0.1), $STUDENT_UPDATES updates"
train student_kd "${STUDENT_ARCH[@]}" "${TRAIN[@]}" --user-dir "$USER_DIR" --task lskd_translation \
  --teacher-path "$OUT/teacher/checkpoint_best.pt" --criterion lskd_kd --kd-alpha "$KD_ALPHA" \
  --kd-temperature "$KD_T" --label-smoothing 0.1 --max-update "$STUDENT_UPDATES"

say "same student without KD (lskd_kd --kd-alpha 0 = label_smoothed_cross_entropy), $STUDENT_UPDATES updates"
train student_nokd "${STUDENT_ARCH[@]}" "${TRAIN[@]}" --user-dir "$USER_DIR" --task lskd_translation \
  --criterion lskd_kd --kd-alpha 0 --label-smoothing 0.1 --max-update "$STUDENT_UPDATES"

say "fairseq-generate --scoring sacrebleu (test set, beam $BEAM)"
mkdir -p "$OUT/generate"
for name in teacher student_kd student_nokd; do
  result="$OUT/generate/$name.txt"
  if [ -f "$result" ] && grep -q "BLEU" "$result"; then continue; fi
  fairseq-generate "$OUT/data-bin" --user-dir "$USER_DIR" --path "$OUT/$name/checkpoint_best.pt" \
    --gen-subset test --beam "$BEAM" --batch-size 128 --cpu --scoring sacrebleu \
    > "$result.tmp" 2> "$OUT/logs/generate_$name.log" || { tail -20 "$OUT/logs/generate_$name.log" >&2; exit 1; }
  mv "$result.tmp" "$result"
done

echo
echo "Test BLEU (sacreBLEU, fairseq-generate --scoring sacrebleu, beam $BEAM) in $OUT:"
for name in teacher student_kd student_nokd; do
  bleu=$(grep -o "BLEU = [0-9.]*" "$OUT/generate/$name.txt" | tail -1 | cut -d' ' -f3)
  printf '  %-13s %6s   %s\n' "$name" "$bleu" "$(grep -m1 -o 'num. shared model params: [0-9,]*' "$OUT/logs/$name.log" | cut -d: -f2 | tr -d ' ') parameters"
done
