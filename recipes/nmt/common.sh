# Shared settings of the NMT recipes (sourced by train_teacher.sh, distill_word.sh, distill_seq.sh,
# evaluate.sh). Every setting is an environment variable; the defaults are the paper's NMT settings
# (Tan et al.'s transformer_iwslt_de_en_small: 2+2 layers, embed 256, FFN 1024, 4 heads, Adam
# (0.9, 0.98), lr 5e-4, inverse_sqrt with 4000 warm-up updates from 1e-7, dropout 0.3, no clipping,
# no weight decay, max-tokens 4096, all embeddings shared; students: 0.9 KD + 0.1 label-smoothed
# CE with eps 0.1; beam 4). See docs/nmt.md for the table of variables.
#
#   DATA          fairseq data-bin with a joined dictionary (required; data_prep/prepare_*.sh)
#   SAVE          directory of the sweep (default runs/nmt): one sub-directory per run
#   ALPHAS        teacher label smoothing values (default "0.0 0.1"); ALPHA=x runs only x
#   TEMPS         KD temperatures (default "1 2 3 64")
#   KD_ALPHA      weight of the KD term (default 0.9); STUDENT_LS: student's own LS eps (0.1)
#   KD_T2_SCALING 1 (default): multiply the KD term by T^2; 0: --no-kd-t2-scaling
#   SEQ_LS        label smoothing of sequence-level students' CE (default 0.0: ordinary CE)
#   SEQ_WORD_KD   1: distill_seq.sh also trains seq-level + word-level KD students for TEMPS (default 0)
#   ARCH ENC_LAYERS DEC_LAYERS EMBED_DIM FFN_DIM HEADS   the model (default transformer_iwslt_de_en 2 2 256 1024 4)
#   STUDENT_ARCH_ARGS  model arguments of students (default: the teacher's)
#   LR WARMUP WARMUP_INIT_LR DROPOUT MAX_TOKENS UPDATE_FREQ MAX_UPDATE PATIENCE SEED CLIP_NORM
#   BEAM          beam size of sequence-level KD decoding and evaluation (default 4)
#   MAX_LEN_B     longest hypothesis in tokens when decoding (default 200, fairseq's; QUICK: 50)
#   GPUS          GPUs in all (default: all visible; 0 = CPU). GPUS>1 on one machine: fairseq's
#                 --distributed-world-size spawns one process per GPU
#   LAUNCHER      a command put before fairseq-train for several machines, e.g.
#                 LAUNCHER="torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500"
#                 or, inside an sbatch script, LAUNCHER="srun" with DIST_PORT=12345 (see docs/nmt.md)
#   DIST_PORT     --distributed-port (needed by fairseq's SLURM detection)
#   FP16          1: --fp16 (GPU only; default 0)
#   CKPT          checkpoint file name that students distil from and evaluate.sh scores (checkpoint_best.pt)
#   EXTRA_TRAIN_ARGS  appended to every fairseq-train command
#   QUICK         1: a CPU smoke run (tiny model, 30 updates, GPUS=0); everything else still applies
#   PYTHON LSKD FAIRSEQ_TRAIN  the programs (default: python, lskd, fairseq-train on PATH)

set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
PYTHON=${PYTHON:-python}
LSKD=${LSKD:-lskd}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}

die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $(basename "$0"): $*" >&2; }

: "${DATA:=}"
[ -n "$DATA" ] || die "set DATA to a fairseq data-bin, e.g. DATA=data/multi30k/data-bin (made by data_prep/prepare_multi30k.sh --out data/multi30k)"
[ -d "$DATA" ] || die "DATA=$DATA is not a directory"
ls "$DATA"/dict.*.txt >/dev/null 2>&1 || die "DATA=$DATA is not a fairseq data-bin (no dict.*.txt)"

QUICK=${QUICK:-0}
SAVE=${SAVE:-runs/nmt}
ALPHAS=${ALPHA:-${ALPHAS:-0.0 0.1}}
TEMPS=${TEMPS:-1 2 3 64}
KD_ALPHA=${KD_ALPHA:-0.9}
STUDENT_LS=${STUDENT_LS:-0.1}
KD_T2_SCALING=${KD_T2_SCALING:-1}
SEQ_LS=${SEQ_LS:-0.0}
SEQ_WORD_KD=${SEQ_WORD_KD:-0}
BEAM=${BEAM:-4}
CKPT=${CKPT:-checkpoint_best.pt}
SEED=${SEED:-1}
FP16=${FP16:-0}
LAUNCHER=${LAUNCHER:-}
DIST_PORT=${DIST_PORT:-}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}

if [ "$QUICK" = 1 ]; then
  # a smoke run on CPU in seconds: same commands, a toy model and a handful of updates
  ARCH=${ARCH:-transformer}; ENC_LAYERS=${ENC_LAYERS:-1}; DEC_LAYERS=${DEC_LAYERS:-1}
  EMBED_DIM=${EMBED_DIM:-32}; FFN_DIM=${FFN_DIM:-64}; HEADS=${HEADS:-2}
  LR=${LR:-5e-3}; WARMUP=${WARMUP:-10}; DROPOUT=${DROPOUT:-0.1}; MAX_TOKENS=${MAX_TOKENS:-2000}
  MAX_UPDATE=${MAX_UPDATE:-30}; PATIENCE=${PATIENCE:--1}; GPUS=${GPUS:-0}
  SEQKD_SHARD_SIZE=${SEQKD_SHARD_SIZE:-1000}; MAX_LEN_B=${MAX_LEN_B:-50}
