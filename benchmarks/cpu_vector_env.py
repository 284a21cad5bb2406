"""The GT vector env on the CPU (open3d renderer): env steps/s with the renderer's scene cache as it was (4
RaycastingScenes, so a batch of more than 4 envs rebuilt every scene every frame) against the one it gets
now (twice the batch), interleaved in one run, with N single envs stepped one after another for reference.

    python benchmarks/cpu_vector_env.py --batches 8 32
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import hardware, steps_per_s, write_result  # noqa: E402

import sana_world  # noqa: E402,F401
from sana_world.render.open3d_backend import Open3DConfig, Open3DRenderer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    kw = dict(width=64, height=64, action_mode="nav", max_episode_steps=250)
    rows = []
    for n in a.batches:
        envs = {}
        for name in ("cache 4 (before)", "cache 2N (now)"):
            env = gym.make_vec("SanaWorld/Rooms-v0", num_envs=n, vectorization_mode="vector_entry_point", **kw)
            if name.startswith("cache 4"):
                env.unwrapped.world.renderer = Open3DRenderer(config=Open3DConfig(cache_size=4))
            env.reset(seed=0)
            envs[name] = env
        singles = [gym.make("SanaWorld/Rooms-v0", **kw) for _ in range(n)]
        for i, e in enumerate(singles):
            e.reset(seed=i)
        rng = np.random.default_rng(0)
        best = {name: 0.0 for name in [*envs, "N single envs"]}
        for _ in range(a.repeats):  # 1. interleaved: each way in turn, the best rate of each kept
            for name, env in envs.items():
                best[name] = max(best[name], steps_per_s(lambda: env.step(rng.integers(0, 3, n)), a.steps, n, 2))
            best["N single envs"] = max(best["N single envs"], steps_per_s(
                lambda: [e.step(int(rng.integers(0, 3))) for e in singles], a.steps, n, 2))
        rows.append({"num_envs": n, "env_steps_per_s": best})
        print(n, {k: round(v, 1) for k, v in best.items()})
    write_result(a.out, "cpu_vector_env", hardware("cpu"), {
        "benchmark": "cpu_vector_env", "date": str(date.today()), "hardware": hardware("cpu"),
        "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "env": "SanaWorld/Rooms-v0 64x64, nav actions, open3d renderer", "rows": rows})


if __name__ == "__main__":
    main()
