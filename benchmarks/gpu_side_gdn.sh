#!/usr/bin/env bash
# Issue #6, the Triton GDN scan on one GPU (about 3 minutes on an H100): its parity tests compiled on CUDA
# (the `gpu` tests at SANA-WM 2.66B's layout in bf16/fp32, ieee and tf32x3 dots) with the torch scan tests,
# then benchmarks/gdn_scan.py (torch eager / torch.compile / Triton, fwd and fwd+bwd), which writes
# OUT/gdn_scan_<gpu>_<date>.json.
# Usage (device machine, repo root, carried wheels installed): bash THIS OUT
out=${1:?usage: gpu_side_gdn.sh OUT}
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs tests/nn/test_kernels_gdn_scan.py tests/nn/test_gdn_scan.py \
  2>&1 | tail -n 25
timeout 80 python3 benchmarks/gdn_scan.py --time-budget-s 55 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 45
