"""The main job behind ``make demo``: an agent walks a held-out world; the run is written to video.

Today the world is the ground-truth renderer (the world model joins once trained weights ship): a
:class:`~sana_world.controllers.RandomExplorer` drives ``SanaWorld/Rooms-v0`` on a held-out scene, and the
run is written as RGB | depth to ``<out>/demo.mp4`` plus a contact sheet, with steps/s printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("outputs")
    steps: int = 240
    size: int = 128
    seed: int = 2
    fps: int = 16
    renderer: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.size < 16:
            raise ValueError(f"steps must be >= 1 and size >= 16, got {self.steps}, {self.size}")


def run_demo(cfg: DemoConfig) -> dict[str, float | str]:
    """Run the demo; returns the paths written and the measured steps/s."""
    import gymnasium as gym
    import torch
    from tqdm import tqdm

    import sana_world  # noqa: F401  (registers the ids)
    from sana_world.camera import CameraState
    from sana_world.controllers import RandomExplorer
    from sana_world.video import colorize_depth, contact_sheet, grid, write_video
    from sana_world.worlds import caption

    # 1. a GT env on a held-out scene, and the explorer that drives it
    env = gym.make("SanaWorld/Rooms-v0", width=cfg.size, height=cfg.size, split="heldout", renderer=cfg.renderer,
                   max_episode_steps=cfg.steps + 1)
    obs, info = env.reset(seed=cfg.seed)
    world = env.unwrapped.world
    explorer = RandomExplorer()

    def camera_state() -> CameraState:
        yaw, pitch, roll = (float(v) for v in world.angles[0])
        return CameraState(world.position[0].cpu().numpy().copy(), yaw, pitch, roll)

    explorer.reset(env.unwrapped.scene, camera_state(), np.random.default_rng(cfg.seed))
    print(f"scene {info['scene_id']}: {caption(env.unwrapped.scene)}")
    rgb, depth, total_reward, collisions = [obs], [info["depth"]], 0.0, 0
    # 2. the loop: act, step, record
    t0 = time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc="demo", unit="step", disable=not cfg.progress):
        action = explorer.act(camera_state()).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(np.clip(action, -1, 1))
        rgb.append(obs)
        depth.append(info["depth"])
        total_reward += reward
        collisions += int(info["collision"])
        if terminated or truncated:
            break
    elapsed = time.perf_counter() - t0
    steps = len(rgb) - 1
    # 3. the video and the contact sheet
    frames = grid({"GT RGB": np.stack(rgb), "GT depth": colorize_depth(np.stack(depth), max_depth=8.0)})
    cfg.out.mkdir(parents=True, exist_ok=True)
    video = write_video(cfg.out / "demo.mp4", frames, fps=cfg.fps)
    sheet = cfg.out / "demo_sheet.png"
    contact_sheet(frames, 8, sheet, columns=4)
    env.close()
    result = {"video": str(video), "sheet": str(sheet), "steps": steps, "steps_per_s": steps / elapsed,
              "reward": total_reward, "collisions": collisions, "threads": torch.get_num_threads()}
    print(f"{steps} steps in {elapsed:.1f} s ({steps / elapsed:.1f} steps/s, renderer={cfg.renderer}); "
          f"explore reward {total_reward:.2f}, {collisions} blocked moves")
    print(f"wrote {video} and {sheet}")
    return result
