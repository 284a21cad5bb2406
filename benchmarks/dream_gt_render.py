"""What the GT render costs a Dream vector env, and what skipping its shadow rays buys.

A Dream env renders the GT frame of every step: the task scores on its depth and ids, and only a paired env
reads its colours. Unpaired envs now render their steps without shadow rays (``GTWorld.render(rgb=False)``).
This script times, in one run on the same envs:

- the GT render alone of all N envs, with shadows (the way it was) and without;
- the env step (nav actions, random), the way it was (every step's GT rendered in full) against now,
  the two envs' timed steps interleaved so a busy machine slows both alike.

    python benchmarks/dream_gt_render.py --device cuda --num-envs 128 512 --bf16
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
from sana_world.envs.dream_core import DreamCore  # noqa: E402


class FullRenderCore(DreamCore):
    """The way it was: every step's GT frame rendered in full, shadows included, whether paired or not."""

    def step(self, twist: torch.Tensor, keys_mode: bool):
        render = self.world.render
        self.world.render = lambda *a, **k: render(*a, **{**k, "rgb": True})  # type: ignore[method-assign]
        try:
            return super().step(twist, keys_mode)
        finally:
            self.world.render = render  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-envs", type=int, nargs="+", default=[128, 512])
    p.add_argument("--steps", type=int, default=10, help="timed steps a variant (after 3 warm-up steps)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    rows = []
    for n in a.num_envs:
        kw = dict(num_envs=n, device=str(dev), renderer="torch", action_mode="nav", max_episode_steps=64,
                  split="train", bf16=a.bf16)
        now = DreamVectorEnv(**kw)
        was = DreamVectorEnv(**kw)
        was.core.__class__ = FullRenderCore  # the same models and worlds, the old step
        rng = np.random.default_rng(0)
        for env in (now, was):
            env.reset(seed=0)
        # 1. the GT render alone
        render_ms = {}
        for label, rgb in (("full", True), ("no_shadows", False)):
            render_ms[label] = 1000 / steps_per_s(lambda: now.core.world.render(rgb=rgb), a.steps, 1, warmup=1)
        # 2. env steps, interleaved
        times = {"was": [], "now": []}
        for i in range(3 + a.steps):
            acts = torch.as_tensor(rng.integers(0, 3, n), device=dev)
            for label, env in (("was", was), ("now", now)):
                sync()
                t0 = time.perf_counter()
                env.step(acts)
                sync()
                if i >= 3:
                    times[label].append(time.perf_counter() - t0)
        row = {"num_envs": n, "gt_render_ms": render_ms,
               "env_steps_per_s": {k: n * len(v) / sum(v) for k, v in times.items()}}
        rows.append(row)
        print(f"N={n:5d}  GT render full {render_ms['full']:7.1f} ms, no shadows {render_ms['no_shadows']:7.1f} ms"
              f"   env steps/s was {row['env_steps_per_s']['was']:8.1f}, now {row['env_steps_per_s']['now']:8.1f}")
        now = was = None  # their GPU memory goes before the next batch size's envs
    write_result(a.out, "dream_gt_render", hardware(dev), {
        "benchmark": "dream_gt_render", "date": str(date.today()), "hardware": hardware(dev),
        "platform": platform.platform(), "torch": torch.__version__, "bf16": a.bf16, "rows": rows}, a.suffix)


if __name__ == "__main__":
    main()
