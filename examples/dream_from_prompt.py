"""Start a dreamed world from a sentence or from a picture, then look around in it.

``reset(options={"prompt": ...})`` draws the first frame with the zoo entry's text-to-image model (a SANA
linear DiT) and anchors the world model's stream on it; ``options={"image": ...}`` anchors it on any RGB
picture (centre-cropped and resized to the model's 128²). The camera then turns on the spot and walks
forward; the frames go to a contact sheet. There is no GT for these starts: the GT twin still supplies
the dynamics (a procedural room for collisions), not the picture.

    python examples/dream_from_prompt.py --prompt "a room with red brick walls and a wooden floor"
    python examples/dream_from_prompt.py --image my_photo.png --out outputs/from_image.png
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import sana_world  # noqa: F401  (registers the SanaWorld/* ids)
from sana_world.video import contact_sheet, label


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    start = p.add_mutually_exclusive_group()
    start.add_argument("--prompt", default="a room with red brick walls and a wooden floor")
    start.add_argument("--image", help="an RGB picture file (PNG / JPEG) to start from instead")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--out", default="outputs/dream_from_prompt.png")
    a = p.parse_args(argv)

    if a.image:
        from PIL import Image

        options = {"image": np.asarray(Image.open(a.image).convert("RGB"))}
    else:
        options = {"prompt": a.prompt}
    env = gym.make("SanaWorld/DreamRooms-v0", action_mode="nav")  # 0 forward, 1 turn left, 2 turn right
    obs, info = env.reset(seed=0, options=options)
    frames = [label(obs, "start")]
    for t in range(a.steps):  # 1. turn left for the first half, then walk forward
        action = 1 if t < a.steps // 2 else 0
        obs, *_ = env.step(action)
        frames.append(label(obs, f"{'turn' if action else 'walk'} {t + 1}"))
    env.close()
    contact_sheet(np.stack(frames), min(9, len(frames)), a.out)
    print(f"started from {'the picture ' + a.image if a.image else repr(a.prompt)} ({info['start']}), "
          f"{a.steps} dreamed steps; wrote {a.out}")


if __name__ == "__main__":
    main()
