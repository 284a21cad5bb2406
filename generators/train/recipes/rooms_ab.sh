#!/usr/bin/env bash
# Train world-model candidates side by side on GPU subsets of one device machine (CUDA-graph steps),
# optionally with a side script on another GPU; then score every candidate and the shipped model on
# held-out scenes (benchmarks/gpu_fidelity_ab.sh, one GPU each) and pack each candidate's EMA export into
# OUT (one tar per candidate, split into 15 MiB parts; logs and result files in OUT/logs.tar). At most 8
# files and 64 MiB come back from a device call: about two candidates of the rooms size.
# A candidate is "NAME[@SIGMA]:GPUS:PRESET[:TRAINER ARGS]", e.g. "p1:0,1:rooms_p1:--lr 3e-4"; with @SIGMA it
# is scored at that dream context sigma, and so is the shipped model (label zoo@SIGMA) beside it. Its run lives in
# runs/NAME: a warm machine that still has runs/NAME/checkpoints resumes it; otherwise it starts from the
# shipped world model grown into PRESET (generators/train/grow.py; copied as is if it has that shape).
# Usage (device machine, repo root):
#   bash THIS OUT SECONDS SIDE_GPU SIDE_SCRIPT|"" FID_SCENES FID_HORIZON CANDIDATE...
set -uo pipefail
if [ $# -lt 7 ]; then
  echo "usage: rooms_ab.sh OUT SECONDS SIDE_GPU SIDE_SCRIPT|\"\" FID_SCENES FID_HORIZON CANDIDATE..." >&2
  exit 2
fi
out=$1; secs=$2; side_gpu=$3; side=$4; fid_scenes=$5; fid_horizon=$6
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
names=(); sigmas=()
for cand in "$@"; do  # 1. every candidate's run, in the background
  IFS=: read -r name gpus preset extra <<< "$cand"
  sigma=""; [ "$name" != "${name%@*}" ] && sigma=${name##*@} && name=${name%@*}
  if [ -z "$name" ] || [ -z "$gpus" ] || [ -z "$preset" ]; then
    echo "bad candidate '$cand': want NAME:GPUS:PRESET[:ARGS]" >&2; continue
  fi
  read -ra extra_args <<< "${extra:-}"
  run=runs/$name
  init=()
  if [ -d "$run/checkpoints" ]; then init=(--resume)
  else
    rm -rf "runs/init_$name"
    python3 -m sana_world.generators.train.grow sana_world/zoo/rooms-128/world_model "runs/init_$name" \
      --preset "$preset" || continue
    init=(--init-weights "runs/init_$name")
  fi
  n=$(awk -F, '{print NF}' <<< "$gpus")
  CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc-per-node "$n" --master-port $port \
    -m sana_world.generators.train.world_model --preset "$preset" "${common[@]}" "${init[@]}" \
    "${extra_args[@]}" --out-dir "$run" --time-limit-s "$secs" > "$out/wm_$name.log" 2>&1 &
  names+=("$name"); sigmas+=("$sigma")
  port=$((port + 1))
done
wait
# 2. fresh exports, then held-out scores of the shipped model and every exported candidate
specs=(zoo=zoo)
exported=()
for i in "${!names[@]}"; do
  name=${names[$i]}; sigma=${sigmas[$i]}
  grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" "$out/wm_$name.log" \
    | tail -n 8 | sed "s/^/[$name] /"
  rm -rf "runs/$name/export" "/tmp/export_$name.tar"  # a resumed run exports its new last checkpoint
  if python3 -m sana_world.generators.train.export_folder "runs/$name" "/tmp/export_$name.tar" > /dev/null; then
    if [ -n "$sigma" ]; then specs+=("$name=runs/$name/export@$sigma" "zoo_s$sigma=zoo@$sigma")
    else specs+=("$name=runs/$name/export"); fi
    exported+=("$name")
  fi
done
bash benchmarks/gpu_fidelity_ab.sh "$out" "$fid_scenes" "$fid_horizon" "${specs[@]}"
# 3. pack: each candidate's export in its own 15 MiB parts, the logs and results in one tar
for name in "${exported[@]}"; do
  split -b 15m "/tmp/export_$name.tar" "$out/export_$name.tar.part-"
done
tail -n 60 "$out/side.log" 2>/dev/null
(cd "$out" && small=(*.log *.json) && [ -e "${small[0]}" ] && tar -cf logs.tar --remove-files "${small[@]}")
ls -la "$out"
