#!/usr/bin/env bash
# Download into .whl/ the Python packages that scripts/gpu_check.sh needs and the GPU machine's image
# lacks (it has torch, transformers, peft, accelerate, pyarrow, pandas; not trl, datasets, liger-kernel,
# bitsandbytes, ffc's own build dependencies or serve's). The device tool carries at most 64 MiB with the
# checkout, so a package that would overflow the budget (bitsandbytes first) is left out and named in
# .whl/SKIPPED; gpu_check.sh then skips what needs it. Versions are those of this checkout's .venv
# (what the test suite ran), so the GPU runs what CI tested.
#
#   bash scripts/fetch_gpu_wheels.sh [BUDGET_MIB]      (default 52: the checkout itself needs the rest)
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_MIB=${1:-52}
PY=${PY:-.venv/bin/python}
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"  # also right in a worktree, where .git is a file
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
rm -rf .whl && mkdir -p .whl

# The order is the priority: the last ones are dropped first when the budget is short.
PACKAGES=(trl datasets dill multiprocess transformers huggingface-hub tokenizers pydantic pydantic-core annotated-types typing-inspection
          ruamel.yaml ruff fastapi starlette uvicorn liger-kernel bitsandbytes
          optimum gptqmodel unsloth unsloth_zoo)
# Issue 15's GPU-only paths (docs/methods.md): optimum and gptqmodel for the GPTQ export (gptqmodel has no wheel
# on the index, only a source archive), unsloth (28 MiB: over the budget) with unsloth_zoo, fetched only with it.
PLATFORMS=()
for n in 28 27 24 17 5; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true; }

used=0
for name in "${PACKAGES[@]}"; do
    if [ "$name" = unsloth_zoo ] && ! compgen -G ".whl/unsloth-*.whl" >/dev/null; then
        echo "unsloth_zoo: skipped with unsloth" | tee -a .whl/SKIPPED; continue
    fi
    pinned=$(version "$name")
    [ -n "$pinned" ] || pinned=$("$PY" -c "from ffc.compiler.resolve import TESTED_VERSIONS as t; print(t.get('$name', ''))")
    spec=$name${pinned:+==$pinned}
    tmp=$(mktemp -d)
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${PLATFORMS[@]}" -d "$tmp" "$spec" >/dev/null 2>&1; then
        echo "$spec: no cp312 manylinux wheel" | tee -a .whl/SKIPPED
        rm -rf "$tmp"; continue
    fi
    size=$(du -sm "$tmp" | cut -f1)
    if (( used + size > BUDGET_MIB )); then
        echo "$spec: ${size} MiB would pass the ${BUDGET_MIB} MiB budget (${used} MiB used)" | tee -a .whl/SKIPPED
    else
        mv "$tmp"/*.whl .whl/ && used=$((used + size))
        echo "$spec: ${size} MiB"
    fi
    rm -rf "$tmp"
done
echo "total ${used} MiB in .whl/ (budget ${BUDGET_MIB} MiB)"
