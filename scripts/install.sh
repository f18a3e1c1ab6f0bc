#!/usr/bin/env bash
# Create .venv and install kbengine with its dev tools. torch is pinned first so pip never pulls
# another (multi-GB CUDA) build: torch 2.14.1 / torchvision 0.29.1 are the releases this project uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "kbengine installed in .venv (activate with: source .venv/bin/activate)"
