#!/usr/bin/env bash
# A/B of the batched fused dream step on one GPU, in one run: the Mix-FFN as the previous commit ran it
# (1x1 and temporal convs through cuDNN; its four files carried in OLD) against the channels-last FFN (the
# 1x1 convs and temporal taps as linears), each decode in NCHW and channels-last; then the Dream env.
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT OLD
set -uo pipefail
out=${1:?usage: gpu_ab_ffn.sh OUT OLD}
old=${2:?folder with the previous commit's ffn.py, causal.py, model.py, streaming.py}
files=(sana_world/nn/ffn.py sana_world/world_model/causal.py sana_world/world_model/model.py
       sana_world/world_model/streaming.py)
new=$(mktemp -d)
for f in "${files[@]}"; do mkdir -p "$new/$(dirname "$f")"; cp "$f" "$new/$f"; cp "$old/$f" "$f"; done
prof=(python3 benchmarks/profile_dream_gpu.py --precision bf16 --compile --top 12)
timeout 150 "${prof[@]}" --batches 1024 --channels-last-decode off --suffix _ffn_conv --out "$out" 2>&1 \
  | grep -v "Warn\|warn" | grep -A3 "^precision"
for f in "${files[@]}"; do cp "$new/$f" "$f"; done
timeout 200 "${prof[@]}" --batches 1024 --channels-last-decode off on --suffix _ffn_linear --out "$out" \
  2>&1 | grep -v "Warn\|warn" | tail -n 30
timeout 150 python3 benchmarks/dream_env.py --device cuda --batches 1024 --steps 1 --iters 20 --warmup 8 \
  --precision bf16 --compile compiled --rows env --env-max-batch 1024 --out "$out/env" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 4
