#!/usr/bin/env bash
# Stage 2 of the shipped "rooms-128" models, on a 4-GPU machine: the SANA-WM world model (GPUs 0-2, DDP)
# and the text-to-image SanaDiT (GPU 3) side by side, both on the latents of the shipped autoencoder
# (sana_world/zoo/rooms-128/autoencoder, stage 1). Packs EMA weights (bf16) into OUT, the world model's
# tar split into 15 MB parts. Usage (device machine, repo root): bash THIS OUT [SECONDS]
set -euo pipefail
out=${1:?usage: rooms_models.sh OUT [SECONDS]}
secs=${2:-440}
ae=sana_world/zoo/rooms-128/autoencoder
source generators/train/recipes/setup_gpu.sh
common=(--autoencoder "$ae" --data pool --pool-workers 16 --resolution 128 --bf16 --lr 3e-4 --warmup-steps 300
        --ema-decay 0.999 --grad-clip 1.0 --shift 2.0 --steps 1000000 --time-limit-s "$secs" --log-every 50
        --ckpt-every 1000000 --no-progress)
CUDA_VISIBLE_DEVICES=0,1,2 torchrun --nproc-per-node 3 --master-port 29511 -m sana_world.generators.train.world_model \
  --preset rooms --pool-trajectories 3072 --pool-steps 40 --clip-frames 33 --temporal-stride 1 --chunk-size 1 \
  --batch-size 24 --out-dir runs/wm "${common[@]}" > "$out/wm.log" 2>&1 &
CUDA_VISIBLE_DEVICES=3 python3 -m sana_world.generators.train.flow_matching \
  --preset rooms --pool-trajectories 4096 --stream-steps 7 --batch-size 128 --out-dir runs/dit "${common[@]}" \
  > "$out/dit.log" 2>&1 &
wait
python3 -m sana_world.generators.train.export_folder runs/wm /tmp/wm.tar
split -b 15m /tmp/wm.tar "$out/wm.tar.part-"
python3 -m sana_world.generators.train.export_folder runs/dit "$out/dit.tar"
grep -v "render pool\|Warn\|warn" "$out"/wm.log | tail -n 5
grep -v "render pool\|Warn\|warn" "$out"/dit.log | tail -n 5
