#!/usr/bin/env bash
# The WORKSPACE.md self-supervised table: each method's preset in turn (one run at a time), then
# scripts/selfsup_table.py collects the results. Usage: bash scripts/selfsup_runs.sh [method ...]
set -u
cd "$(dirname "$0")/.."
methods=("${@:-simclr supervised byol moco simsiam barlow_twins swav}")
for method in ${methods[@]}; do
  .venv/bin/python -m experiments.selfsup --config=experiments/configs/selfsup.py:${method}_shapes \
    --workdir=runs/selfsup/${method} > runs/selfsup_${method}.log 2>&1
done
