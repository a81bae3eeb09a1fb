#!/usr/bin/env bash
# CUB-200-2011: ResNet-50 teachers (alpha 0, 0.1) -> ResNet-18 students, T in {1,2,3,64}.
# Paper (noLS / LS teacher): 80.17/80.95 at T=1, 80.81/80.43, 80.79/78.20, 73.61/67.16 at T=64; teachers 81.58/82.07.
#   python data_prep/prepare_cub.py --source CUB_200_2011.tgz --out data/cub
#   DATA=data/cub IMAGENET_RUNS=runs/imagenet_r50_to_r18 GPUS=1 bash recipes/image/cub_r50_to_r18.sh
# Settings: cub_settings in common.sh (method.md section 3); variables: see common.sh.
source "$(dirname "$0")/common.sh"
TEACHER_MODEL=${TEACHER_MODEL:-resnet50}
STUDENT_MODEL=${STUDENT_MODEL:-resnet18.tv_in1k}
cub_settings
run_study
