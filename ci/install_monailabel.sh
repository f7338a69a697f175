#!/usr/bin/env bash
# A separate environment with the real MONAI Label package, for tests/test_monailabel.py.
# It sees the project's environment (torch, monai, nibabel, ignite: the interpreter's or the active
# virtual environment's site-packages, see below) but keeps
# MONAI Label's own pins (pydicom 2, jsonschema 3, numpy 1) out of it. See ci/requirements-monailabel.txt
# for what is left out and why. Usage: bash ci/install_monailabel.sh [venv folder, default .venv-monailabel]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-monailabel}"
python -m venv --system-site-packages "$VENV"
# --system-site-packages sees the *base* interpreter's packages; when this script runs inside an
# activated virtual environment the project's packages are in that environment instead. A .pth file
# adds the current environment's site-packages (after the new venv's own, so MONAI Label's pins win;
# site.addsitedir also runs that folder's .pth files, e.g. the editable install of `common`).
SITE_DIRS=$(python -c "import site, sysconfig; print(repr(sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib'], *site.getsitepackages()})))")
VENV_SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import site; list(map(site.addsitedir, $SITE_DIRS))" > "$VENV_SITE/_project_environment.pth"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps monailabel==0.8.5
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r ci/requirements-monailabel.txt
PYTHONPATH=tests/monailabel_app/shim "$VENV/bin/python" -c \
  "import monailabel, monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle, monailabel.datastore.local; print('monailabel', monailabel.__version__, 'in $VENV')"
