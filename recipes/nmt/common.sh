# Shared settings of the NMT recipes (sourced by train_teacher.sh, distill_word.sh, distill_seq.sh,
# evaluate.sh). They no longer loop over the grid themselves: each one calls the study engine
# (`lskd study recipes/study/paper_iwslt14.yaml`, docs/study.md) with the environment below turned
# into overrides, so runs are keyed by their settings, reused when finished, resumed when killed,
# and the table comes from the engine's report ($SAVE/report.md, report.json). Defaults are the
# paper's NMT settings (Tan et al.: 2+2 layers, embed 256, FFN 1024, 4 heads, Adam (0.9, 0.98),
# lr 5e-4, inverse_sqrt, 4000 warm-up updates from 1e-7, dropout 0.3, max-tokens 4096, shared
# embeddings; students 0.9 KD + 0.1 label-smoothed CE with eps 0.1; beam 4).
#
#   DATA          fairseq data-bin with a joined dictionary (required; data_prep/prepare_*.sh)
#   SAVE          the study folder (default runs/nmt): runs/, report.md, report.json
#   ALPHAS        teacher label smoothing values (default "0.0 0.1"); ALPHA=x runs only x
#   TEMPS         KD temperatures (default "1 2 3 64");  SEEDS  number of seeds (default 1); SEED first seed
#   KD_ALPHA      weight of the KD term (default 0.9); STUDENT_LS: student's own LS eps (0.1)
#   SEQ_LS        label smoothing of sequence-level students' CE (default 0.0: ordinary CE)
#   SEQ_WORD_KD   1: distill_seq.sh also trains seq-level + word-level KD students for TEMPS (default 0)
#   ARCH ENC_LAYERS DEC_LAYERS EMBED_DIM FFN_DIM HEADS   the model (default transformer_iwslt_de_en 2 2 256 1024 4)
#   LR WARMUP WARMUP_INIT_LR DROPOUT MAX_TOKENS UPDATE_FREQ MAX_UPDATE PATIENCE CLIP_NORM
#   BEAM          beam size of sequence-level KD decoding and evaluation (default 4)
#   MAX_LEN_B     longest hypothesis in tokens when decoding (default 200; QUICK: 50)
#   GPUS          runs at once, one GPU each (default: all visible; 0 = CPU, one run at a time)
#   JOBS          runs at once on CPU (default 1);  LAUNCHER=slurm: one SLURM job per run (submitit)
#   FP16          1: --fp16 (GPU only; default 0)
#   CKPT          checkpoint file name that students distil from and evaluation scores (checkpoint_best.pt)
#   STUDY_ARGS    more `lskd study` arguments, e.g. "--set translation.student.max-update=1000"
#   QUICK         1: a CPU smoke run (tiny model, 30 updates, GPUS=0); everything else still applies
#   LSKD          the lskd program (default: lskd on PATH)
# Old variables that no longer apply (each run has its own folder, named by its key): LAUNCHER for
# torchrun/srun (use LAUNCHER=slurm), DIST_PORT, EXTRA_TRAIN_ARGS (use STUDY_ARGS with --set).

set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$RECIPE_DIR/../.." && pwd)
LSKD=${LSKD:-lskd}

die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }

: "${DATA:=}"
[ -n "$DATA" ] || die "set DATA to a fairseq data-bin, e.g. DATA=data/multi30k/data-bin (made by data_prep/prepare_multi30k.sh --out data/multi30k)"
[ -d "$DATA" ] || die "DATA=$DATA is not a directory"
ls "$DATA"/dict.*.txt >/dev/null 2>&1 || die "DATA=$DATA is not a fairseq data-bin (no dict.*.txt)"

