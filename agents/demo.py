"""The main job behind ``make demo``: an agent walks through dreamed worlds; the run is written to video.

Two episodes of ``SanaWorld/DreamRooms-v0`` (the shipped ``rooms-128`` world model, CPU by default),
driven by the scripted :class:`~sana_world.controllers.RandomExplorer`:

1. started from a held-out GT scene (its first rendered frame anchors the dream), paired with the GT
   renderer, so every step has its PSNR / SSIM to the truth;
2. started from a text prompt (the shipped text-to-image model draws the first frame).

Writes ``<out>/demo.mp4`` (GT | dream | GT depth, labelled) and ``<out>/demo_sheet.png``, and prints the
fidelity of the first episode against the "hold" baseline (the anchor frame repeated) and steps/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROMPT = "a room with red brick walls, a grey wooden floor, a blue sphere and a yellow table"


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("outputs")
    steps: int = 64  # dream steps from the GT scene
    prompt_steps: int = 32  # dream steps from the prompt
    prompt: str = PROMPT
    seed: int = 2
    fps: int = 8
    renderer: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.prompt_steps < 0:
            raise ValueError(f"steps must be >= 1 and prompt_steps >= 0, got {self.steps}, {self.prompt_steps}")


def _episode(env, explorer, steps: int, options: dict, seed: int, progress: bool, desc: str):
    """Run one episode; returns the GT, dream and depth frames and per-step infos."""
    from tqdm import tqdm

    from sana_world.camera import CameraState

    obs, info = env.reset(seed=seed, options=options)
    world = env.unwrapped.core.world

    def camera_state() -> CameraState:
        yaw, pitch, roll = (float(v) for v in world.angles[0])
        return CameraState(world.position[0].cpu().numpy().copy(), yaw, pitch, roll)

    explorer.reset(world.specs[0], camera_state(), np.random.default_rng(seed))
    gt, dream, depth, infos = [info["gt_rgb"]], [obs], [info["gt_depth"]], [info]
    for _ in tqdm(range(steps), desc=desc, unit="step", disable=not progress):  # 1. act, step, record
        action = np.clip(explorer.act(camera_state()), -1, 1).astype(np.float32)
        obs, _, terminated, truncated, info = env.step(action)
        gt.append(info["gt_rgb"])
        dream.append(obs)
        depth.append(info["gt_depth"])
        infos.append(info)
        if terminated or truncated:
            break
    return np.stack(gt), np.stack(dream), np.stack(depth), infos


def run_demo(cfg: DemoConfig) -> dict[str, float | str]:
    """Run the demo; returns the paths written and the measured numbers."""
    import gymnasium as gym
    import torch

    import sana_world  # noqa: F401  (registers the ids)
    from sana_world.controllers import RandomExplorer
    from sana_world.metrics import psnr, ssim
    from sana_world.video import colorize_depth, contact_sheet, grid, write_video
    from sana_world.worlds import caption

    t_load = time.perf_counter()
    env = gym.make("SanaWorld/DreamRooms-v0", paired=True, renderer=cfg.renderer,
                   max_episode_steps=max(cfg.steps, cfg.prompt_steps) + 1)
    load_s = time.perf_counter() - t_load
    explorer = RandomExplorer()
    # 1. from a held-out GT scene
    t0 = time.perf_counter()
    gt, dream, depth, infos = _episode(env, explorer, cfg.steps, {}, cfg.seed, cfg.progress, "dream (GT start)")
    elapsed = time.perf_counter() - t0
    print(f"scene {infos[0]['scene_id']} (held out): {caption(env.unwrapped.core.world.specs[0])}")
    d_psnr = psnr(torch.from_numpy(dream[1:]), torch.from_numpy(gt[1:]))
    d_ssim = ssim(torch.from_numpy(dream[1:]), torch.from_numpy(gt[1:]))
    h_psnr = psnr(torch.from_numpy(gt[:1]).expand(len(gt) - 1, -1, -1, -1), torch.from_numpy(gt[1:]))
    columns = {"GT": gt, "dream": dream, "GT depth": colorize_depth(depth, max_depth=8.0)}
    frames = [grid(columns)]
    # 2. from a text prompt (the GT scene only supplies collision geometry)
    if cfg.prompt_steps:
        pgt, pdream, pdepth, pinfos = _episode(env, explorer, cfg.prompt_steps, {"prompt": cfg.prompt},
                                               cfg.seed + 1, cfg.progress, "dream (prompt start)")
        frames.append(grid({"GT geometry (not the prompt)": pgt, f"dream: {cfg.prompt[:28]}...": pdream,
                            "GT depth": colorize_depth(pdepth, max_depth=8.0)}))
    video_frames = np.concatenate(frames)
    cfg.out.mkdir(parents=True, exist_ok=True)
    video = write_video(cfg.out / "demo.mp4", video_frames, fps=cfg.fps)
    sheet = cfg.out / "demo_sheet.png"
    contact_sheet(frames[0], 8, sheet, columns=4)
    env.close()
    steps = len(dream) - 1
    hs = [h for h in (1, 8, 32) if h <= steps]
    result = {"video": str(video), "sheet": str(sheet), "steps": steps, "steps_per_s": steps / elapsed,
              "load_s": load_s, "threads": torch.get_num_threads(),
              **{f"psnr_h{h}": float(d_psnr[h - 1]) for h in hs}, **{f"hold_psnr_h{h}": float(h_psnr[h - 1]) for h in hs},
              **{f"ssim_h{h}": float(d_ssim[h - 1]) for h in hs}}
    print("fidelity on this episode (dream vs GT at the same pose; hold = anchor frame repeated):")
    for h in hs:
        print(f"  h={h:<3} dream {float(d_psnr[h - 1]):5.2f} dB (SSIM {float(d_ssim[h - 1]):.3f})   "
              f"hold {float(h_psnr[h - 1]):5.2f} dB")
    print(f"  mean over {steps} steps: dream {float(d_psnr.mean()):.2f} dB, hold {float(h_psnr.mean()):.2f} dB")
    print(f"{steps} dream steps in {elapsed:.1f} s ({steps / elapsed:.1f} steps/s on {torch.get_num_threads()} "
          f"threads, GT renderer for pairing included; models loaded in {load_s:.1f} s)")
    print(f"wrote {video} and {sheet}")
    return result
