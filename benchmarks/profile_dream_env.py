"""Where a Dream vector env's step goes: ms per part of ``DreamVectorEnv.step``, on any device, device work
included (every part ends with a synchronize, so the parts add up to the step; the sync costs a little overlap).

Parts: ``move`` (the GT world's dynamics and collisions), ``gt render`` (the task's view of an unpaired step, the
frame of a paired one, resets' frames), ``score`` (the task's reward), ``dream`` (``Dreamer.step``: camera
inputs, model pass, decode; with the noise), ``reset`` (autoresets' scenes and streams, less their renders), and ``rest`` (the
step minus the parts: actions, observations, infos, autoreset bookkeeping).

    python benchmarks/profile_dream_env.py --device cuda --batch 1024 --bf16 --compile
    python benchmarks/profile_dream_env.py --device cpu --batch 4
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, sync, write_result  # noqa: E402


class Timer:
    """Synchronized wall times (s) of wrapped calls, each part's own: a call nested in another timed call (a
    reset's render) counts in its own part only."""

    def __init__(self) -> None:
        self.table: dict[str, list[float]] = defaultdict(list)
        self._children: list[float] = []  # time of timed calls inside each open call

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sync()
            self._children.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                total = time.perf_counter() - t0
                self.table[name].append(total - self._children.pop())
                if self._children:
                    self._children[-1] += total

        return wrapper


def instrument(env: Any, timer: Timer) -> None:
    """Wrap the parts of ``env`` (a DreamVectorEnv) in place."""
    core, world = env.core, env.core.world
    world.move = timer.wrap("move", world.move)
    world.render = timer.wrap("gt render", world.render)
    world.render_view = timer.wrap("gt render", world.render_view)
    world.score = timer.wrap("score", world.score)
    core.dreamer.step = timer.wrap("dream", core.dreamer.step)
    core.reset = timer.wrap("reset", core.reset)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--task", default="explore", choices=["explore", "pointnav", "objectnav"])
    p.add_argument("--paired", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true", help="compiled dream (and renderer with --compile-renderer)")
    p.add_argument("--compile-renderer", action="store_true")
    p.add_argument("--episode-steps", type=int, default=64, help="max_episode_steps (autoresets at its end)")
    p.add_argument("--warmup", type=int, default=3, help="steps before timing (14+ with --compile)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    from sana_world.envs.dream import DreamVectorEnv

    env = DreamVectorEnv(num_envs=a.batch, task=a.task, device=str(dev), renderer="torch", action_mode="nav",
                         max_episode_steps=a.episode_steps, split="train", bf16=a.bf16, compile=a.compile,
                         compile_renderer=a.compile_renderer, paired=a.paired, return_torch=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [torch.as_tensor(rng.integers(0, 3, a.batch), device=dev) for _ in range(a.warmup + a.steps)]
    for act in actions[:a.warmup]:  # 1. warm up (compiles, caches)
        env.step(act)
    timer = Timer()
    instrument(env, timer)
    step = timer.wrap("rest", env.step)  # the step's own time: everything but the parts
    sync()
    t0 = time.perf_counter()
    for act in actions[a.warmup:]:  # 2. timed steps
        step(act)
    sync()
    wall = 1000 * (time.perf_counter() - t0) / a.steps
    ms = {k: 1000 * sum(v) / a.steps for k, v in timer.table.items()}  # per step (a part may run 0..n times)
    ms["step"] = sum(ms.values())
    ms["wall"] = wall  # the loop's own clock: the parts' sum, and the timer's little overhead
    for k in ("move", "gt render", "score", "dream", "reset", "rest", "step", "wall"):
        print(f"{k:<10} {ms.get(k, 0.0):9.2f} ms a step")
    rate = a.batch * 1000 / ms["wall"]
    print(f"=> {rate:,.0f} env steps/s at {a.batch} envs")
    write_result(a.out, "profile_dream_env", hardware(dev), {
        "benchmark": "profile_dream_env", "date": str(date.today()), "hardware": hardware(dev),
        "torch": torch.__version__, "args": {k: str(v) for k, v in vars(a).items()}, "ms_per_step": ms,
        "env_steps_per_s": rate}, a.suffix)


if __name__ == "__main__":
    main()
