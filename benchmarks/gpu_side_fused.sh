#!/usr/bin/env bash
# One GPU's measurements of the fused dream step (context sigma 1: one model pass over one frame a step):
# its CUDA tests, dream-step and Dream-env speed by batch, compiled bf16, beside the two-pass step (sigma
# 0.65, same weights) in the same run, and where a batched fused step's time goes (parts + kernels).
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT
set -uo pipefail
out=${1:?usage: gpu_side_fused.sh OUT}
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/core/test_counter_noise.py \
  tests/generators/test_dreamer_fused.py 2>&1 | tail -n 6
timeout 240 python3 benchmarks/dream_env.py --device cuda --batches 512 1024 2048 --steps 1 --iters 20 \
  --warmup 14 --precision bf16 --compile compiled --rows dream --context-sigma 0.65 1.0 --out "$out/dream" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 12
timeout 150 python3 benchmarks/dream_env.py --device cuda --batches 512 1024 --steps 1 --iters 20 --warmup 14 \
  --precision bf16 --compile compiled --rows env --env-max-batch 1024 --out "$out/env" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 8
timeout 120 python3 benchmarks/profile_dream_gpu.py --batches 1024 --precision bf16 --compile --top 25 \
  --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 40
