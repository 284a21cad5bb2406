"""What the GT world costs an unpaired Dream vector env: the whole frame rendered against only the task's view.

An unpaired Dream env's observation is dreamed; the GT world only scores the step. Its task reads a few pixels
(``BatchedTask.view``: explore the hits of every 4th pixel of each row and column, 1/16 of the rays; objectnav
the centre window, 1/4), and ``GTWorld.render_view`` renders only those. This script times, in one run on the
same envs:

- the GT render alone of all N envs: the full frame with shadows (the GT frame), without shadows (session 17's
  unpaired step) and the task's view (now);
- env steps (nav actions, random) of two Dream vector envs, one rendering the whole shadowless frame and
  cutting the task's pixels out of it (session 17), one rendering the view (now), their timed steps
  interleaved so a busy machine slows both alike. Their rewards are compared (equal: the view's pixels are
  the full render's, bit for bit).

    python benchmarks/dream_gt_render.py --device cuda --num-envs 256 1024 --bf16 --tasks explore objectnav
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, steps_per_s, sync, write_result  # noqa: E402

from sana_world.envs.dream import DreamVectorEnv  # noqa: E402
from sana_world.envs.world import GTWorld  # noqa: E402
from sana_world.render.base import RenderOutput  # noqa: E402

FIELDS = ("rgb", "depth", "normal", "ids")


def cut_from_full_frames(world: GTWorld) -> None:
    """Session 17's unpaired step on ``world``: every view is cut out of a whole shadowless frame."""
    def render_view(view):
        full = world.render(rgb=False)
        return RenderOutput(*(view.crop(getattr(full, f)) for f in FIELDS))

    world.render_view = render_view  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64])
    p.add_argument("--tasks", nargs="+", default=["explore", "objectnav"], choices=["explore", "objectnav"])
    p.add_argument("--renderer", default="torch", choices=["torch", "open3d"])
    p.add_argument("--compile", action="store_true", help="compiled dream (and renderer on CUDA)")
    p.add_argument("--steps", type=int, default=10, help="timed steps a variant (after --warmup steps)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    rows = []
    for task in a.tasks:
        for n in a.num_envs:
            kw = dict(num_envs=n, task=task, device=str(dev), renderer=a.renderer, action_mode="nav",
                      max_episode_steps=64, split="train", bf16=a.bf16, compile=a.compile,
                      compile_renderer=a.compile and dev.type == "cuda")
            envs = {"full_frame": DreamVectorEnv(**kw), "view": DreamVectorEnv(**kw)}
            cut_from_full_frames(envs["full_frame"].core.world)
            for env in envs.values():
                env.reset(seed=0)
            # 1. the GT render alone
            world = envs["view"].core.world
            view = world.task.view(world.cfg.height, world.cfg.width)
            render_ms = {label: 1000 / steps_per_s(fn, a.steps, 1, warmup=1) for label, fn in (
                ("full", lambda: world.render(rgb=True)), ("no_shadows", lambda: world.render(rgb=False)),
                ("view", lambda: world.render_view(view)))}
            # 2. env steps, interleaved; the same actions, so the same rewards
            times: dict[str, list[float]] = {k: [] for k in envs}
            rng, same = np.random.default_rng(0), True
            for i in range(a.warmup + a.steps):
                acts = torch.as_tensor(rng.integers(0, 3, n), device=dev)
                rewards = []
                for label, env in envs.items():
                    sync()
                    t0 = time.perf_counter()
                    rewards.append(env.step(acts)[1])
                    sync()
                    if i >= a.warmup:
                        times[label].append(time.perf_counter() - t0)
                same &= bool(np.array_equal(np.asarray(rewards[0]), np.asarray(rewards[1])))
            row = {"task": task, "num_envs": n, "view": list(view.shape), "gt_render_ms": render_ms,
                   "env_steps_per_s": {k: n * len(v) / sum(v) for k, v in times.items()}, "same_rewards": same}
            rows.append(row)
            sps = row["env_steps_per_s"]
            print(f"{task:<9} N={n:5d}  GT render full {render_ms['full']:7.1f} ms, no shadows "
                  f"{render_ms['no_shadows']:7.1f}, view {view.shape} {render_ms['view']:6.1f}   env steps/s "
                  f"full frame {sps['full_frame']:8.1f}, view {sps['view']:8.1f}  same rewards {same}", flush=True)
            envs = world = None  # their GPU memory goes before the next batch size's envs
    write_result(a.out, "dream_gt_render", hardware(dev), {
        "benchmark": "dream_gt_render", "date": str(date.today()), "hardware": hardware(dev),
        "platform": platform.platform(), "torch": torch.__version__, "bf16": a.bf16, "compile": a.compile,
        "renderer": a.renderer, "rows": rows}, a.suffix)


if __name__ == "__main__":
    main()
