#!/usr/bin/env bash
# Continue the rooms world model on an N-GPU machine with CUDA-graph training steps
# (generators/train/graphs.py; if the capture fails the run restarts eagerly with DDP for the time left)
# on GPUs 0..N-1, or 0..N-2 while the last GPU runs the script given as the third argument (checks and
# benchmarks), if any. The run lives in RUN (default runs/wm): a warm machine that still has RUN's
# checkpoints resumes it; otherwise it starts from INIT's weights (default: the shipped world model).
# Usage (device machine, repo root):
#   bash THIS OUT SECONDS [SIDE_SCRIPT or ""] [RUN or ""] [INIT or ""] [TRAINER ARGS overriding these...]
set -uo pipefail
out=${1:?usage: rooms_graph.sh OUT SECONDS [SIDE_SCRIPT] [RUN] [INIT] [ARGS...]}
secs=${2:?seconds of training}
side=${3:-}
run=${4:-}; run=${run:-runs/wm}
init=${5:-}; init=${init:-sana_world/zoo/rooms-128/world_model}
shift 5 2>/dev/null || shift $#
source generators/train/recipes/setup_gpu.sh
[ -d "$run/checkpoints" ] && init=""  # a warm machine keeps runs/: resume instead
args=(--preset rooms_p1 --autoencoder sana_world/zoo/rooms-128/autoencoder --data pool --pool-workers 16
  --resolution 128 --bf16 --pool-trajectories 3072 --pool-steps 40 --clip-frames 33 --temporal-stride 1
  --chunk-size 1 --batch-size 32 --lr 4e-4 --warmup-steps 100 --ema-decay 0.998 --grad-clip 1.0 --shift 2.0
  --steps 1000000 --log-every 50 --ckpt-every 500 --no-progress --out-dir "$run")
if [ -n "$init" ]; then args+=(--init-weights "$init"); else args+=(--resume); fi
args+=("$@")  # last, so that they override the defaults above
start=$(date +%s)
n=$(nvidia-smi -L | wc -l)
if [ -n "$side" ] && [ "$n" -gt 1 ]; then
  n=$((n - 1))
  (CUDA_VISIBLE_DEVICES=$n bash "$side" "$out" > "$out/side.log" 2>&1) &
fi
gpus=$(seq -s, 0 $((n - 1)))
CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc-per-node $n --master-port 29521 -m sana_world.generators.train.world_model \
  "${args[@]}" --cuda-graph --time-limit-s "$secs" > "$out/wm.log" 2>&1
rc=$?
left=$(( secs - ($(date +%s) - start) ))
if [ $rc -ne 0 ] && [ $left -gt 60 ]; then
  echo "cuda-graph run failed (rc $rc); eager (DDP) for ${left}s in ${run}_eager" | tee -a "$out/wm.log"
  CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc-per-node $n --master-port 29522 -m sana_world.generators.train.world_model \
    "${args[@]}" --out-dir "${run}_eager" --time-limit-s "$left" >> "$out/wm.log" 2>&1
fi
wait
[ -d "${run}_eager/checkpoints" ] && run=${run}_eager
python3 -m sana_world.generators.train.export_folder "$run" /tmp/wm_ema.tar
split -b 15m /tmp/wm_ema.tar "$out/$(basename "$run")_ema.tar.part-"
grep -v "render pool\|Warn\|warn\|grad.sizes\|bucket_view\|return Variable\|return func" "$out/wm.log" | tail -n 25
tail -n 80 "$out/side.log" 2>/dev/null
ls -la "$out"
