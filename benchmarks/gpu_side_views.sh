#!/usr/bin/env bash
# One GPU's measurements of the task views (an unpaired Dream step renders only the pixels its task reads:
# BatchedTask.view / GTWorld.render_view), in the order of their worth if the call is cut short:
#   1. where a Dream vector env step goes at 1024 envs (compiled bf16 dream, eager view render), by part;
#   2. the CUDA view tests (eager bit for bit; compiled);
#   3. the GT render and env steps/s, whole shadowless frames against views, eager, interleaved;
#   4. the step by part with the compiled renderer too (session 17's compiled-render row failed in Triton).
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT
set -uo pipefail
out=${1:?usage: gpu_side_views.sh OUT}
timeout 200 python3 benchmarks/profile_dream_env.py --device cuda --batch 1024 --bf16 --compile --warmup 14 \
  --steps 10 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 8
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/envs/test_views.py 2>&1 | tail -n 4
timeout 120 python3 benchmarks/dream_gt_render.py --device cuda --num-envs 1024 --bf16 --steps 10 \
  --tasks explore --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 3
timeout 200 python3 benchmarks/profile_dream_env.py --device cuda --batch 1024 --bf16 --compile \
  --compile-renderer --warmup 14 --steps 10 --suffix _compiled_renderer --out "$out" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 12
