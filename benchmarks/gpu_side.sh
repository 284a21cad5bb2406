#!/usr/bin/env bash
# One GPU's share of a training session (the 4-GPU recipes run it on GPU 3): the CUDA checks (kernel
# parity, CUDA-graph training step), the autoencoder step profile, and the model benchmarks vs diffusers.
# Usage (device machine, repo root, carried wheels installed): bash THIS OUT
out=${1:?usage: gpu_side.sh OUT}
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs tests/generators/test_world_model_train.py -k cuda_graph \
  2>&1 | tail -n 15
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs tests/nn/test_kernels_linear_attention.py tests/nn/test_gdn_scan.py 2>&1 | tail -n 15
timeout 90 python3 benchmarks/profile_training.py --what ae --no-compile --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 50
timeout 200 python3 benchmarks/sana_image.py --time-budget-s 170 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 40
timeout 150 python3 benchmarks/world_model.py --time-budget-s 120 --compile-frames 161 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 30
