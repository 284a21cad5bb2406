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

``--ab K=V ...`` measures two envs in one run, the defaults ("before") and the defaults plus those options
("after", e.g. ``compile=True``), with every timed call alternating between them (so a busy machine slows
both alike); it also steps both along the same actions and reports the largest difference of their
frames, and writes a JSON row per part (``--out``):

    python benchmarks/profile_dream_cpu.py --threads 2 --repeats 20 --ab compile=True \
        --out benchmarks/results/dream_cpu_speed_cpu2_20261127.json
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

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


def parse_kwargs(items: list[str]) -> dict[str, object]:
    """``K=V`` strings -> gym.make keyword arguments, values parsed as Python literals."""
    return {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in items)}


def build_parts(kwargs: dict[str, object], seed: int, warmup: int,
                repeats: int) -> tuple[gym.Env, list[tuple[str, Callable[[], object]]]]:
    """A ``SanaWorld/DreamRooms-v0`` env made with ``kwargs``, reset and stepped ``warmup`` times, and the
    timed parts of its step on its live state (see the module doc)."""
    env = gym.make("SanaWorld/DreamRooms-v0", **kwargs)
    core = env.unwrapped.core
    dreamer = core.dreamer
    env.reset(seed=seed)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    for _ in range(warmup):  # 1. warm-up: a stream past its first sink + window frames (steady state)
        env.step(env.action_space.sample())

    # 2. The parts, each on the current state (states are never modified in place, so repeats are equal).
    state = core.state
    pending = getattr(state, "pending", None)  # a frame left for the next step's pass (defer_append)
    base = state.stream if pending is None else state.committed  # without it
    c2w = core.world.c2w32()
    C, h, w = state.last.shape[1:]
    f = dreamer.codec.downsample_factor
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, C, 1, h, w, generator=gen)
    engine, text = dreamer.engine, state.text
    with torch.inference_mode():
        cam = dreamer._camera(state.c2w0, c2w, state.K, (h * f, w * f), (h, w))
        z = engine.denoise_chunk(base, noise, text, cam)
    s = dreamer.config.context_sigma
    t_ctx = torch.full((1, 1), 1000.0 * s) if s > 0 else None
    acts = iter([rng.uniform(-1, 1, 6).astype(np.float32) for _ in range(repeats + 2)])
    env.unwrapped.frames = []  # the observations of the timed env steps (run_ab compares them)

    def env_step() -> object:
        out = env.step(next(acts))
        env.unwrapped.frames.append(out[0])
        return out

    def inference(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():  # as the Dreamer runs
                return fn()
        return run

    parts: list[tuple[str, Callable[[], object]]] = [
        ("env.step", env_step),
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
        ("  decode", inference(lambda: dreamer._decode(z[:, :, 0], as_uint8=True))),
        ("GT render", lambda: core.world.render(rgb=core.config.paired)),  # as a step renders it
    ]
    return env, parts


def run_ab(a: argparse.Namespace, kwargs: dict[str, object], after: dict[str, object]) -> None:
    """Before (``kwargs``) and after (``kwargs`` + ``after``) envs, every part timed alternately (module doc)."""
    t = time.perf_counter()
    env_b, parts_b = build_parts(kwargs, a.seed, a.warmup, a.repeats)
    setup_b = time.perf_counter() - t
    t = time.perf_counter()
    env_a, parts_a = build_parts({**kwargs, **after}, a.seed, a.warmup, a.repeats)
    setup_a = time.perf_counter() - t  # includes compiling, if ``after`` asks for it
    now = time.perf_counter if a.clock == "wall" else time.process_time
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    # 1. Warm-up calls of every part (the first calls of a new pass layout compile), then the timed rounds.
    for (_, fb), (_, fa) in zip(parts_b, parts_a):
        for _ in range(2):
            fb(), fa()
    for _ in range(a.repeats):
        for (name, fb), (_, fa) in zip(parts_b, parts_a):
            for label, fn in (("before", fb), ("after", fa)):
                t = now()
                fn()
                times[label].setdefault(name.strip(), []).append((now() - t) * 1e3)
    # 2. Both envs took the same actions from the same seed: their frames differ only by the options.
    diffs = [int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())
             for x, y in zip(env_b.unwrapped.frames, env_a.unwrapped.frames)]
    rows = []
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, after = before + {after}")
    print(f"{'part':<18} {'before ms':>10} {'after ms':>10} {'speed-up':>9}   (median, {a.clock} clock)")
    for name in times["before"]:
        b, f = (statistics.median(times[k][name]) for k in ("before", "after"))
        rows.append({"part": name, "before_ms": b, "after_ms": f, "before_min_ms": min(times["before"][name]),
                     "after_min_ms": min(times["after"][name])})
        print(f"{name:<18} {b:>10.2f} {f:>10.2f} {b / f:>8.2f}x")
    sps = {k: 1e3 / statistics.median(times[k]["env.step"]) for k in times}
    print(f"=> env steps/s: before {sps['before']:.2f}, after {sps['after']:.2f}; frames of {len(diffs)} env "
          f"steps differ by at most {max(diffs)} (uint8); setup s: before {setup_b:.1f}, after {setup_a:.1f}")
    if a.out:
        res = {"benchmark": "profile_dream_cpu --ab", "date": date.today().isoformat(),
               "hardware": f"cpu{torch.get_num_threads()}", "platform": platform.platform(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "env": "SanaWorld/DreamRooms-v0",
               "before_options": kwargs, "after_options": {**kwargs, **after}, "repeats": a.repeats,
               "warmup_env_steps": a.warmup, "clock": a.clock, "interleaved": True,
               "env_steps_per_s": sps, "setup_s": {"before": setup_b, "after": setup_a},
               "frames_max_abs_diff_uint8": max(diffs), "frames_compared": len(diffs), "rows": rows}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
        print("wrote", a.out)


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
    p.add_argument("--ab", nargs="*", default=[], metavar="K=V",
                   help="options of the 'after' env (e.g. compile=True): before/after interleaved, no profile")
    p.add_argument("--out", default=None, help="JSON file of the --ab rows (default: print only)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    kwargs = parse_kwargs(a.env_kwargs)
    if a.ab:
        return run_ab(a, kwargs, parse_kwargs(a.ab))
    env, parts = build_parts(kwargs, a.seed, a.warmup, a.repeats)
    core = env.unwrapped.core
    dreamer = core.dreamer
    s = dreamer.config.context_sigma
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

    state, c2w, gen = core.state, core.world.c2w32(), torch.Generator().manual_seed(a.seed)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(5):
            dreamer.step(state, c2w, gen)
    print("\ntorch.profiler, 5 x Dreamer.step (self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))


if __name__ == "__main__":
    main()
