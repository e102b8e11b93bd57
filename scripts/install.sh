#!/usr/bin/env bash
# Create .venv and install ffc with its training extras. torch goes first, pinned by
# constraints.txt, so that nothing later swaps the CPU build for a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
# DS_BUILD_OPS=0: DeepSpeed compiles its ops when first used instead of at install time.
DS_BUILD_OPS=0 .venv/bin/python -m pip install -q -c constraints.txt -e ".[train,bitsandbytes,deepspeed,serve,eval,export,optimizers,onnx,torchao,ui,video,test]"
echo "installed ffc $(.venv/bin/ffc version) into .venv"
