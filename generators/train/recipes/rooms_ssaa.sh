#!/usr/bin/env bash
# rooms-128 on antialiased GT frames (2x2 supersampled: PoolConfig.supersample 2), three runs side by side on
# one GPU, all from the shipped models:
#   ae_free      encoder and decoder trained freely on SSAA frames (a new latent space: the world model needs a
#                fine-tune on its latents; the decoder-only run of session 17 stopped at 28.72 dB);
#   ae_anchored  encoder and decoder trained, the latents held near the shipped encoder's (--anchor-weight 1);
#                ae_anchorW the same with --anchor-weight W (e.g. ae_anchor0.1); an anchored autoencoder may keep
#                the shipped world and image models (zoo derive --max-latent-drift);
#   wm           the shipped world model (stage 9) continued on SSAA frames' latents of the shipped encoder,
#                the stage-9 settings at a lower learning rate: it learns the frames the new decoder decodes.
# Each trains for SECONDS after its pool render. Each autoencoder's eval.json scores it on the 1,024 held-out
# SSAA frames that ae_error.py --supersample 2 scores (shipped: 28.40 dB). The exports come back packed (bf16):
# OUT/ae_*.tar and OUT/wm.tar.part-*.
# RUNS (default "ae_free ae_anchored wm") names the runs to make, e.g. "ae_anchored ae_anchor0.1": fewer runs
# share the GPU less.
# Usage (device machine, repo root, .whl/ carried): bash THIS OUT SECONDS [RUNS]
set -uo pipefail
out=${1:?usage: rooms_ssaa.sh OUT SECONDS [RUNS]}
secs=${2:?seconds of training}
runs=${3:-ae_free ae_anchored wm}
for run in $runs; do
  case $run in ae_free|ae_anchored|wm) ;; ae_anchor[0-9]*) ;;
    *) echo "rooms_ssaa.sh: unknown run $run (ae_free, ae_anchored, ae_anchorW, wm)"; exit 2;; esac
done
wants() { [[ " $runs " == *" $1 "* ]]; }
source generators/train/recipes/setup_gpu.sh
zoo=sana_world/zoo/rooms-128
ae=(--init-weights $zoo/autoencoder --pool-supersample 2 --pool-trajectories 1024 --pool-steps 15 --pool-workers 4
    --batch-size 128 --bf16 --ema-decay 0.995 --lr 3e-4 --warmup-steps 100 --decay-steps 2000 --min-lr-ratio 0.05
    --steps 1000000 --time-limit-s "$secs" --log-every 200 --ckpt-every 1000000 --no-progress
    --eval-trajectories 64)
aes=()
for run in $runs; do  # 1. the autoencoder runs, side by side
  case $run in
    ae_free) anchor=();; ae_anchored) anchor=(--anchor-weight 1);; ae_anchor*) anchor=(--anchor-weight "${run#ae_anchor}");;
    *) continue;;
  esac
  aes+=("$run")
  python3 -m sana_world.generators.train.autoencoder "${ae[@]}" "${anchor[@]}" --out-dir "runs/$run" \
    > "$out/$run.log" 2>&1 &
done
wants wm && python3 -m sana_world.generators.train.world_model --preset rooms_p1 --init-weights $zoo/world_model \
  --autoencoder $zoo/autoencoder --data pool --pool-supersample 2 --pool-workers 6 --pool-trajectories 1024 \
  --pool-steps 40 --resolution 128 --bf16 --clip-frames 33 --temporal-stride 1 --chunk-size 1 --batch-size 16 \
  --lr 1e-4 --warmup-steps 20 --decay-steps 500 --min-lr-ratio 0.05 --ema-decay 0.995 --grad-clip 1.0 \
  --shift 2.0 --sigma-one-prob 1.0 --seed 12 --steps 1000000 --log-every 50 --ckpt-every 1000000 --no-progress \
  --cuda-graph --time-limit-s "$secs" --out-dir runs/wm_ssaa > "$out/wm.log" 2>&1 &
wait
for run in "${aes[@]}"; do  # 2. their scores and packed exports
  echo "== $run"; tail -n 1 "$out/$run.log"; cat "runs/$run/eval.json"
  python3 -m sana_world.generators.train.export_folder "runs/$run" "$out/$run.tar" > /dev/null
done
wants wm || { ls -la "$out"; exit 0; }
echo "== wm"
grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" "$out/wm.log" | tail -n 4
python3 -m sana_world.generators.train.export_folder runs/wm_ssaa /tmp/wm.tar > /dev/null \
  && split -b 15m /tmp/wm.tar "$out/wm.tar.part-"
ls -la "$out"
