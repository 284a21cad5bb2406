#!/usr/bin/env bash
# Train world-model candidates side by side on GPU subsets of one device machine (CUDA-graph steps),
# optionally with a side script on another GPU; then score every candidate and the shipped model on
# held-out scenes (benchmarks/gpu_fidelity_ab.sh, one GPU each) and pack each candidate's EMA export into
# OUT (one tar split into 15 MiB parts; logs and result files in OUT/logs.tar).
# A candidate is "NAME:GPUS:PRESET[:TRAINER ARGS]", e.g. "p1:0,1:rooms_p1:--lr 3e-4". Its run lives in
# runs/NAME: a warm machine that still has runs/NAME/checkpoints resumes it; otherwise it starts from the
# shipped world model grown into PRESET (generators/train/grow.py; "rooms" starts from it unchanged).
# Usage (device machine, repo root):
#   bash THIS OUT SECONDS SIDE_GPU SIDE_SCRIPT|"" FID_SCENES FID_HORIZON CANDIDATE...
set -uo pipefail
out=${1:?usage: rooms_ab.sh OUT SECONDS SIDE_GPU SIDE_SCRIPT FID_SCENES FID_HORIZON CANDIDATE...}
secs=$2; side_gpu=$3; side=$4; fid_scenes=$5; fid_horizon=$6
shift 6
source generators/train/recipes/setup_gpu.sh
common=(--autoencoder sana_world/zoo/rooms-128/autoencoder --data pool --pool-workers 12
  --resolution 128 --bf16 --pool-trajectories 3072 --pool-steps 40 --clip-frames 33 --temporal-stride 1
  --chunk-size 1 --batch-size 32 --lr 3e-4 --warmup-steps 100 --ema-decay 0.998 --grad-clip 1.0 --shift 2.0
  --sigma-one-prob 0.3 --steps 1000000 --log-every 50 --ckpt-every 250 --no-progress --cuda-graph)
if [ -n "$side" ]; then
  (CUDA_VISIBLE_DEVICES=$side_gpu bash "$side" "$out" > "$out/side.log" 2>&1) &
fi
port=29530
names=()
for cand in "$@"; do  # 1. every candidate's run, in the background
  IFS=: read -r name gpus preset extra <<< "$cand"
  names+=("$name")
  run=runs/$name
  init=()
  if [ -d "$run/checkpoints" ]; then init=(--resume)
  elif [ "$preset" = rooms ]; then init=(--init-weights sana_world/zoo/rooms-128/world_model)
  else
    python3 -m sana_world.generators.train.grow sana_world/zoo/rooms-128/world_model "runs/init_$name" \
      --preset "$preset" || continue
    init=(--init-weights "runs/init_$name")
  fi
  n=$(awk -F, '{print NF}' <<< "$gpus")
  # shellcheck disable=SC2086  # extra holds several trainer arguments
  CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc-per-node "$n" --master-port $port \
    -m sana_world.generators.train.world_model --preset "$preset" "${common[@]}" "${init[@]}" $extra \
    --out-dir "$run" --time-limit-s "$secs" > "$out/wm_$name.log" 2>&1 &
  port=$((port + 1))
done
wait
# 2. exports, then held-out scores of the shipped model and every candidate
specs=(zoo=zoo)
for name in "${names[@]}"; do
  grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" "$out/wm_$name.log" \
    | tail -n 8 | sed "s/^/[$name] /"
  rm -rf "runs/$name/export"  # a resumed run exports its new last checkpoint
  python3 -m sana_world.generators.train.export_folder "runs/$name" "/tmp/export_$name.tar" > /dev/null \
    && specs+=("$name=runs/$name/export")
done
bash benchmarks/gpu_fidelity_ab.sh "$out" "$fid_scenes" "$fid_horizon" "${specs[@]}"
# 3. pack: the exports in 15 MiB parts, the rest in one tar
tar -cf /tmp/exports.tar -C /tmp $(cd /tmp && ls export_*.tar 2>/dev/null)
split -b 15m /tmp/exports.tar "$out/exports.tar.part-"
tail -n 60 "$out/side.log" 2>/dev/null
(cd "$out" && tar -cf logs.tar --exclude 'exports.tar.part-*' --remove-files ./*.log ./*.json 2>/dev/null)
ls -la "$out"