else
  ARCH=${ARCH:-transformer_iwslt_de_en}; ENC_LAYERS=${ENC_LAYERS:-2}; DEC_LAYERS=${DEC_LAYERS:-2}
  EMBED_DIM=${EMBED_DIM:-256}; FFN_DIM=${FFN_DIM:-1024}; HEADS=${HEADS:-4}
  LR=${LR:-5e-4}; WARMUP=${WARMUP:-4000}; DROPOUT=${DROPOUT:-0.3}; MAX_TOKENS=${MAX_TOKENS:-4096}
  MAX_UPDATE=${MAX_UPDATE:-300000}; PATIENCE=${PATIENCE:-10}
  SEQKD_SHARD_SIZE=${SEQKD_SHARD_SIZE:-10000}
fi
MAX_LEN_B=${MAX_LEN_B:-200}
WARMUP_INIT_LR=${WARMUP_INIT_LR:-1e-07}
CLIP_NORM=${CLIP_NORM:-0.0}
UPDATE_FREQ=${UPDATE_FREQ:-1}
LOG_INTERVAL=${LOG_INTERVAL:-100}
if [ -z "${GPUS:-}" ]; then
  GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
fi

ARCH_ARGS="--arch $ARCH --encoder-layers $ENC_LAYERS --decoder-layers $DEC_LAYERS \
--encoder-embed-dim $EMBED_DIM --decoder-embed-dim $EMBED_DIM \
--encoder-ffn-embed-dim $FFN_DIM --decoder-ffn-embed-dim $FFN_DIM \
--encoder-attention-heads $HEADS --decoder-attention-heads $HEADS --share-all-embeddings"
STUDENT_ARCH_ARGS=${STUDENT_ARCH_ARGS:-$ARCH_ARGS}

if [ -n "$LAUNCHER" ]; then
  # torchrun and srun start a script file: give them fairseq-train's path
  FAIRSEQ_TRAIN=$(command -v "$FAIRSEQ_TRAIN") || die "fairseq-train not found on PATH (activate the venv)"
fi
if [ "$GPUS" = 0 ]; then
  DEVICE_ARGS=(--cpu)
  DECODE_DEVICE=cpu
else
  DEVICE_ARGS=()
  [ "$GPUS" -gt 1 ] && DEVICE_ARGS+=(--distributed-world-size "$GPUS")
  [ -n "$DIST_PORT" ] && DEVICE_ARGS+=(--distributed-port "$DIST_PORT")
  [ "$FP16" = 1 ] && DEVICE_ARGS+=(--fp16)
  DECODE_DEVICE=cuda
fi

# Run names; lskd_plugins/nmt/sweep_table.py reads them back (keep the two in step).
teacher_dir() { echo "$SAVE/teacher_a$1"; }
word_dir() { echo "$SAVE/word_a$1_T$2"; }
seqkd_dir() { echo "$SAVE/seqkd_a$1"; }
seq_dir() { echo "$SAVE/seq_a$1"; }
seqword_dir() { echo "$SAVE/seqword_a$1_T$2"; }

teacher_ckpt() {
  local ckpt
  ckpt="$(teacher_dir "$1")/$CKPT"
  [ -f "$ckpt" ] || die "no teacher checkpoint $ckpt; run ALPHA=$1 recipes/nmt/train_teacher.sh first"
  echo "$ckpt"
}

# train RUN_DIR DATA_BIN ARGS...: fairseq-train with the shared settings. Skipped when RUN_DIR/.done
# exists; an interrupted run resumes from RUN_DIR/checkpoint_last.pt (fairseq's own resuming).
train() {
  local run_dir=$1 data_bin=$2
  shift 2
  if [ -f "$run_dir/.done" ] && [ -f "$run_dir/$CKPT" ]; then
    log "skip $run_dir (done; delete $run_dir/.done to train again)"
    return 0
  fi
  mkdir -p "$run_dir"
  local patience=()
  [ "$PATIENCE" != "-1" ] && patience=(--patience "$PATIENCE")
  local cmd=($LAUNCHER "$FAIRSEQ_TRAIN" "$data_bin" --user-dir "$REPO_ROOT/lskd_plugins"
    --optimizer adam --adam-betas "(0.9, 0.98)" --clip-norm "$CLIP_NORM" --weight-decay 0.0
    --lr "$LR" --lr-scheduler inverse_sqrt --warmup-init-lr "$WARMUP_INIT_LR" --warmup-updates "$WARMUP"
    --dropout "$DROPOUT" --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ"
    --max-update "$MAX_UPDATE" "${patience[@]}" --seed "$SEED"
    --save-dir "$run_dir" --no-epoch-checkpoints --log-format simple --log-interval "$LOG_INTERVAL"
    "${DEVICE_ARGS[@]}" "$@" $EXTRA_TRAIN_ARGS)
  log "train $run_dir"
  echo "${cmd[*]}" > "$run_dir/command.txt"
  "${cmd[@]}" > >(tee -a "$run_dir/train.log") 2>&1
  [ -f "$run_dir/$CKPT" ] || die "fairseq-train wrote no $run_dir/$CKPT (see $run_dir/train.log)"
  touch "$run_dir/.done"
}

# The word-level KD criterion of the paper's NMT students, at temperature $1.
kd_args() {
  local t=$1 scale=()
  [ "$KD_T2_SCALING" = 1 ] || scale=(--no-kd-t2-scaling)
  echo --criterion lskd_kd --kd-alpha "$KD_ALPHA" --kd-temperature "$t" --label-smoothing "$STUDENT_LS" "${scale[@]}"
}
