# Shared logic of the image recipes (sourced, not run). A recipe sets the models and
# hyper-parameters as bash arrays, then calls run_study. Environment (all optional unless noted):
#   DATA     ImageFolder root with train/ and val/ (required except where the recipe builds it)
#   OUT      runs folder (default: runs/<recipe name>)
#   GPUS     1 = one process; N > 1 = torchrun --nproc_per_node=N (batch sizes are per GPU)
#   TEMPS    KD temperatures (default "1 2 3 64");  ALPHAS  teacher smoothing (default "0 0.1")
#   WORKERS  data-loader processes per GPU (default 8); AMP=1 adds --amp
#   QUICK=1  a CPU smoke run: 1 epoch on a few images (the string QUICK_ARGS replaces the
#            recipe's QUICK_DEFAULT arguments, appended last so they win)
#   EXTRA    extra arguments for every `lskd image-train` call (e.g. "--device cpu")
# Every run goes to its own folder and is skipped when its summary.json exists; a killed run
# resumes from its checkpoint_last.pth when the recipe is started again.
set -euo pipefail

RECIPE=$(basename "${0%.sh}")
OUT=${OUT:-runs/$RECIPE}
GPUS=${GPUS:-1}
TEMPS=${TEMPS:-"1 2 3 64"}
ALPHAS=${ALPHAS:-"0 0.1"}
WORKERS=${WORKERS:-8}
QUICK=${QUICK:-0}
TEACHER_CKPT=${TEACHER_CKPT:-checkpoint_last.pth}   # which teacher file the students distil from
if [ "$QUICK" = 1 ]; then
  QUICK_DEFAULT=${QUICK_DEFAULT:-"--epochs 1 --limit-train 64 --limit-val 32 --img-size 64 --batch-size 16 --workers 0 --warmup-epochs 0 --lr 0.01"}
  read -r -a QUICK_ARGS <<< "${QUICK_ARGS:-$QUICK_DEFAULT}"
else
  QUICK_ARGS=()
fi
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
AMP_ARGS=()
[ "${AMP:-0}" = 1 ] && AMP_ARGS=(--amp)

teacher_dir() { echo "$OUT/teacher_a$1"; }
student_dir() { echo "$OUT/student_a$1_T$2"; }
ls_kind() { awk -v a="$1" 'BEGIN { print (a > 0) ? "LS" : "noLS" }'; }

# image_train RUN_DIR ARGS...: one run, skipped when done, resumed when interrupted.
image_train() {
  local out=$1; shift
  if [ -f "$out/summary.json" ]; then
    echo "== skip $out (summary.json exists)"
    return 0
  fi
  local launch=(lskd image-train)
  if [ "$GPUS" -gt 1 ]; then
    launch=(torchrun --standalone --nproc_per_node="$GPUS" --no-python lskd image-train)
  fi
  echo "== $out"
  "${launch[@]}" --data "$DATA" --output "$out" --resume --workers "$WORKERS" "$@" \
    "${AMP_ARGS[@]}" "${QUICK_ARGS[@]}" "${EXTRA_ARGS[@]}"
}

# run_study: both teachers, then every (teacher, T) student, then the results table.
# Uses: TEACHER_MODEL, STUDENT_MODEL, TEACHER_ARGS (array), STUDENT_ARGS (array),
# and optionally teacher_init ALPHA / student_init, functions printing extra arguments.
run_study() {
  : "${DATA:?set DATA to an ImageFolder root with train/ and val/}"
  mkdir -p "$OUT"
  local alpha t init
  for alpha in $ALPHAS; do
    init=()
    if declare -F teacher_init >/dev/null; then read -r -a init <<< "$(teacher_init "$alpha")"; fi
    image_train "$(teacher_dir "$alpha")" --model "$TEACHER_MODEL" --smoothing "$alpha" \
      "${TEACHER_ARGS[@]}" "${init[@]}"
  done
  init=()
  if declare -F student_init >/dev/null; then read -r -a init <<< "$(student_init)"; fi
  for alpha in $ALPHAS; do
    for t in $TEMPS; do
      image_train "$(student_dir "$alpha" "$t")" --model "$STUDENT_MODEL" \
        --teacher-checkpoint "$(teacher_dir "$alpha")/$TEACHER_CKPT" --kd-temperature "$t" \
        "${STUDENT_ARGS[@]}" "${init[@]}"
    done
  done
  "${PYTHON:-python}" -m lskd_plugins.image.results "$OUT"
}

