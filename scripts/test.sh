#!/usr/bin/env bash
# Install and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cache=$(mktemp -d)
export HF_HOME="$cache/hf" XDG_CACHE_HOME="$cache/xdg" TORCH_EXTENSIONS_DIR="$cache/torch_ext" MPLCONFIGDIR="$cache/mpl"
trap 'rm -rf "$cache"' EXIT
.venv/bin/python -m pytest -q "$@"
