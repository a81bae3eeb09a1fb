#!/usr/bin/env bash
# CIFAR-10 (32x32), ResNet-50 teachers (alpha 0 and 0.1) -> ResNet-18 students at T in {1,2,3,64},
# sized for one GPU. Not a table of the paper (it used
# CIFAR-10 only to visualise diffusion); these are this project's settings: timm ImageNet-style
# ResNets at 32x32, SGD momentum 0.9, lr 0.1, wd 5e-4, batch 128, cosine schedule with 2 warm-up
# epochs, pad-and-crop + flip augmentation, 60 epochs for teachers and students.
#   bash recipes/image/cifar10.sh                                      # data from SOURCE, below
#   DATA=data/cifar10 bash recipes/image/cifar10.sh                    # an existing ImageFolder
#   QUICK=1 EXTRA="--device cpu" bash recipes/image/cifar10.sh         # CPU smoke run (minutes)
# Without DATA the ImageFolder is built in $OUT/data from SOURCE (default: the JPEG zip in
# ../shared/data, else cifar-10-python.tar.gz), limited by CLASSES / PER_CLASS / VAL_PER_CLASS.
QUICK_DEFAULT="--epochs 1 --limit-train 256 --limit-val 128 --batch-size 32 --workers 0 --warmup-epochs 0 --lr 0.01"
source "$(dirname "$0")/common.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TEACHER_MODEL=${TEACHER_MODEL:-resnet50}
STUDENT_MODEL=${STUDENT_MODEL:-resnet18}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-60}
if [ -z "${DATA:-}" ]; then
  SOURCE=${SOURCE:-$REPO/../shared/data/cifar10/cifar10-jpeg.zip}
  [ -f "$SOURCE" ] || SOURCE=cifar-10-python.tar.gz
  DATA=$OUT/data
  prep=("${PYTHON:-python}" "$REPO/data_prep/prepare_cifar.py" --source "$SOURCE" --out "$DATA")
  [ -n "${CLASSES:-}" ] && prep+=(--classes "$CLASSES")
  [ -n "${PER_CLASS:-}" ] && prep+=(--per-class "$PER_CLASS")
  [ -n "${VAL_PER_CLASS:-}" ] && prep+=(--val-per-class "$VAL_PER_CLASS")
  "${prep[@]}"
fi
COMMON_ARGS=(--aug cifar --img-size 32 --epochs "$EPOCHS" --batch-size "$BATCH" --lr 0.1 --momentum 0.9
  --weight-decay 5e-4 --sched cosine --warmup-epochs 2)
TEACHER_ARGS=("${COMMON_ARGS[@]}")
STUDENT_ARGS=("${COMMON_ARGS[@]}" --kd-beta 1.0)
run_study
