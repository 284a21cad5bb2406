#!/usr/bin/env bash
# Stage 5 on N GPUs, everything from the shipped rooms-128 weights:
#   GPU 0      (N >= 4 only) a better decoder for the same latents (autoencoder trainer, --freeze-encoder);
#   the rest   the world model with self-forcing (rollouts made as the Dreamer makes them), eager DDP, or
#              whatever the trainer arguments given say (e.g. --self-forcing-prob 0 --cuda-graph);
#   last GPU   the side script given as the third argument (checks and benchmarks), if any.
# Every job stops after SECONDS of training; the exports (bf16, split for the trip home) land in OUT. Then the
# shipped entry and a candidate with the new components are scored side by side (benchmarks/fidelity.py,
# 64 held-out scenes, horizons to 32, one Euler step) on GPU 0 and the first world-model GPU.
# Usage (device machine, repo root): bash THIS OUT SECONDS [SIDE_SCRIPT or ""] [WM TRAINER ARGS...]
set -uo pipefail
out=${1:?usage: rooms_session.sh OUT SECONDS [SIDE_SCRIPT] [ARGS...]}
secs=${2:?seconds of training}
side=${3:-}
shift 3 2>/dev/null || shift $#
source generators/train/recipes/setup_gpu.sh
zoo=sana_world/zoo/rooms-128
n=$(nvidia-smi -L | wc -l)
last=$((n - 1))
first=0
[ "$n" -ge 4 ] && first=1  # GPU 0 trains the decoder on machines of 4 GPUs or more
wm_end=$last
[ -n "$side" ] && wm_end=$((last - 1))
if [ "$wm_end" -lt "$first" ]; then echo "too few GPUs ($n)"; exit 1; fi
wm_gpus=$(seq -s, $first $wm_end)
wm_n=$((wm_end - first + 1))
# 1. the decoder
ae=""
if [ "$first" -eq 1 ]; then
  CUDA_VISIBLE_DEVICES=0 python3 -m sana_world.generators.train.autoencoder --preset f8c16_lite \
    --init-weights $zoo/autoencoder --freeze-encoder --pool-trajectories 4096 --pool-steps 15 --pool-workers 6 \
    --batch-size 128 --lr 6e-4 --warmup-steps 100 --ema-decay 0.999 --bf16 --steps 1000000 \
    --time-limit-s "$secs" --log-every 200 --ckpt-every 1000000 --no-progress --eval-trajectories 64 \
    --out-dir runs/ae_dec > /tmp/ae.log 2>&1 &
  ae=$!
fi
# 2. the side script
if [ -n "$side" ]; then
  (CUDA_VISIBLE_DEVICES=$last bash "$side" "$out" > "$out/side.log" 2>&1) &
fi
# 3. the world model
args=(--preset rooms_p1 --autoencoder $zoo/autoencoder --init-weights $zoo/world_model --data pool --pool-workers 8
  --resolution 128 --bf16 --pool-trajectories 3072 --pool-steps 40 --clip-frames 33 --temporal-stride 1
  --chunk-size 1 --batch-size 32 --lr 2e-4 --warmup-steps 50 --ema-decay 0.998 --grad-clip 1.0 --shift 2.0
  --sigma-one-prob 0.2 --self-forcing-prob 0.5 --self-forcing-steps 1 --self-forcing-context-sigma 0.5
  --steps 1000000 --log-every 50 --ckpt-every 1000000 --no-progress --out-dir runs/wm_sf)
args+=("$@")  # last, so that they override the defaults above
CUDA_VISIBLE_DEVICES=$wm_gpus torchrun --nproc-per-node "$wm_n" --master-port 29531 \
  -m sana_world.generators.train.world_model "${args[@]}" --time-limit-s "$secs" > /tmp/wm.log 2>&1
python3 -m sana_world.generators.train.export_folder runs/wm_sf /tmp/wm_ema.tar
split -b 15m /tmp/wm_ema.tar "$out/wm_ema.tar.part-"
cand=(--world-model runs/wm_sf/export)
if [ -n "$ae" ]; then
  wait $ae
  python3 -m sana_world.generators.train.export_folder runs/ae_dec "$out/ae_dec.tar"
  cand+=(--autoencoder runs/ae_dec/export)
fi
python3 -m sana_world.generators.zoo derive rooms-128 /tmp/candidate "${cand[@]}" > /dev/null
fid=(--scenes 64 --horizon 32 --steps 1 --revisit-scenes 0 --follow 0 --long 0 --batch 64 --workers 8 --device cuda)
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 benchmarks/fidelity.py --model rooms-128 "${fid[@]}" --out /tmp/fid_zoo \
  > /tmp/fid_zoo.log 2>&1 &
fz=$!
CUDA_VISIBLE_DEVICES=$first timeout 150 python3 benchmarks/fidelity.py --model /tmp/candidate "${fid[@]}" \
  --out /tmp/fid_cand > /tmp/fid_cand.log 2>&1
wait $fz
cp /tmp/fid_cand/fidelity_*.json "$out/" 2>/dev/null
wait  # the side script (its commands carry their own timeouts)
tail -n 60 "$out/side.log" 2>/dev/null
grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" /tmp/wm.log | tail -n 5
grep -v "Warn\|warn" /tmp/ae.log | tail -n 3
cat runs/ae_dec/eval.json 2>/dev/null
for f in zoo cand; do echo "== fidelity $f"; grep -A4 "PSNR dB" /tmp/fid_$f.log; tail -n 3 /tmp/fid_$f.log; done
ls -la "$out"
