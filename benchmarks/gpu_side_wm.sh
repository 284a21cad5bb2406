#!/usr/bin/env bash
# One GPU's share of a training session, issue #6 second pass: SANA-WM 2.66B against diffusers (eager, stream,
# blocks compiled), SANA-Sprint one step and the DC-AE decoder with its compiled rows, then the WM profile.
# Usage (device machine, repo root, carried wheels installed): bash THIS OUT
out=${1:?usage: gpu_side_wm.sh OUT}
timeout 240 python3 benchmarks/world_model.py --time-budget-s 210 --compile-frames 161 41 --out "$out" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 30
timeout 180 python3 benchmarks/sana_image.py --groups sprint decoder --time-budget-s 150 --out "$out" 2>&1 \
  | grep -v "Warn\|warn" | tail -n 20
timeout 60 python3 benchmarks/profile_world_model.py --frames 161 --out "$out" 2>&1 | grep -v "Warn\|warn" | head -n 45
