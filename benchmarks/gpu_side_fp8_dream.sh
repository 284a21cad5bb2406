#!/usr/bin/env bash
# One GPU: FP8 dreams (DreamerConfig.fp8: the world model's wide layers through torch._scaled_mm) against bf16,
# and Sol-RL with its FP8 candidate pool, in the order of their worth if the call is cut short:
#   1. the FP8 Dreamer test on CUDA (FP8 frames close to fp32, the zoo model untouched);
#   2. the dream step alone, compiled, bf16 against bf16 + FP8, at 512 and 1024 streams (the 10,000 steps/s bar;
#      session 17: 7,864 at 1024 in bf16, the model pass 89 of 130 ms);
#   3. Sol-RL on the shipped image model, FP8 (kernel) previews and bf16 training, for SECONDS, then its reward
#      on held-out prompts against the base's (sol_rl_reward.py), the export packed to OUT/sol_rl.tar.
# Usage (device machine, repo root, after setup_gpu.sh): bash THIS OUT [SECONDS]
set -uo pipefail
out=${1:?usage: gpu_side_fp8_dream.sh OUT [SECONDS]}
secs=${2:-240}
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/generators/test_dreamer.py -k fp8 2>&1 | tail -n 3
timeout 300 python3 benchmarks/dream_env.py --device cuda --batches 512 1024 --steps 1 --rows dream \
  --precision bf16 bf16+fp8 --compile compiled --warmup 14 --iters 20 --out "$out" 2>&1 | grep -v "Warn\|warn" \
  | tail -n 6
zoo=sana_world/zoo/rooms-128
timeout $((secs + 120)) python3 -m sana_world.generators.train.sol_rl --policy $zoo/image --autoencoder \
  $zoo/autoencoder --pool-trajectories 1024 --pool-workers 8 --prompts 16 --candidates 16 --keep 4 --bf16 \
  --lr 1e-4 --beta 1.0 --steps 1000000 --time-limit-s "$secs" --log-every 20 --no-progress \
  --out-dir runs/sol_rl_gpu > "$out/sol_rl.log" 2>&1
tail -n 3 "$out/sol_rl.log"
cp runs/sol_rl_gpu/train.jsonl "$out/sol_rl_train.jsonl"
python3 -m sana_world.generators.train.export_folder runs/sol_rl_gpu "$out/sol_rl.tar" > /dev/null
timeout 200 python3 benchmarks/sol_rl_reward.py --device cuda --policy runs/sol_rl_gpu/export --prompts 64 \
  --out "$out" 2>&1 | tail -n 12
