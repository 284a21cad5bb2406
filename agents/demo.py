"""The main job behind ``make demo``: an agent walks through dreamed worlds; the run is written to video.

Two episodes of ``SanaWorld/DreamRooms-v0`` (the shipped ``rooms-128`` world model, CPU by default),
driven by the scripted :class:`~sana_world.controllers.RandomExplorer`, then one of its PointNav twin
driven by a learned policy:

1. started from a held-out GT scene (its first rendered frame anchors the dream), paired with the GT
   renderer, so every step has its PSNR / SSIM to the truth;
2. started from a text prompt (the shipped text-to-image model draws the first frame);
3. ``SanaWorld/DreamPointNav-v0`` driven by the shipped PPO agent (trained on GT frames of the GT twin,
   :mod:`sana_world.agents.ppo`; here it sees only the dream frames, area-averaged to the 64² it was
   trained on, and the goal vector). Needs
   stable-baselines3 (the ``rl`` extra, which ``make demo`` installs); ``ppo_steps=0`` skips it.

Writes ``<out>/demo.mp4`` (GT | dream | GT depth, labelled) and ``<out>/demo_sheet.png``, and prints the
fidelity of the first episode against the "hold" baseline (the anchor frame repeated) and steps/s.

Run it as ``sana-world demo [options]`` or ``python -m sana_world.agents.demo [options]`` (the same
command line; ``--help`` lists the options).
"""

from __future__ import annotations

import os
import sys
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
    ppo_steps: int = 48  # dream steps of the PPO agent's PointNav episode (0: skip it)
    # the PPO episode: held-out scene 1,000,006 with reset seed 6, picked as one the agent solves on GT
    # (in 34 steps); over held-out scenes it solves 45 % (benchmarks/results/agent_transfer_*.json)
    ppo_scene: int = 1_000_006
    ppo_seed: int = 6
    policy: Path | None = None  # an exported policy folder (None: the shipped pointnav-64)
    model: str = "rooms-128"  # the zoo entry that dreams: a shipped name or an entry folder
    seed: int = 2
    fps: int = 8
    renderer: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.prompt_steps < 0 or self.ppo_steps < 0:
            raise ValueError(f"steps must be >= 1, prompt_steps and ppo_steps >= 0, got {self.steps}, "
                             f"{self.prompt_steps}, {self.ppo_steps}")


def check_out(out: Path, name: str = "out") -> None:
    """Raise unless ``out`` is, or can be created as, a writable folder: called before any model loads, so a
    bad output path fails at once. ``name`` is how the caller calls it in messages ("--out")."""
    for p in (out, *out.parents):  # the nearest existing folder on the way decides
        if not p.exists():
            continue
        if not p.is_dir():
            raise FileExistsError(f"{name} {out}: {p} is a file, not a folder; the demo writes demo.mp4 and "
                                  "demo_sheet.png into a folder: give a folder path (created if missing)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise PermissionError(f"{name} {out}: the folder {p} is not writable; give a folder you can "
                                  "write")
        return


class _Explorer:
    """The scripted explorer as a demo agent: it plans from the camera's pose, not from the frames."""

    def __init__(self, explorer) -> None:
        self.explorer = explorer

    def reset(self, env, seed: int) -> None:
        self.world = env.unwrapped.core.world
        self.explorer.reset(self.world.specs[0], self._camera(), np.random.default_rng(seed))

    def _camera(self):
        from sana_world.camera import CameraState

        yaw, pitch, roll = (float(v) for v in self.world.angles[0])
        return CameraState(self.world.position[0].cpu().numpy().copy(), yaw, pitch, roll)

    def act(self, obs) -> np.ndarray:
        return np.clip(self.explorer.act(self._camera()), -1, 1).astype(np.float32)


class _Policy:
    """A trained policy as a demo agent: deterministic actions from what it observes."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def reset(self, env, seed: int) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        return self.policy.predict(obs, deterministic=True)[0]


def _episode(env, agent, steps: int, options: dict, seed: int, progress: bool, desc: str):
    """Run one episode of a paired Dream env; returns the GT, dream (as observed) and depth frames and the
    per-step infos."""
    from tqdm import tqdm

    def frame(obs):
        return obs["rgb"] if isinstance(obs, dict) else obs

    obs, info = env.reset(seed=seed, options=options)
    agent.reset(env, seed)
    gt, dream, depth, infos = [info["gt_rgb"]], [frame(obs)], [info["gt_depth"]], [info]
    for _ in tqdm(range(steps), desc=desc, unit="step", disable=not progress):  # 1. act, step, record
        obs, _, terminated, truncated, info = env.step(agent.act(obs))
        gt.append(info["gt_rgb"])
        dream.append(frame(obs))
        depth.append(info["gt_depth"])
        infos.append(info)
        if terminated or truncated:
            break
    return np.stack(gt), np.stack(dream), np.stack(depth), infos


def _upscale(frames: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscale of (T, h, w, ...) frames to (T, size, size, ...) (size a multiple of h)."""
    k = size // frames.shape[1]
    return frames.repeat(k, axis=1).repeat(k, axis=2) if k > 1 else frames


