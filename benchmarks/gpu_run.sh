#!/usr/bin/env bash
# One GPU session: install the carried wheels and this repo, then time the renderer and the batched env.
# Usage (device machine, repo root): bash benchmarks/gpu_run.sh OUT_DIR
set -euo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/core/test_render_cuda.py tests/world_model/test_cameras.py -k "cuda" 2>&1 | tail -5 || true
python3 benchmarks/render.py --only cuda --out "$out" 2>&1 | tee "$out/render.log"
python3 benchmarks/env_speed.py --no-cpu --out "$out" 2>&1 | tee "$out/env.log"
