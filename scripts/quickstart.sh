#!/usr/bin/env bash
# Install, write the tiny demo model and data, build the example LoRA SFT run and train it.
# Needs no network beyond the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HOME="$PWD/.cache/huggingface" HF_HUB_OFFLINE=1 MPLCONFIGDIR="$PWD/.cache/matplotlib"
[ -d demo/tiny-model ] || .venv/bin/ffc demo demo
.venv/bin/ffc build examples/lora_sft.yaml -o runs/lora_sft
cd runs/lora_sft
../../.venv/bin/python train.py --preview 2
../../.venv/bin/accelerate launch --config_file accelerate_config.yaml train.py
echo "done: see runs/lora_sft/output (adapter, trainer_log.jsonl, training_loss.png)"
