#!/usr/bin/env bash
# Install and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# A GGUF runtime for the export tests. It only ships as source (a few minutes to build, cached by pip
# afterwards); if the build fails the tests that need it skip and say why.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    .venv/bin/python -m pip install -q -c constraints.txt "llama-cpp-python==0.3.36" \
    || echo "warning: llama-cpp-python did not build; the GGUF runtime tests will skip"
fi
# A real browser for the web UI tests (Debian's chromium and its driver; a CJK font so the Chinese
# screenshots are legible). Without them those tests skip and say why.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  browser="chromium chromium-driver fonts-wqy-microhei"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $browser >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $browser >/dev/null; } \
    || echo "warning: chromium did not install; the browser tests will skip"
fi
export FFC_SCREENSHOTS="$PWD/test-output/screenshots"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cache=$(mktemp -d)
export HF_HOME="$cache/hf" XDG_CACHE_HOME="$cache/xdg" TORCH_EXTENSIONS_DIR="$cache/torch_ext" MPLCONFIGDIR="$cache/mpl"
trap 'rm -rf "$cache"' EXIT
.venv/bin/python -m pytest -q "$@"
