#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): lean SFT, LoRA/full/QLoRA, Liger, DPO, GRPO and serve on one GPU,
# results in docs/gpu-results.md. Under 10 minutes on one H200; then issue 15's GPU-only paths (docs/methods.md)
# while the --budget lasts, or just those: --only sft_shift_attn,sft_qlora_loftq,sft_qlora_torchao_int4,sft_fp8,...
#
#   bash scripts/fetch_gpu_wheels.sh        # here, with network: the packages the GPU image lacks, into .whl/
#   bash scripts/gpu_check.sh               # on the GPU machine (carry .whl with the checkout)
#   bash scripts/gpu_check.sh --dry-run     # anywhere: build every run directory it would launch
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
if [ "${1:-}" != "--dry-run" ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ffc-site .whl/*.whl
    export PYTHONPATH=/tmp/ffc-site${PYTHONPATH:+:$PYTHONPATH}
fi
# ffc from this checkout when it is not installed (the checkout's root is the ffc package)
if ! "$PY" -c "import ffc.compiler" 2>/dev/null; then
    mkdir -p /tmp/ffc-src && ln -sfn "$PWD" /tmp/ffc-src/ffc
    export PYTHONPATH=/tmp/ffc-src${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$PY" scripts/gpu_check.py "$@"
