#!/usr/bin/env bash
# Install the collection and its test tools into the current Python environment.
# torch is pinned (requirements.txt); on a CPU-only machine with a local CPU wheel of that version
# pip takes it, elsewhere PyPI's build (CUDA on Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
python -c "import torch, monai, common; print(f'torch {torch.__version__}, monai {monai.__version__}, cuda available: {torch.cuda.is_available()}')"
