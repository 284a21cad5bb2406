"""Where one Dream env step goes on the CPU: ms per part (median and min over repeats) and the top torch ops.

Parts, all on the live state of a ``SanaWorld/DreamRooms-v0`` env (shipped ``rooms-128`` model, fp32):

- ``env.step``: the whole gym step (dynamics, GT render, dream step, reward, observation);
- ``Dreamer.step``: the dream step alone (camera inputs, model passes, decode);
- its pieces, timed one by one: ``camera inputs``; ``denoise pass`` and ``advance pass`` (one latent frame
  each: sample the new frame from the state, append a frame to the state); ``advance+denoise`` (both in
  one two-frame pass, what a step runs with ``DreamerConfig.defer_append``); ``decode``;
- ``GT render``: the GT frame of the same pose (rewards need its depth).

    python benchmarks/profile_dream_cpu.py --threads 2
    python benchmarks/profile_dream_cpu.py --threads 2 --repeats 40 --top 30 --no-profile
    python benchmarks/profile_dream_cpu.py --env-kwargs sampler_steps=4
"""

from __future__ import annotations

import argparse
import ast
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

import sana_world  # noqa: F401  (registers the env ids)


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2,
            clock: str = "wall") -> tuple[float, float]:
    """(median, min) ms of ``fn()`` over ``repeats`` calls after ``warmup`` calls: wall clock, or the CPU time
    of the process ("cpu": steadier on a shared box, but it counts the time OpenMP threads spin too)."""
    now = time.perf_counter if clock == "wall" else time.process_time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = now()
        fn()
        times.append((now() - t) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=12, help="env steps before timing")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall clock or process CPU time")
    p.add_argument("--top", type=int, default=25, help="rows of the torch.profiler table")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler table")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V",
                   help="extra gym.make options (e.g. sampler_steps=4), values parsed as Python literals")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    kwargs = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in a.env_kwargs)}
    env = gym.make("SanaWorld/DreamRooms-v0", **kwargs)
    core = env.unwrapped.core
    dreamer = core.dreamer
    env.reset(seed=a.seed)
    env.action_space.seed(a.seed)
    rng = np.random.default_rng(a.seed)
    for _ in range(a.warmup):  # 1. warm-up: a stream past its first sink + window frames (steady state)
        env.step(env.action_space.sample())

    # 2. The parts, each on the current state (states are never modified in place, so repeats are equal).
    state = core.groups[0][1]
    pending = getattr(state, "pending", None)  # a frame left for the next step's pass (defer_append)
    base = state.stream if pending is None else state.committed  # without it
    c2w = core.world.c2w32()
    C, h, w = state.last.shape[1:]
    f = dreamer.codec.downsample_factor
    gen = torch.Generator().manual_seed(a.seed)
    noise = torch.randn(1, C, 1, h, w, generator=gen)
    engine, text = dreamer.engine, state.text
    with torch.inference_mode():
        cam = dreamer._camera(state.c2w0, c2w, state.K, (h * f, w * f), (h, w))
        z = engine.denoise_chunk(base, noise, text, cam)
    s = dreamer.config.context_sigma
    t_ctx = torch.full((1, 1), 1000.0 * s) if s > 0 else None
    acts = iter([rng.uniform(-1, 1, 6).astype(np.float32) for _ in range(a.repeats + 2)])

    def inference(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():  # as the Dreamer runs
                return fn()
        return run

    parts: list[tuple[str, Callable[[], object]]] = [
        ("env.step", lambda: env.step(next(acts))),
        ("Dreamer.step", lambda: dreamer.step(state, c2w, gen)),
        ("  camera inputs", inference(lambda: dreamer._camera(state.c2w0, c2w, state.K, (h * f, w * f),
                                                             (h, w)))),
        ("  denoise pass", inference(lambda: engine.denoise_chunk(base, noise, text, cam))),
        ("  advance pass", inference(lambda: engine.advance(base, z, text, cam, timesteps=t_ctx))),
    ]
    if hasattr(engine, "advance_and_denoise"):
        parts.append(("  advance+denoise", inference(lambda: engine.advance_and_denoise(
            base, z, noise, text, cam, cam, context_timesteps=t_ctx))))
    parts += [
        ("  decode", inference(lambda: dreamer.codec.decode(z[:, :, 0], as_uint8=True))),
        ("GT render", lambda: core.world.render()),
    ]
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, model {core.config.model}, "
          f"context_sigma {s}, sampler steps {dreamer.config.num_steps}")
    print(f"{'part':<18} {'median ms':>10} {'min ms':>8}   ({a.clock} clock)")
    rows = {}
    for name, fn in parts:
        med, lo = time_ms(fn, a.repeats, clock=a.clock)
        rows[name] = med
        print(f"{name:<18} {med:>10.2f} {lo:>8.2f}", flush=True)
    print(f"=> env {1e3 / rows['env.step']:.2f} steps/s, dream {1e3 / rows['Dreamer.step']:.2f} steps/s")

    # 3. The top ops of Dreamer.step.
    if a.no_profile:
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(5):
            dreamer.step(state, c2w, gen)
    print("\ntorch.profiler, 5 x Dreamer.step (self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))


if __name__ == "__main__":
    main()
