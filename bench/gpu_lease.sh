#!/usr/bin/env bash
# The whole GPU measurement of a lease in one command (issue 35): run it on the device machine from the
# repository root, with the wheels and the real CTs carried, inside one call of at most 9 minutes:
#
#   here, once:  bash ../shared/tools/device-wheels.sh blosc2==4.15.0 ndindex==1.10.1
#                mkdir -p .devdata && cp -r ../shared/data/{ts_ct_full,ts_ct_small,msd_spleen_crop} .devdata/   (git-ignored: add /.devdata/ to .git/info/exclude)
#   device run:  command "bash bench/gpu_lease.sh", carry [".whl", ".devdata"], timeout_s 540
#
# It installs MONAI/nibabel/ignite/fire/blosc2 from .whl, puts the CTs where the benchmarks look
# (../shared/data), records the GPU and versions, and runs the suite at full sizes with a wall budget
# (each benchmark writes into the result as it finishes, so a lease that ends early keeps what was measured).
set -o pipefail
OUT=${OUT:-bench/results}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
if [ -d .devdata ] && [ ! -d ../shared/data ]; then mkdir -p ../shared && cp -r .devdata ../shared/data || echo "cannot write ../shared: benchmarks on real CT will say so"; fi
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1
python3 -c "import torch, monai, blosc2, ignite; print('torch', torch.__version__, 'monai', monai.__version__, 'blosc2', blosc2.__version__, torch.cuda.get_device_name(0))"
python3 -c "import tensorrt" 2>&1 | tail -1
timeout 500 python3 bench/suite.py --device cuda --budget_s 470 --output "$OUT" 2>&1 | tee "$OUT/suite.log"