QUICK=${QUICK:-0}
SAVE=${SAVE:-runs/nmt}
ALPHAS=${ALPHA:-${ALPHAS:-0.0 0.1}}
TEMPS=${TEMPS:-1 2 3 64}
if [ "$QUICK" = 1 ]; then
  ARCH=${ARCH:-transformer}; ENC_LAYERS=${ENC_LAYERS:-1}; DEC_LAYERS=${DEC_LAYERS:-1}
  EMBED_DIM=${EMBED_DIM:-32}; FFN_DIM=${FFN_DIM:-64}; HEADS=${HEADS:-2}
  LR=${LR:-5e-3}; WARMUP=${WARMUP:-10}; DROPOUT=${DROPOUT:-0.1}; MAX_TOKENS=${MAX_TOKENS:-2000}
  MAX_UPDATE=${MAX_UPDATE:-30}; PATIENCE=${PATIENCE:--1}; GPUS=${GPUS:-0}; MAX_LEN_B=${MAX_LEN_B:-50}
fi
if [ -z "${GPUS:-}" ]; then
  GPUS=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
fi
comma() { echo "$*" | tr -s ' ' ',' ; }

# The environment as `lskd study` overrides of the paper config (only what is set).
ARGS=(--output "$SAVE" --alphas "$(comma $ALPHAS)" --temps "$(comma $TEMPS)" --seeds "${SEEDS:-1}"
  --set "translation.data=$(cd "$DATA" && pwd)" --set translation.prepare=null)
[ -n "${SEED:-}" ] && ARGS+=(--first-seed "$SEED")
set_opt() { [ -n "${2:-}" ] && ARGS+=(--set "translation.$1=$2") || true; }
set_opt kd_alpha "${KD_ALPHA:-}"; set_opt student_smoothing "${STUDENT_LS:-}"; set_opt seq_smoothing "${SEQ_LS:-}"
set_opt beam "${BEAM:-}"; set_opt max_len_b "${MAX_LEN_B:-}"; set_opt checkpoint "${CKPT:-}"
set_opt common.arch "${ARCH:-}"; set_opt common.encoder-layers "${ENC_LAYERS:-}"
set_opt common.decoder-layers "${DEC_LAYERS:-}"
for side in encoder decoder; do
  set_opt "common.$side-embed-dim" "${EMBED_DIM:-}"; set_opt "common.$side-ffn-embed-dim" "${FFN_DIM:-}"
  set_opt "common.$side-attention-heads" "${HEADS:-}"
done
set_opt common.lr "${LR:-}"; set_opt common.warmup-updates "${WARMUP:-}"
set_opt common.warmup-init-lr "${WARMUP_INIT_LR:-}"; set_opt common.dropout "${DROPOUT:-}"
set_opt common.max-tokens "${MAX_TOKENS:-}"; set_opt common.update-freq "${UPDATE_FREQ:-}"
set_opt common.max-update "${MAX_UPDATE:-}"; set_opt common.clip-norm "${CLIP_NORM:-}"
if [ "${PATIENCE:-}" = "-1" ]; then ARGS+=(--set translation.common.patience=null); else set_opt common.patience "${PATIENCE:-}"; fi
if [ "$GPUS" = 0 ]; then
  ARGS+=(--device cpu --jobs "${JOBS:-1}" --set translation.common.fp16=false)
else
  ARGS+=(--device cuda --jobs "$GPUS")
  [ "${FP16:-0}" = 1 ] || ARGS+=(--set translation.common.fp16=false)
fi
[ "${LAUNCHER:-}" = slurm ] && ARGS+=(--launcher slurm)
[ "$QUICK" = 1 ] && ARGS+=(--set translation.diffusion=false --set translation.common.log-interval=10)
read -r -a EXTRA_STUDY <<< "${STUDY_ARGS:-}"

# run_study KINDS: the engine on the paper config with the KD kinds KINDS (a YAML list).
run_study() {
  "$LSKD" study "$REPO_ROOT/recipes/study/paper_iwslt14.yaml" "${ARGS[@]}" \
    --set "translation.kinds=$1" "${EXTRA_STUDY[@]}"
}
