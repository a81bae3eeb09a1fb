#!/usr/bin/env bash
# CUB-200-2011: ResNet-50 teachers (alpha 0, 0.1) -> resnet18.tv_in1k students, T in {1,2,3,64}: the study
# engine on recipes/study/paper_cub.yaml (method.md section 3; one run per GPU).
# Paper (noLS / LS teacher): 80.17/80.95 at T=1, 80.81/80.43, 80.79/78.20, 73.61/67.16 at T=64; teachers 81.58/82.07.
#   python data_prep/prepare_cub.py --source CUB_200_2011.tgz --out data/cub
#   DATA=data/cub TEACHER_INIT_NOLS=... TEACHER_INIT_LS=... GPUS=1 bash recipes/image/cub_r50_to_r18.sh
# TEACHER_INIT_NOLS / TEACHER_INIT_LS: the ImageNet teachers' checkpoints (paper_imagenet.yaml's runs).
# STUDENT_INIT: "timm" (default: timm's pretrained weights, internet or the Hugging Face cache),
# "none", or a weights file. Variables: see common.sh; settings: recipes/study/paper_cub.yaml.
source "$(dirname "$0")/common.sh"
cub_init
run_study paper_cub.yaml --model "${TEACHER_MODEL:-resnet50}" --student-model "${STUDENT_MODEL:-resnet18.tv_in1k}" "${INIT[@]}"
