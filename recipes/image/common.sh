# Shared logic of the image recipes (sourced, not run). They no longer loop over the grid: each
# recipe calls the study engine (`lskd study recipes/study/<config>.yaml`, docs/study.md) with the
# environment below turned into overrides; runs are keyed by their settings, reused when finished,
# resumed when killed, and the table is the engine's report ($OUT/report.md, report.json).
#   DATA     ImageFolder root with train/ and val/ (required except where the recipe builds it)
#   OUT      study folder (default: runs/<recipe name>)
#   GPUS     runs at once, one GPU each (default 1; 0 = CPU)
#   TEMPS    KD temperatures (default "1 2 3 64");  ALPHAS  teacher smoothing (default "0 0.1")
#   SEEDS    number of seeds (default: the config's, 3)
#   WORKERS  data-loader processes per run (default 8); AMP=1 adds --amp
#   QUICK=1  a CPU smoke run: 1 epoch on a few images (the string QUICK_ARGS replaces the
#            recipe's QUICK_DEFAULT arguments of lskd image-train, applied last so they win)
#   EXTRA    extra `lskd image-train` arguments for every run (e.g. "--device cpu")
#   STUDY_ARGS  more `lskd study` arguments (e.g. "--launcher slurm")
set -euo pipefail

RECIPE=$(basename "${0%.sh}")
OUT=${OUT:-runs/$RECIPE}
GPUS=${GPUS:-1}
TEMPS=${TEMPS:-"1 2 3 64"}
ALPHAS=${ALPHAS:-"0 0.1"}
QUICK=${QUICK:-0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
comma() { echo "$*" | tr -s ' ' ',' ; }

# args_to_sets "--epochs 1 --amp --lr 0.01": image-train arguments as `--set image.{teacher,student}.K=V`
# (the role sections win over a config's own settings, as arguments appended last did).
args_to_sets() {
  local -a words
  read -r -a words <<< "$1"
  local i=0 n=${#words[@]} key
  while [ "$i" -lt "$n" ]; do
    key=${words[i]#--}
    if [ $((i + 1)) -lt "$n" ] && [[ ${words[i+1]} != --* ]]; then
      LAST+=(--set "image.teacher.$key=${words[i+1]}" --set "image.student.$key=${words[i+1]}"); i=$((i + 2))
    else
      LAST+=(--set "image.teacher.$key=true" --set "image.student.$key=true"); i=$((i + 1))
    fi
  done
}

# run_study CONFIG [more lskd study arguments]: the engine with this recipe's environment.
run_study() {
  local config=$1; shift
  LAST=()
  SETS=(--output "$OUT" --temps "$(comma $TEMPS)" --alphas "$(comma $ALPHAS)" --set translation=null)
  [ -n "${SEEDS:-}" ] && SETS+=(--seeds "$SEEDS")
  if [ "$GPUS" = 0 ]; then SETS+=(--device cpu --jobs 1); else SETS+=(--device cuda --jobs "$GPUS"); fi
  SETS+=(--workers "${WORKERS:-8}")
  [ "${AMP:-0}" = 1 ] && SETS+=(--set image.common.amp=true)
  args_to_sets "${EXTRA:-}"
  if [ "$QUICK" = 1 ]; then
    args_to_sets "${QUICK_ARGS:-${QUICK_DEFAULT:-"--epochs 1 --limit-train 64 --limit-val 32 --img-size 64 --batch-size 16 --workers 0 --warmup-epochs 0 --lr 0.01"}}"
    LAST+=(--set image.diffusion=false --set image.common.amp=false --set image.teacher_init={})
  fi
  read -r -a more <<< "${STUDY_ARGS:-}"
  # DATA after the recipe's own arguments: an existing ImageFolder replaces the recipe's preparation
  [ -n "${DATA:-}" ] && LAST+=(--data "$DATA" --set image.prepare=null)
  lskd study "$REPO/recipes/study/$config" "${SETS[@]}" "$@" "${LAST[@]}" "${more[@]}"
}

# cub_init: INIT=(...) the CUB teachers' and students' starting weights (TEACHER_INIT_NOLS /
# TEACHER_INIT_LS: the ImageNet teachers; STUDENT_INIT: timm (default), none, or a weights file).
cub_init() {
  INIT=()
  if [ -n "${TEACHER_INIT_NOLS:-}${TEACHER_INIT_LS:-}" ]; then
    INIT+=(--set "image.teacher_init={'0': '${TEACHER_INIT_NOLS:-}', '0.1': '${TEACHER_INIT_LS:-}'}")
  fi  # QUICK without them: the CUB teachers start from scratch
  case "${STUDENT_INIT:-$([ "$QUICK" = 1 ] && echo none || echo timm)}" in
    none) INIT+=(--set image.student.pretrained=false) ;;
    timm) ;;
    *) INIT+=(--set image.student.pretrained=false --set "image.student.pretrained-checkpoint=$STUDENT_INIT") ;;
  esac
}
