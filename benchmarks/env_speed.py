"""GT environment throughput: steps/s of one env on one CPU core (the process is pinned to one core), and
of the batched vector env on a GPU.

    python benchmarks/env_speed.py            # CPU rows (+ CUDA rows when a GPU is present)
    python benchmarks/env_speed.py --quick    # fewer steps

Writes ``results/env_speed_<hardware>_<YYYYMMDD>.json`` (beside this script) and prints a table. Each row
steps a random-twist agent after a short warm-up; the GPU rows time ``GTVectorEnv`` with
``return_torch=True`` (frames stay on the device, as a GPU training loop would use them).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, write_result  # noqa: E402


def bench_single(renderer: str, layout: str, size: int, shadows: bool, steps: int) -> dict:
    import gymnasium as gym

    import sana_world  # noqa: F401
    from sana_world.worlds import WorldConfig

    env = gym.make("SanaWorld/Rooms-v0", width=size, height=size, renderer=renderer, shadows=shadows,
                   world=WorldConfig(layout=layout), max_episode_steps=10**9)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps + 10, 6)).astype(np.float32)
    actions[:, 0] = np.abs(actions[:, 0])
    for a in actions[:10]:  # 1. warm-up
        env.step(a)
    t0 = time.perf_counter()
    for a in actions[10:]:  # 2. timed steps
        env.step(a)
    dt = time.perf_counter() - t0
    env.close()
    return {"kind": "single", "device": "cpu", "cores": len(os.sched_getaffinity(0)), "renderer": renderer,
            "layout": layout, "size": size, "shadows": shadows, "num_envs": 1, "steps_per_s": steps / dt}


def bench_vector(device: str, num_envs: int, size: int, shadows: bool, steps: int, compile: bool = False) -> dict:
    from sana_world.envs.vector import GTVectorEnv

    envs = GTVectorEnv(num_envs=num_envs, width=size, height=size, shadows=shadows, device=device,
                       return_torch=True, compile_renderer=compile)
    envs.reset(seed=0)
    g = torch.Generator(device=device).manual_seed(0)
    act = lambda: torch.rand(num_envs, 6, device=device, generator=g) * 2 - 1  # noqa: E731
    for _ in range(3):  # 1. warm-up
        envs.step(act())
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):  # 2. timed batched steps
        envs.step(act())
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"kind": "vector", "device": device, "renderer": "torch+compile" if compile else "torch", "layout": "any",
            "size": size,
            "shadows": shadows, "num_envs": num_envs, "steps_per_s": num_envs * steps / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer steps per row")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="results folder")
    p.add_argument("--no-cpu", action="store_true",
                   help="skip the single-env CPU rows (refused on a machine without CUDA: no rows to write)")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024], help="GPU vector env sizes")
    p.add_argument("--compile", action="store_true", help="GPU rows: torch.compile the ray caster")
    p.add_argument("--shadows", choices=("both", "on", "off"), default="both", help="GPU rows: shadow settings")
    args = p.parse_args()
    if args.no_cpu:
        check_device(p, "cuda", "--no-cpu (the GPU rows only)")
    torch.set_num_threads(1)
    rows = []
    steps = 30 if args.quick else 100
    if not args.no_cpu:
        # one env on ONE core: pin the process (open3d's Embree would otherwise use every core)
        all_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cpus)})
        for renderer in ("torch", "open3d"):  # 1. one env on one core
            for layout in ("single", "multi"):
                for shadows in (True, False):
                    try:
                        rows.append(bench_single(renderer, layout, 128, shadows, steps))
                    except ImportError as e:
                        rows.append({"kind": "single", "renderer": renderer, "error": str(e)})
                    print(rows[-1], flush=True)
        os.sched_setaffinity(0, all_cpus)
    if torch.cuda.is_available():  # 2. the batched env on the GPU
        shadow_opts = {"both": (True, False), "on": (True,), "off": (False,)}[args.shadows]
        for n in args.batches:
            for shadows in shadow_opts:
                rows.append(bench_vector("cuda", n, 128, shadows, 10 if args.quick else 30, args.compile))
                print(rows[-1], flush=True)
    result = {"benchmark": "env_speed", "date": date.today().isoformat(), "hardware": hardware(),
              "platform": platform.platform(), "torch": torch.__version__, "rows": rows}
    path = write_result(args.out, "env_speed", hardware(), result, quiet=True)
    print(f"\n{'kind':7} {'device':6} {'renderer':8} {'layout':7} {'shadows':7} {'envs':>5} {'steps/s':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:7} {'':6} {r['renderer']:8} unavailable: {r['error'][:60]}")
            continue
        print(f"{r['kind']:7} {r['device']:6} {r['renderer']:8} {r['layout']:7} {str(r['shadows']):7} "
              f"{r['num_envs']:>5} {r['steps_per_s']:>10.1f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
