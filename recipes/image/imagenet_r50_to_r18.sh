#!/usr/bin/env bash
# ImageNet: ResNet-50 teachers (alpha 0, 0.1) -> ResNet-18 students, T in {1,2,3,64}.
# Paper (noLS / LS teacher): 71.49/71.67 at T=1, 71.36/68.86, 69.67/67.75, 66.19/64.36 at T=64; teachers 76.13/76.20.
#   DATA=/data/imagenet GPUS=8 bash recipes/image/imagenet_r50_to_r18.sh
# Settings: imagenet_settings in common.sh (method.md section 3); variables: see common.sh.
source "$(dirname "$0")/common.sh"
TEACHER_MODEL=${TEACHER_MODEL:-resnet50}
STUDENT_MODEL=${STUDENT_MODEL:-resnet18}
imagenet_settings
run_study
