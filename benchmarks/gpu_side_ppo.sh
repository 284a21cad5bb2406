#!/usr/bin/env bash
# One GPU call: PPO through the native vector envs (speed against SB3's DummyVecEnv, and a policy trained in
# the dream scored on GT held-out scenes). Carry .whl (diffusers, gymnasium, stable-baselines3, ...).
# Usage (device machine, repo root): bash benchmarks/gpu_side_ppo.sh OUT_DIR [DREAM_SECONDS]
set -euo pipefail
out=${1:?usage: gpu_side_ppo.sh OUT_DIR [DREAM_SECONDS]}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 benchmarks/vector_ppo.py --device cuda --num-envs 128 --n-steps 64 --batch-size 1024 --bf16 \
    --dream-seconds "${2:-240}" --save-dir "$out" --out "$out" 2>&1 | tee "$out/vector_ppo.log"
