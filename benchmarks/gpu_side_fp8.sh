#!/usr/bin/env bash
# Issue #6, FP8 linear layers on Hopper (sana_world.nn.fp8): the CUDA FP8 tests (torch._scaled_mm equals
# the emulation, compiles, and the trained rooms-128 world model's quality delta in bf16), then the FP8 rows
# of both paper-scale benchmarks against ours in bf16 on the same inputs: SANA-WM 2.66B at 161 frames
# (eager; blocks compiled) and SANA-1.6B at 1024², batch 1 (eager, Triton, compiled, compiled in a CUDA
# graph). About 4-5 minutes on an H100; every step has its own timeout and time budget, and the JSON files
# keep whatever ran. Logs and JSON go to OUT.
# Usage (device machine, repo root, .whl/ carried): bash benchmarks/gpu_side_fp8.sh OUT
set -uo pipefail
out=${1:?usage: gpu_side_fp8.sh OUT}
mkdir -p "$out"
source generators/train/recipes/setup_gpu.sh
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name(0), 'sm', torch.cuda.get_device_capability(0))" | tee "$out/fp8_device.txt"
timeout 75 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/nn/test_fp8.py 2>&1 \
  | tee "$out/fp8_tests.log" | tail -n 25
timeout 185 python3 benchmarks/world_model.py --fp8 --frames 161 --compile-frames 161 --warmup 1 --reps 3 \
  --time-budget-s 165 --out "$out" 2>&1 | grep -v "Warn\|warn" | tee "$out/fp8_world_model.log" | tail -n 22
timeout 115 python3 benchmarks/sana_image.py --fp8 --groups sana --batches 1 --time-budget-s 100 --out "$out" \
  2>&1 | grep -v "Warn\|warn" | tee "$out/fp8_sana_image.log" | tail -n 22
