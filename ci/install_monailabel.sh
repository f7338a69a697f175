#!/usr/bin/env bash
# A separate environment with the real MONAI Label package, for tests/test_monailabel.py.
# It sees the project's environment (--system-site-packages: torch, monai, nibabel, ignite) but keeps
# MONAI Label's own pins (pydicom 2, jsonschema 3, numpy 1) out of it. See ci/requirements-monailabel.txt
# for what is left out and why. Usage: bash ci/install_monailabel.sh [venv folder, default .venv-monailabel]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-monailabel}"
python -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps monailabel==0.8.5
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r ci/requirements-monailabel.txt
PYTHONPATH=tests/monailabel_app/shim "$VENV/bin/python" -c \
  "import monailabel, monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle, monailabel.datastore.local; print('monailabel', monailabel.__version__, 'in $VENV')"
