#!/usr/bin/env bash
# Soft targets as a regulariser on a small share of the labels, in the shape of Hinton et al.
# 2015's Table 5 (3% of the speech data): a student trained on 10% of the 1,437 training digits,
# alone and on the soft targets of a teacher trained on all of them (runs/distill/teacher, the
# `digits_teacher` preset), at T = 20 and T = 4, three seeds each. Results: runs/distill10/*.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
mkdir -p runs/distill10
for seed in 0 1 2; do
  for run in student distilled_t20 distilled_t4; do
    case $run in
      student) args=(--config=experiments/configs/distill.py:digits_student) ;;
      distilled_t20) args=(--config=experiments/configs/distill.py:digits_distilled --config.distill.temperature=20) ;;
      distilled_t4) args=(--config=experiments/configs/distill.py:digits_distilled --config.distill.temperature=4) ;;
    esac
    "$python" -m experiments.distill "${args[@]}" --workdir="runs/distill10/${run}_s${seed}" \
      --config.data.train_split='train[:10%]' --config.seed="$seed"
  done
done
