#!/usr/bin/env bash
# A better decoder for the shipped rooms-128 latents, on one GPU, the shipped (lite) encoder frozen, so the
# latent space and its scale stay exactly the zoo's.
#   bash THIS OUT SECONDS             two runs side by side:
#       wide   the f8c16_lite_wide preset (f8c16 decoder, 3.6 M parameters), fresh decoder, cosine LR;
#       lite   the shipped lite decoder, continued with a cosine LR decay (its first pass ran at a constant LR).
#   bash THIS OUT SECONDS FOLDER      one run alone: the wide decoder continued from FOLDER (a packed export of
#       a wide run), a second cosine cycle from a lower peak LR.
# Each trains for SECONDS, then scores its EMA weights on 1,024 held-out frames (eval.json) and is packed
# (bf16 weights) into OUT. Device machine, repo root, .whl/ carried.
set -uo pipefail
out=${1:?usage: rooms_decoder.sh OUT SECONDS [WIDE_EXPORT]}
secs=${2:?seconds of training}
cont=${3:-}
source generators/train/recipes/setup_gpu.sh
zoo=sana_world/zoo/rooms-128/autoencoder
common=(--freeze-encoder --pool-steps 15 --batch-size 128 --ema-decay 0.999 --bf16 --steps 1000000
        --time-limit-s "$secs" --log-every 200 --ckpt-every 1000000 --no-progress --eval-trajectories 64)
if [ -n "$cont" ]; then
  python3 -m sana_world.generators.train.autoencoder --preset f8c16_lite_wide --init-weights "$cont" \
    "${common[@]}" --pool-trajectories 3072 --pool-workers 8 --warmup-steps 50 --lr 4e-4 --decay-steps 3200 \
    --min-lr-ratio 0.02 --out-dir runs/ae_wide2 > "$out/ae_wide2.log" 2>&1
  names=(wide2)
else
  common+=(--init-weights $zoo --pool-trajectories 4096 --pool-workers 6 --warmup-steps 100)
  python3 -m sana_world.generators.train.autoencoder --preset f8c16_lite_wide --init-encoder-only "${common[@]}" \
    --lr 1e-3 --decay-steps 3000 --min-lr-ratio 0.05 --out-dir runs/ae_wide > "$out/ae_wide.log" 2>&1 &
  python3 -m sana_world.generators.train.autoencoder --preset f8c16_lite "${common[@]}" \
    --lr 3e-4 --decay-steps 4000 --min-lr-ratio 0.05 --out-dir runs/ae_lite > "$out/ae_lite.log" 2>&1 &
  wait
  names=(wide lite)
fi
for name in "${names[@]}"; do
  echo "== $name"; grep -a "held-out" "$out/ae_$name.log" | tail -n 1; cat runs/ae_$name/eval.json
  python3 -m sana_world.generators.train.export_folder runs/ae_$name "$out/ae_$name.tar"
done
