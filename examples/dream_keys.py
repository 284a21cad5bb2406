"""Drive a dreamed world with SANA-WM's key DSL and watch it beside the exact GT world.

The Dream env in ``action_mode="keys"`` takes one MultiBinary(8) key vector a step (``wasdijkl``); a DSL
string such as ``"w-12,j-10,wl-8"`` (keys-frames segments) becomes that key sequence. ``paired=True`` renders
the GT frame at every pose, so the video is GT | dream, and the dream's PSNR to GT (mean, first and last
step) is printed at the end.

    python examples/dream_keys.py --keys "w-12,j-10,wl-8" --out outputs/dream_keys.mp4
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import sana_world  # noqa: F401  (registers the SanaWorld/* ids)
from sana_world.controllers.keys import action_string_to_keys
from sana_world.video import contact_sheet, grid, write_video


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", default="w-12,j-10,wl-8", help="SANA-WM key DSL string")
    p.add_argument("--scene", type=int, default=1_000_003, help="scene seed (1,000,000 and up: held out)")
    p.add_argument("--out", default="outputs/dream_keys.mp4")
    a = p.parse_args(argv)

    presses = action_string_to_keys(a.keys)  # (F, 8) int8, one row a step
    env = gym.make("SanaWorld/DreamRooms-v0", action_mode="keys", paired=True)
    obs, info = env.reset(seed=0, options={"scene_seed": a.scene})
    gt, dream, psnr = [info["gt_rgb"]], [obs], []
    for keys in presses:  # 1. one dreamed frame a key press
        obs, reward, terminated, truncated, info = env.step(keys)
        gt.append(info["gt_rgb"])
        dream.append(obs)
        psnr.append(info["psnr"])
        if terminated or truncated:
            break
    env.close()
    frames = grid({"GT": np.stack(gt), "dream": np.stack(dream)})  # (T, H, 2W + gap, 3)
    path = write_video(a.out, frames, fps=8)
    contact_sheet(frames, min(8, len(frames)), path.with_suffix(".png"))
    print(f"{len(psnr)} steps of {a.keys!r}: PSNR to GT {np.mean(psnr):.2f} dB on average "
          f"(first {psnr[0]:.2f}, last {psnr[-1]:.2f}); wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