# ---------------------------------------------------------------------------- the paper's settings
# imagenet_settings: method.md section 3. SGD momentum 0.9, wd 1e-4, batch 256 per GPU (x 8 GPUs);
# teachers 90 epochs, lr 0.1, /10 every 30; students 200 epochs, lr 0.1, 5-epoch warm-up,
# /10 every 80; pure KD (beta = 1, T^2 scaling, student eps = 0).
imagenet_settings() {
  BATCH=${BATCH:-256}
  TEACHER_EPOCHS=${TEACHER_EPOCHS:-90}
  STUDENT_EPOCHS=${STUDENT_EPOCHS:-200}
  TEACHER_ARGS=(--aug imagenet --img-size 224 --epochs "$TEACHER_EPOCHS" --batch-size "$BATCH" --lr 0.1
    --momentum 0.9 --weight-decay 1e-4 --sched step --decay-epochs 30 --decay-rate 0.1)
  STUDENT_ARGS=(--aug imagenet --img-size 224 --epochs "$STUDENT_EPOCHS" --batch-size "$BATCH" --lr 0.1
    --momentum 0.9 --weight-decay 1e-4 --sched step --warmup-epochs 5 --decay-epochs 80 --decay-rate 0.1
    --kd-beta 1.0)
}

# cub_settings: method.md section 3. Teachers start from the ImageNet teacher of the same alpha
# ($IMAGENET_RUNS/teacher_a<alpha>/checkpoint_last.pth, or the files TEACHER_INIT_NOLS /
# TEACHER_INIT_LS), lr 0.01, 90 epochs; students ImageNet-pretrained (STUDENT_INIT: a weights file,
# "timm" = timm's pretrained weights, which need internet or the Hugging Face cache, or "none"),
# lr 0.01, wd 1e-3, 200 epochs; CUB augmentation (--aug cub), test Resize 256 + CenterCrop 224.
# Not in method.md, assumed: batch 64 per GPU; teachers wd 1e-4 and /10 every 30 epochs;
# students 5-epoch warm-up and /10 every 80 (as on ImageNet).
cub_settings() {
  BATCH=${BATCH:-64}
  TEACHER_EPOCHS=${TEACHER_EPOCHS:-90}
  STUDENT_EPOCHS=${STUDENT_EPOCHS:-200}
  IMAGENET_RUNS=${IMAGENET_RUNS:-runs/imagenet_r50_to_r18}
  if [ "$QUICK" = 1 ]; then STUDENT_INIT=${STUDENT_INIT:-none}; else STUDENT_INIT=${STUDENT_INIT:-timm}; fi
  TEACHER_ARGS=(--aug cub --img-size 224 --epochs "$TEACHER_EPOCHS" --batch-size "$BATCH" --lr 0.01
    --momentum 0.9 --weight-decay 1e-4 --sched step --decay-epochs 30 --decay-rate 0.1)
  STUDENT_ARGS=(--aug cub --img-size 224 --epochs "$STUDENT_EPOCHS" --batch-size "$BATCH" --lr 0.01
    --momentum 0.9 --weight-decay 1e-3 --sched step --warmup-epochs 5 --decay-epochs 80 --decay-rate 0.1
    --kd-beta 1.0)
  teacher_init() {
    local kind file
    kind=$(ls_kind "$1")
    if [ "$kind" = LS ]; then file=${TEACHER_INIT_LS:-$IMAGENET_RUNS/teacher_a$1/checkpoint_last.pth}
    else file=${TEACHER_INIT_NOLS:-$IMAGENET_RUNS/teacher_a$1/checkpoint_last.pth}; fi
    if [ ! -f "$file" ] && [ "$QUICK" = 1 ]; then
      echo "QUICK=1 and no ImageNet teacher at $file: the CUB teacher starts from scratch" >&2
      return 0
    fi
    if [ ! -f "$file" ]; then
      echo "no ImageNet teacher for alpha=$1 at $file; set IMAGENET_RUNS or TEACHER_INIT_${kind^^}" >&2
      exit 2
    fi
    echo "--pretrained-checkpoint $file"
  }
  student_init() {
    case "$STUDENT_INIT" in
      none) ;;
      timm) echo "--pretrained" ;;
      *) echo "--pretrained-checkpoint $STUDENT_INIT" ;;
    esac
  }
}
