#!/usr/bin/env bash
# Stage 3 on a 4-GPU machine: continue the world model (GPUs 0-2, DDP, from the zoo weights) while GPU 3
# runs the GPU-side checks and benchmarks (Triton kernel parity, linear attention, dream env speed).
# Usage (device machine, repo root): bash THIS OUT [SECONDS]
set -uo pipefail
out=${1:?usage: rooms_final.sh OUT [SECONDS]}
secs=${2:-440}
source generators/train/recipes/setup_gpu.sh
CUDA_VISIBLE_DEVICES=0,1,2 torchrun --nproc-per-node 3 --master-port 29521 -m sana_world.generators.train.world_model \
  --preset rooms_p1 --init-weights sana_world/zoo/rooms-128/world_model \
  --autoencoder sana_world/zoo/rooms-128/autoencoder --data pool --pool-workers 16 --resolution 128 --bf16 \
  --pool-trajectories 3072 --pool-steps 40 --clip-frames 33 --temporal-stride 1 --chunk-size 1 --batch-size 24 \
  --lr 4e-4 --warmup-steps 100 --ema-decay 0.998 --grad-clip 1.0 --shift 2.0 --steps 1000000 \
  --time-limit-s "$secs" --log-every 50 --ckpt-every 1000000 --no-progress --out-dir runs/wm \
  > "$out/wm.log" 2>&1 &
wm=$!
(
  export CUDA_VISIBLE_DEVICES=3
  timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/nn/test_kernels_linear_attention.py 2>&1 | tail -n 15
  timeout 200 python3 benchmarks/linear_attention.py --methods torch triton sdpa --no-sweep --out "$out" 2>&1 | tail -n 40
  timeout 150 python3 benchmarks/dream_env.py --device cuda --batches 1 16 64 256 1024 --steps 1 4 --iters 5 \
    --env-max-batch 256 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 30
) > "$out/gpu3.log" 2>&1
wait $wm
python3 -m sana_world.generators.train.export_folder runs/wm /tmp/wm_ema.tar
split -b 15m /tmp/wm_ema.tar "$out/wm_ema.tar.part-"
python3 -m sana_world.generators.train.export_folder --raw runs/wm /tmp/wm_raw.tar
split -b 15m /tmp/wm_raw.tar "$out/wm_raw.tar.part-"
grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" "$out/wm.log" | tail -n 5
cat "$out/gpu3.log"
ls -la "$out"
