#!/usr/bin/env bash
# rooms-128's world and image models moved onto a new autoencoder's latents (e.g. ae_free or ae_anchored of
# rooms_ssaa.sh, 2x2 supersampled frames), side by side on one GPU, each fine-tuned from its shipped weights:
#   wm   the stage-9 world model (or WM_INIT) continued with the stage-9 settings on the new latents;
#   dit  the text-to-image SanaDiT continued on the new latents of SSAA frames.
# Both exports come back packed (bf16): OUT/wm.tar.part-* and OUT/dit.tar. Then, on the CPU:
#   python -m sana_world.generators.zoo derive rooms-128 runs/rooms-128-ssaa --autoencoder AE_EXPORT \
#     --world-model runs/wm_latents/export --image runs/dit_latents/export --supersample 2
#   python benchmarks/fidelity.py --model runs/rooms-128-ssaa ...
# Usage (device machine, repo root, .whl/ and AE_EXPORT carried): bash THIS OUT SECONDS AE_EXPORT [WM_INIT]
set -uo pipefail
out=${1:?usage: rooms_latents.sh OUT SECONDS AE_EXPORT [WM_INIT]}
secs=${2:?seconds of training}
ae=${3:?AE_EXPORT: the new autoencoder export folder}
zoo=sana_world/zoo/rooms-128
wm_init=${4:-$zoo/world_model}
source generators/train/recipes/setup_gpu.sh
python3 -m sana_world.generators.train.world_model --preset rooms_p1 --init-weights "$wm_init" --autoencoder "$ae" \
  --data pool --pool-supersample 2 --pool-workers 6 --pool-trajectories 2048 --pool-steps 40 --resolution 128 \
  --bf16 --clip-frames 33 --temporal-stride 1 --chunk-size 1 --batch-size 16 --lr 1.5e-4 --warmup-steps 20 \
  --decay-steps 700 --min-lr-ratio 0.05 --ema-decay 0.995 --grad-clip 1.0 --shift 2.0 --sigma-one-prob 1.0 \
  --seed 13 --steps 1000000 --log-every 50 --ckpt-every 1000000 --no-progress --cuda-graph --time-limit-s "$secs" \
  --out-dir runs/wm_latents > "$out/wm.log" 2>&1 &
python3 -m sana_world.generators.train.flow_matching --preset rooms --init-weights $zoo/image --autoencoder "$ae" \
  --data pool --pool-supersample 2 --pool-workers 6 --pool-trajectories 2048 --stream-steps 7 --resolution 128 \
  --batch-size 128 --bf16 --lr 1e-4 --warmup-steps 50 --decay-steps 1500 --min-lr-ratio 0.1 --ema-decay 0.995 \
  --grad-clip 1.0 --shift 2.0 --steps 1000000 --log-every 50 --ckpt-every 1000000 --no-progress \
  --time-limit-s "$secs" --out-dir runs/dit_latents > "$out/dit.log" 2>&1 &
wait
for name in wm dit; do
  echo "== $name"; grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" \
    "$out/$name.log" | tail -n 3
done
python3 -m sana_world.generators.train.export_folder runs/wm_latents /tmp/wm.tar > /dev/null \
  && split -b 15m /tmp/wm.tar "$out/wm.tar.part-"
python3 -m sana_world.generators.train.export_folder runs/dit_latents "$out/dit.tar" > /dev/null
ls -la "$out"
