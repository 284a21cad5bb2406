#!/usr/bin/env bash
# One GPU's measurements of the task views (an unpaired Dream step renders only the pixels its task reads:
# BatchedTask.view / GTWorld.render_view): the CUDA view tests (eager bit for bit, compiled), the GT render
# and Dream vector env steps/s with whole shadowless frames against views at 1024 envs (eager, interleaved),
# and the Dream vector env end to end at 1024 (compiled bf16 dream; eager, then compiled view render).
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT
set -uo pipefail
out=${1:?usage: gpu_side_views.sh OUT}
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/envs/test_views.py 2>&1 | tail -n 4
timeout 200 python3 benchmarks/dream_gt_render.py --device cuda --num-envs 1024 --bf16 --steps 10 \
  --tasks explore objectnav --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 4
timeout 300 python3 benchmarks/vector_env_gpu.py --batch 1024 --rows dream-eager-render dream-compiled-render \
  --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 4
