#!/usr/bin/env bash
# One GPU's share of a training session (the 4-GPU recipes run it on their last GPU): the CUDA checks
# (kernel parity, CUDA-graph training step, bf16 dreaming), where the SANA-WM 2.66B forward spends its time,
# batched Dream speed in fp32 and bf16, and the image models against diffusers.
# Usage (device machine, repo root, carried wheels installed): bash THIS OUT
out=${1:?usage: gpu_side.sh OUT}
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs \
  tests/nn/test_kernels_linear_attention.py tests/nn/test_gdn_scan.py tests/generators/test_dreamer.py \
  tests/generators/test_world_model_train.py -k "cuda or bf16 or triton or gpu" 2>&1 | tail -n 15
timeout 90 python3 benchmarks/profile_world_model.py --frames 161 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 80
timeout 100 python3 benchmarks/dream_env.py --device cuda --batches 1 256 1024 4096 --steps 1 --iters 5 \
  --env-max-batch 0 --precision fp32 bf16 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 20
timeout 160 python3 benchmarks/sana_image.py --time-budget-s 130 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 40
