#!/usr/bin/env bash
# Stage 1 of the shipped "rooms-128" models: train the two 128^2 autoencoder candidates side by side on a
# 4-GPU machine (f8c16_lite on GPUs 0-1, f8c16 on GPUs 2-3), score both on held-out scenes, pack the
# exports (bf16 weights) into OUT. Usage (device machine, repo root): bash THIS OUT [SECONDS]
set -euo pipefail
out=${1:?usage: rooms_autoencoders.sh OUT [SECONDS]}
secs=${2:-200}
source generators/train/recipes/setup_gpu.sh
common=(--pool-trajectories 4096 --pool-steps 15 --pool-workers 14 --batch-size 64 --bf16 --steps 1000000
        --time-limit-s "$secs" --log-every 100 --ckpt-every 1000000 --no-progress --eval-trajectories 64)
CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc-per-node 2 --master-port 29501 -m sana_world.generators.train.autoencoder \
  --preset f8c16_lite --out-dir runs/ae_f8c16_lite "${common[@]}" > "$out/ae_f8c16_lite.log" 2>&1 &
CUDA_VISIBLE_DEVICES=2,3 torchrun --nproc-per-node 2 --master-port 29502 -m sana_world.generators.train.autoencoder \
  --preset f8c16 --out-dir runs/ae_f8c16 "${common[@]}" > "$out/ae_f8c16.log" 2>&1 &
wait
for name in f8c16_lite f8c16; do
  python3 -m sana_world.generators.train.export_folder runs/ae_$name "$out/ae_$name.tar"
done
tail -n 3 "$out"/ae_*.log
cat runs/ae_*/eval.json
