#!/usr/bin/env bash
# Can the rooms-128 autoencoder reach 30 dB on antialiased frames? Three runs side by side on one GPU, all on
# 2x supersampled pool frames (PoolConfig.supersample 2) and all from the shipped autoencoder:
#   decoder   the encoder frozen, the decoder trained (the latent space is kept: every model on it stays valid);
#   free      encoder and decoder trained freely (a new latent space: the world model would need retraining);
#   anchored  the same with --anchor-weight 1 (latents held near the shipped encoder's: a short world-model
#             fine-tune, not a retrain).
# Each trains for SECONDS, is scored by its eval.json (1,024 held-out SSAA frames) and packed into OUT;
# ae_error.py then scores the shipped AE and both on the same SSAA frames.
# Usage (device machine, repo root, .whl/ carried): bash THIS OUT SECONDS
set -uo pipefail
out=${1:?usage: rooms_ae_ssaa.sh OUT SECONDS}
secs=${2:?seconds of training}
source generators/train/recipes/setup_gpu.sh
zoo=sana_world/zoo/rooms-128/autoencoder
common=(--init-weights $zoo --pool-supersample 2 --pool-trajectories 1024 --pool-steps 15 --pool-workers 4
        --batch-size 128 --bf16 --ema-decay 0.995 --lr 3e-4 --warmup-steps 100 --decay-steps 1200 --min-lr-ratio 0.05
        --steps 1000000 --time-limit-s "$secs" --log-every 200 --ckpt-every 1000000 --no-progress
        --eval-trajectories 64)
python3 -m sana_world.generators.train.autoencoder "${common[@]}" --out-dir runs/ae_ssaa_free \
  > "$out/ae_ssaa_free.log" 2>&1 &
python3 -m sana_world.generators.train.autoencoder "${common[@]}" --anchor-weight 1 --out-dir runs/ae_ssaa_anchored \
  > "$out/ae_ssaa_anchored.log" 2>&1 &
python3 -m sana_world.generators.train.autoencoder "${common[@]}" --freeze-encoder --out-dir runs/ae_ssaa_decoder \
  > "$out/ae_ssaa_decoder.log" 2>&1 &
wait
for name in free anchored decoder; do
  echo "== $name"; tail -n 2 "$out/ae_ssaa_$name.log"; cat runs/ae_ssaa_$name/eval.json
  python3 -m sana_world.generators.train.export_folder runs/ae_ssaa_$name "$out/ae_ssaa_$name.tar"
done
python3 benchmarks/ae_error.py --device cuda --supersample 2 --ae zoo runs/ae_ssaa_free/export \
  runs/ae_ssaa_anchored/export runs/ae_ssaa_decoder/export --suffix _ssaa2 --out "$out" 2>&1 | grep -v "Warn\|warn" | tail -n 6
