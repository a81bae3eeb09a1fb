#!/usr/bin/env bash
# ImageNet: ResNet-50 teachers (alpha 0, 0.1) -> ResNet-18 students, T in {1,2,3,64}: the study engine
# on recipes/study/paper_imagenet.yaml (method.md section 3; one run per GPU).
# Paper (noLS / LS teacher): 71.49/71.67 at T=1, 71.36/68.86, 69.67/67.75, 66.19/64.36 at T=64; teachers 76.13/76.20.
#   DATA=/data/imagenet GPUS=8 bash recipes/image/imagenet_r50_to_r18.sh
# Variables: see common.sh; settings: recipes/study/paper_imagenet.yaml.
source "$(dirname "$0")/common.sh"
run_study paper_imagenet.yaml --model "${TEACHER_MODEL:-resnet50}" --student-model "${STUDENT_MODEL:-resnet18}"
