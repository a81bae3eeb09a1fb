#!/usr/bin/env bash
# CUB-200-2011: ResNet-50 teachers (alpha 0, 0.1) -> MobileNetV2 students, T in {1,2,3,64}.
# Paper (noLS / LS teacher): 81.14/81.73 at T=1, 81.90/80.61, 81.26/78.96, 75.44/70.44 at T=64; teachers 81.58/82.07.
#   python data_prep/prepare_cub.py --source CUB_200_2011.tgz --out data/cub
#   DATA=data/cub IMAGENET_RUNS=runs/imagenet_r50_to_r18 GPUS=1 bash recipes/image/cub_r50_to_mbv2.sh
# Settings: cub_settings in common.sh (method.md section 3); variables: see common.sh.
source "$(dirname "$0")/common.sh"
TEACHER_MODEL=${TEACHER_MODEL:-resnet50}
STUDENT_MODEL=${STUDENT_MODEL:-mobilenetv2_100}
cub_settings
run_study
