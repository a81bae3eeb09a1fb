#!/usr/bin/env bash
# CIFAR-10 (32x32), ResNet-50 teachers (alpha 0 and 0.1) -> ResNet-18 students at T in {1,2,3,64},
# sized for one GPU per run. Not a table of the paper (it used CIFAR-10 only to visualise diffusion);
# these are this project's settings: timm ImageNet-style ResNets at 32x32, SGD momentum 0.9,
# lr 0.1, wd 5e-4, batch 128, cosine schedule with 2 warm-up epochs, pad-and-crop + flip
# augmentation, 60 epochs for teachers and students. The CPU-sized version: recipes/study/cpu_real.yaml.
#   bash recipes/image/cifar10.sh                                      # data from SOURCE, below
#   DATA=data/cifar10 bash recipes/image/cifar10.sh                    # an existing ImageFolder
#   QUICK=1 GPUS=0 bash recipes/image/cifar10.sh                       # CPU smoke run (minutes)
# Without DATA the ImageFolder is built in $OUT/data/cifar10 from SOURCE (default: the JPEG zip in
# ../shared/data) by data_prep/prepare_cifar.py, limited by CLASSES (e.g. cat,dog,airplane),
# PER_CLASS and VAL_PER_CLASS.
QUICK_DEFAULT="--epochs 1 --limit-train 256 --limit-val 128 --batch-size 32 --workers 0 --warmup-epochs 0 --lr 0.01"
source "$(dirname "$0")/common.sh"
SOURCE=${SOURCE:-$REPO/../shared/data/cifar10/cifar10-jpeg.zip}
PREP="[python, data_prep/prepare_cifar.py, --source, $SOURCE, --output, '{data}'"
[ -n "${CLASSES:-}" ] && PREP+=", --classes, '$CLASSES'"
[ -n "${PER_CLASS:-}" ] && PREP+=", --per-class, '$PER_CLASS'"
[ -n "${VAL_PER_CLASS:-}" ] && PREP+=", --val-per-class, '$VAL_PER_CLASS'"
EPOCHS=${EPOCHS:-60}
run_study cpu_real.yaml --model "${TEACHER_MODEL:-resnet50}" --student-model "${STUDENT_MODEL:-resnet18}" \
  --set "image.prepare={inputs: [$SOURCE], command: $PREP]}" \
  --set image.common.batch-size="${BATCH:-128}" --set image.common.warmup-epochs=2 \
  --set image.teacher.epochs="$EPOCHS" --set image.student.epochs="$EPOCHS"
