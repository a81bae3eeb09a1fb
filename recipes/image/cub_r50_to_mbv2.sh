#!/usr/bin/env bash
# CUB-200-2011: ResNet-50 teachers (alpha 0, 0.1) -> mobilenetv2_100 students, T in {1,2,3,64}: the study
# engine on recipes/study/paper_cub.yaml (method.md section 3; one run per GPU).
# Paper (noLS / LS teacher): 81.14/81.73 at T=1, 81.90/80.61, 81.26/78.96, 75.44/70.44 at T=64; teachers 81.58/82.07.
#   python data_prep/prepare_cub.py --source CUB_200_2011.tgz --out data/cub
#   DATA=data/cub TEACHER_INIT_NOLS=... TEACHER_INIT_LS=... GPUS=1 bash recipes/image/cub_r50_to_mbv2.sh
# TEACHER_INIT_NOLS / TEACHER_INIT_LS: the ImageNet teachers' checkpoints (paper_imagenet.yaml's runs).
# STUDENT_INIT: "timm" (default: timm's pretrained weights, internet or the Hugging Face cache),
# "none", or a weights file. Variables: see common.sh; settings: recipes/study/paper_cub.yaml.
source "$(dirname "$0")/common.sh"
cub_init
run_study paper_cub.yaml --model "${TEACHER_MODEL:-resnet50}" --student-model "${STUDENT_MODEL:-mobilenetv2_100}" "${INIT[@]}"
