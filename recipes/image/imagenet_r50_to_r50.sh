#!/usr/bin/env bash
# ImageNet: ResNet-50 teachers (alpha 0, 0.1) -> ResNet-50 students, T in {1,2,3,64}: the study engine
# on recipes/study/paper_imagenet.yaml (method.md section 3; one run per GPU).
# Paper (noLS / LS teacher): 76.33/76.90 at T=1, 76.18/76.11, 75.49/75.79, 74.28/74.57 at T=64; teachers 76.13/76.20.
#   DATA=/data/imagenet GPUS=8 bash recipes/image/imagenet_r50_to_r50.sh
# Variables: see common.sh; settings: recipes/study/paper_imagenet.yaml.
source "$(dirname "$0")/common.sh"
run_study paper_imagenet.yaml --model "${TEACHER_MODEL:-resnet50}" --student-model "${STUDENT_MODEL:-resnet50}"
