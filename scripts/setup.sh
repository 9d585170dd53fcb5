#!/usr/bin/env bash
# Set up everything imac needs on a fresh Debian/Ubuntu machine (idempotent):
# ngspice from the distribution, the CPU build of PyTorch, then the project with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! command -v ngspice >/dev/null 2>&1; then
  echo "[setup] installing ngspice"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ngspice >/dev/null
fi

# the CPU wheel first: a bare "torch" requirement would pull a multi-GB CUDA build
if ! $PY -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch 2.13.0 (CPU)"
  $PY -m pip install -q torch==2.13.0
fi

if ! $PY -c "import imac, pytest, hypothesis" >/dev/null 2>&1 || [ pyproject.toml -nt .setup-stamp ]; then
  echo "[setup] installing imac and its dependencies"
  # the installed torch is pinned: no dependency may swap it for another (CUDA) build; so is an
  # installed numpy, so that numba cannot make pip change it
  pin=$(mktemp); trap 'rm -f "$pin"' EXIT
  echo "torch==$($PY -c 'import torch; print(torch.__version__)')" > "$pin"
  if $PY -c "import numpy" >/dev/null 2>&1; then
    echo "numpy==$($PY -c 'import numpy; print(numpy.__version__)')" >> "$pin"
  fi
  $PY -m pip install -q -c "$pin" -e ".[dev]"
  # the ONNX route's converter, without torchvision (its CUDA wheel would replace the CPU torch;
  # onnx2torch needs it only for NMS/RoIAlign, see docs/import.md)
  $PY -m pip install -q -c "$pin" --no-deps "onnx2torch>=1.5"
  touch .setup-stamp
fi

# shared data (MNIST, CIFAR-10, the PTM model card) is read in place from ../shared/data or
# IMAC_DATA_DIR; nothing is copied into the repository
if [ -z "${IMAC_DATA_DIR:-}" ] && [ ! -d ../shared/data ]; then
  echo "[setup] note: ../shared/data not found; set IMAC_DATA_DIR to the data folder" >&2
fi
echo "[setup] ready: $(ngspice --version 2>/dev/null | grep -m1 -o 'ngspice-[0-9]*'), torch $($PY -c 'import torch; print(torch.__version__)')"
