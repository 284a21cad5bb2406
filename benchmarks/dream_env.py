"""Dream env speed: steps/s of the Dream vector env and of its dream step alone, by batch and sampler steps.

Two rows per setting, measured in the same run:
- ``env``: ``DreamVectorEnv`` (SanaWorld/DreamRooms-v0) end to end: GT world (dynamics, collisions, the
  GT render the reward needs), the world-model step and the decode.
- ``dream``: ``Dreamer.step`` alone (world-model passes + decode), the part a faster GT renderer cannot
  remove.

    python benchmarks/dream_env.py --device cpu --batches 1 --threads 2
    python benchmarks/dream_env.py --device cuda --batches 1 16 64 256 1024
    python benchmarks/dream_env.py --device cuda --batches 512 --context-sigma 0.65 1.0   # one row each

``--context-sigma 1.0`` is the fused step (one model pass over one frame; ``DreamerConfig.context_sigma``);
None, the default, runs the model's own zoo default.
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

from sana_world.envs.dream import DreamVectorEnv

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, write_result  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_env(batch: int, steps: int, dev: torch.device, iters: int, renderer: str, bf16: bool = False,
             compile: bool = False, warmup: int = 2, model: str = "rooms-128",
             context_sigma: float | None = None, fp8: bool = False) -> float:
    """Dream vector env steps/s (GT render for rewards included); ``compile``: the dream
    (``DreamerConfig.compile``) and, on CUDA, the GT ray caster (``compile_renderer``) compiled."""
    extra = {"compile_renderer": True} if compile and dev.type == "cuda" else {}
    env = DreamVectorEnv(num_envs=batch, device=str(dev), sampler_steps=steps, renderer=renderer,
                         return_torch=True, bf16=bf16, fp8=fp8, compile=compile, model=model,
                         context_sigma=context_sigma, **extra)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = [rng.uniform(-1, 1, (batch, 6)).astype(np.float32) for _ in range(iters + warmup)]
    for a in acts[:warmup]:  # 1. warm-up (compiled: every pass layout until the window is full)
        env.step(a)
    sync(dev)
    t = time.perf_counter()
    for a in acts[warmup:]:  # 2. timed steps
        env.step(a)
    sync(dev)
    return batch * iters / (time.perf_counter() - t)


def time_dream(batch: int, steps: int, dev: torch.device, iters: int, bf16: bool = False,
               compile: bool = False, warmup: int = 2, model: str = "rooms-128",
               context_sigma: float | None = None, fp8: bool = False) -> float:
    from sana_world.generators.dreamer import Dreamer, DreamerConfig
    from sana_world.envs.dream_core import load_models

    models = load_models(model, dev)
    sigma = {} if context_sigma is None else {"context_sigma": context_sigma}
    dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults, num_steps=steps, bf16=bf16,
                                                     fp8=fp8, compile=compile, **sigma))
    S = models.resolution
    K = torch.tensor([[S / 2, 0, S / 2], [0, S / 2, S / 2], [0, 0, 1.0]], device=dev)
    rgb = torch.randint(0, 255, (batch, S, S, 3), dtype=torch.uint8, device=dev)
    c2w = torch.eye(4, device=dev).expand(batch, 4, 4).clone()
    state = dreamer.start(rgb, c2w, K, ["a room"] * batch)
    gen = torch.Generator(dev).manual_seed(0)
    for _ in range(warmup):  # 1. warm-up (compiled: every pass layout, until the window is full)
        c2w[:, 2, 3] += 0.05
        _, state = dreamer.step(state, c2w, gen)
    sync(dev)
    t = time.perf_counter()
    for _ in range(iters):  # 2. timed steps
        c2w[:, 2, 3] += 0.05
        _, state = dreamer.step(state, c2w, gen)
    sync(dev)
    return batch * iters / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="sampler steps per frame")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--env-max-batch", type=int, default=256, help="skip env rows above this batch (GT render)")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp8", "bf16+fp8"],
                   help="bf16: the models under bf16 autocast; fp8: the world model's wide layers in FP8 "
                   "(DreamerConfig.fp8: the kernel on Ada / Hopper, an emulation on the CPU)")
    p.add_argument("--compile", nargs="+", default=["eager"], choices=["eager", "compiled"],
                   help="compiled: DreamerConfig.compile (torch.compile of the blocks and the decode) and, in env "
                   "rows on CUDA, the compiled GT ray caster")
    p.add_argument("--warmup", type=int, default=2, help="dream steps before timing (12+ with compiled rows: "
                   "the window fills after 11 frames, and each layout before that compiles once)")
    p.add_argument("--rows", nargs="+", default=["dream", "env"], choices=["dream", "env"],
                   help="which rows to time (env rows only up to --env-max-batch)")
    p.add_argument("--model", default="rooms-128", help="zoo entry name or folder")
    p.add_argument("--context-sigma", type=float, nargs="+", default=[None],
                   help="dream context sigmas, a row each (default: the entry's own)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    dev = check_device(p, a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    hw = (torch.cuda.get_device_name(dev).lower().replace(" ", "-") if dev.type == "cuda"
          else f"cpu{torch.get_num_threads()}")
    renderer = "torch" if dev.type == "cuda" else "auto"
    rows = []
    print(f"{'kind':<6} {'prec':>5} {'batch':>6} {'steps':>5} {'sigma':>5} {'steps/s':>10}")
    for prec in a.precision:
        bf16, fp8 = "bf16" in prec, "fp8" in prec
        for steps in a.steps:
            for b in a.batches:
                for sig in a.context_sigma:  # 1. the rows of one setting, context sigmas side by side
                    opts = dict(model=a.model, context_sigma=sig, fp8=fp8)
                    kinds = [(f"dream-{mode}" if mode == "compiled" else "dream",
                              lambda c=mode == "compiled", o=opts: time_dream(b, steps, dev, a.iters, bf16, c,
                                                                               a.warmup, **o))
                             for mode in a.compile] if "dream" in a.rows else []
                    if "env" in a.rows and b <= a.env_max_batch:
                        kinds += [(f"env-{mode}" if mode == "compiled" else "env",
                                   lambda c=mode == "compiled", o=opts: time_env(b, steps, dev, a.iters, renderer,
                                                                                 bf16, c, a.warmup if c else 2, **o))
                                  for mode in a.compile]  # fmt: skip
                    for kind, fn in kinds:  # 2. one row each
                        row = {"kind": kind, "precision": prec, "batch": b, "sampler_steps": steps,
                               "context_sigma": sig}
                        try:
                            row["steps_per_s"] = fn()
                        except torch.OutOfMemoryError:  # a measured limit: recorded as such
                            row["out_of_memory"] = True
                            torch.cuda.empty_cache()
                        rows.append(row)
                        rate = f"{row['steps_per_s']:>10.1f}" if "steps_per_s" in row else f"{'OOM':>10}"
                        print(f"{kind:<6} {prec:>5} {b:>6} {steps:>5} {sig!s:>5} {rate}", flush=True)
                        write(a, hw, dev, rows)  # after every row: a run stopped at its time limit keeps them


def write(a: argparse.Namespace, hw: str, dev: torch.device, rows: list[dict]) -> None:
    res = {"benchmark": "dream_env", "date": date.today().isoformat(), "hardware": hw, "device": str(dev),
           "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model": a.model, "iters": a.iters, "warmup": a.warmup, "rows": rows}
    write_result(a.out, "dream_env", hw, res, quiet=True)


if __name__ == "__main__":
    main()
