#!/usr/bin/env bash
# One GPU's checks and measurements of the batched dream step: the Dreamer's CUDA / bf16 tests, Dream env
# and dream-step speed by batch in fp32 and bf16, and where a batched step's time goes (parts + kernels).
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT
set -uo pipefail
out=${1:?usage: gpu_side_dream.sh OUT}
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/generators/test_dreamer.py \
  tests/generators/test_dreamer_defer.py tests/envs -k "cuda or bf16 or gpu" 2>&1 | tail -n 12
timeout 150 python3 benchmarks/dream_env.py --device cuda --batches 1 256 1024 4096 --steps 1 --iters 5 \
  --env-max-batch 256 --precision fp32 bf16 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 20
timeout 150 python3 benchmarks/profile_dream_gpu.py --batches 256 1024 4096 --precision bf16 --out "$out" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 50
