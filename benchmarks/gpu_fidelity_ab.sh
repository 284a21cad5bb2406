#!/usr/bin/env bash
# Score world-model candidates side by side with the shipped rooms-128 entry on a device machine, one
# model per GPU, all in parallel: benchmarks/fidelity.py on SCENES held-out scenes, horizons to HORIZON, one
# Euler step (the shipped dream sampler), without the revisit / follow / long sections. Each candidate is the
# shipped entry with its world model replaced by an export/ folder (python -m sana_world.generators.zoo
# derive). A label ending in @SIGMA also scores that context sigma instead of the entry's own.
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT SCENES HORIZON LABEL=EXPORT_DIR[@SIGMA] ...
#   (LABEL=zoo scores the shipped entry itself)
set -uo pipefail
out=${1:?usage: gpu_fidelity_ab.sh OUT SCENES HORIZON LABEL=EXPORT[@SIGMA] ...}
scenes=${2:?scenes}; horizon=${3:?horizon}
shift 3
n=$(nvidia-smi -L | wc -l)
fid=(--scenes "$scenes" --horizon "$horizon" --steps 1 --revisit-scenes 0 --follow 0 --long 0 --batch "$scenes" --workers 4
  --device cuda)
i=0
launched=()
for spec in "$@"; do
  label=${spec%%=*}; rest=${spec#*=}
  export_dir=${rest%@*}; sigma=""
  [ "$rest" != "$export_dir" ] && sigma=${rest##*@}
  model=rooms-128
  rm -rf "/tmp/cand_$label" "/tmp/fid_$label" "/tmp/fid_$label.log"  # nothing left from an earlier call
  if [ "$export_dir" != "zoo" ]; then
    model=/tmp/cand_$label
    if ! python3 -m sana_world.generators.zoo derive rooms-128 "$model" --world-model "$export_dir" > /dev/null; then
      echo "== $spec: could not derive an entry from $export_dir" >&2; continue
    fi
  fi
  extra=(); [ -n "$sigma" ] && extra=(--context-sigma "$sigma")
  mkdir -p "/tmp/fid_$label"
  CUDA_VISIBLE_DEVICES=$((i % n)) timeout 150 python3 benchmarks/fidelity.py --model "$model" "${fid[@]}" \
    "${extra[@]}" --out "/tmp/fid_$label" > "/tmp/fid_$label.log" 2>&1 &
  launched+=("$spec")
  i=$((i + 1))
done
wait
for spec in "${launched[@]}"; do
  label=${spec%%=*}
  echo "== $spec"; grep -A4 "PSNR dB" "/tmp/fid_$label.log"; tail -n 2 "/tmp/fid_$label.log"
  f=$(ls /tmp/fid_$label/fidelity_*.json 2>/dev/null | head -1)
  [ -n "$f" ] && cp "$f" "$out/fidelity_ab_$label.json"
done
