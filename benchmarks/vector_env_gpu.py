"""Env steps/s of the native vector envs on one GPU, the GT world included: the Dream vector env (compiled
bf16 dream; the GT render of the pixels the task reads, eager or compiled) and the GT vector env (compiled
renderer, shadowed rgb frames), one row each, every env moving forward and turning.

    python benchmarks/vector_env_gpu.py --batch 1024 --rows dream-eager-render gt-compiled-render

Rows: ``dream-eager-render`` (``compile=True, compile_renderer=False``), ``dream-compiled-render``
(``compile_renderer=True`` too), ``gt-compiled-render`` (``SanaWorld/Rooms-v0``, ``compile_renderer=True``).
A row that fails (a compile error) is recorded with its error and the next one runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, write_result  # noqa: E402

ROWS = {"dream-eager-render": ("SanaWorld/DreamRooms-v0", dict(bf16=True, compile=True, compile_renderer=False)),
        "dream-compiled-render": ("SanaWorld/DreamRooms-v0", dict(bf16=True, compile=True, compile_renderer=True)),
        "gt-compiled-render": ("SanaWorld/Rooms-v0", dict(compile_renderer=True))}


def env_rate(env_id: str, batch: int, warmup: int, iters: int, **opts: object) -> tuple[float, float]:
    """(env steps/s, warm-up seconds) of a ``batch``-env native vector env on CUDA."""
    import gymnasium as gym

    import sana_world  # noqa: F401  (registers the ids)

    env = gym.make_vec(env_id, num_envs=batch, vectorization_mode="vector_entry_point", device="cuda",
                       return_torch=True, **opts)
    env.reset(seed=0)
    action = torch.zeros(batch, 6, device="cuda")
    action[:, 0], action[:, 3] = 0.3, 0.2  # forward and turning
    t0 = time.perf_counter()
    for _ in range(warmup):  # 1. compile every layout the window passes through
        env.step(action)
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t = time.perf_counter()
    for _ in range(iters):  # 2. timed steps
        env.step(action)
    torch.cuda.synchronize()
    rate = batch * iters / (time.perf_counter() - t)
    env.close()
    return rate, warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--warmup", type=int, default=14, help="steps before timing (dream rows: 12+)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    check_device(p, "cuda", "this benchmark")
    hw = torch.cuda.get_device_name().lower().replace(" ", "-")
    result = {"benchmark": "vector_env_gpu", "date": f"{date.today():%Y%m%d}", "hardware": hw,
              "torch": torch.__version__, "batch": a.batch, "rows": []}
    for name in a.rows:  # 1. one vector env per row
        env_id, opts = ROWS[name]
        try:
            rate, warm = env_rate(env_id, a.batch, a.warmup, a.iters, **opts)
        except RuntimeError as e:  # a compile failure (dynamo's errors are RuntimeErrors) is recorded as a result
            error = f"{type(e).__name__}: {e}"
            print(f"{name:<24} failed: {error.splitlines()[0][:200]}", flush=True)
            result["rows"].append({"row": name, "env": env_id, "options": opts, "error": error[:2000]})
            torch.cuda.empty_cache()
            continue
        print(f"{name:<24} {rate:>10,.0f} env steps/s   (warm-up {warm:.0f} s)", flush=True)
        result["rows"].append({"row": name, "env": env_id, "options": opts, "env_steps_per_s": rate,
                               "warmup_s": warm})
    write_result(a.out, "vector_env_gpu", hw, result)


if __name__ == "__main__":
    main()