def run_demo(cfg: DemoConfig) -> dict[str, float | str]:
    """Run the demo; returns the paths written and the measured numbers."""
    import gymnasium as gym
    import torch

    import sana_world  # noqa: F401  (registers the ids)
    from sana_world.controllers import RandomExplorer
    from sana_world.metrics import psnr, ssim
    from sana_world.video import colorize_depth, contact_sheet, grid, write_video
    from sana_world.worlds import caption

    check_out(cfg.out)
    t_load = time.perf_counter()
    env = gym.make("SanaWorld/DreamRooms-v0", model=cfg.model, paired=True, renderer=cfg.renderer,
                   max_episode_steps=max(cfg.steps, cfg.prompt_steps) + 1)
    load_s = time.perf_counter() - t_load
    explorer = _Explorer(RandomExplorer())
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
        frames.append(grid({"GT geometry": pgt, f"dream: {cfg.prompt}": pdream,  # labels fit or end in "…"
                            "GT depth": colorize_depth(pdepth, max_depth=8.0)}))
    # 3. a learned agent in the PointNav twin, on dream frames
    ppo: dict[str, float] = {}
    if cfg.ppo_steps:
        from sana_world.agents.ppo import load_policy, read_card, shipped_policy, task_kwargs
        from sana_world.envs.wrappers import DownsampleRGB

        folder = cfg.policy or shipped_policy()
        card = read_card(folder)
        policy, size = _Policy(load_policy(folder)), int(card.env_kwargs["width"])
        nav = DownsampleRGB(gym.make("SanaWorld/DreamPointNav-v0", model=cfg.model, paired=True,
                                     renderer=cfg.renderer,
                                     max_episode_steps=cfg.ppo_steps + 1, **task_kwargs(card.env_kwargs)),
                            size)  # seen at 64², as trained; the actions the agent was trained with
        t1 = time.perf_counter()
        ngt, ndream, ndepth, ninfos = _episode(nav, policy, cfg.ppo_steps, {"scene_seed": cfg.ppo_scene},
                                               cfg.ppo_seed, cfg.progress, "dream (PPO agent, PointNav)")
        ppo = {"ppo_steps": len(ndream) - 1, "ppo_success": float(bool(ninfos[-1].get("success", False))),
               "ppo_steps_per_s": (len(ndream) - 1) / (time.perf_counter() - t1)}
        nav.close()
        S = frames[0].shape[1]
        frames.append(grid({"GT (PPO agent)": _upscale(ngt, S), "agent's view (dream)": _upscale(ndream, S),
                            "GT depth": _upscale(colorize_depth(ndepth, max_depth=8.0), S)}))
        print(f"PPO agent (trained on GT frames) in DreamPointNav: {ppo['ppo_steps']} steps, "
              f"{'reached the goal' if ppo['ppo_success'] else 'goal not reached'}")
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
              **{f"ssim_h{h}": float(d_ssim[h - 1]) for h in hs}, **ppo}
    print("fidelity on this episode (dream vs GT at the same pose; hold = anchor frame repeated):")
    for h in hs:
        print(f"  h={h:<3} dream {float(d_psnr[h - 1]):5.2f} dB (SSIM {float(d_ssim[h - 1]):.3f})   "
              f"hold {float(h_psnr[h - 1]):5.2f} dB")
    print(f"  mean over {steps} steps: dream {float(d_psnr.mean()):.2f} dB, hold {float(h_psnr.mean()):.2f} dB")
    print(f"{steps} dream steps in {elapsed:.1f} s ({steps / elapsed:.1f} steps/s on {torch.get_num_threads()} "
          f"threads, GT renderer for pairing included; models loaded in {load_s:.1f} s)")
    print(f"wrote {video} and {sheet}")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m sana_world.agents.demo [options]``: the same as ``sana-world demo [options]``."""
    from sana_world.cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
