"""Dream steps/s when the envs of a batch reset at different times (a vector env's autoresets): every step
restarts k = B / L streams (episodes of L steps, resets spread evenly), so the streams sit at different frames.

Two ways, the same run, the same model and precision:
- ``ragged``: what the Dream envs do now. All B streams stay one batch (``Dreamer.restart`` begins the k
  rows anew, their anchors pending), and one pass steps them all, each row at its own frame.
- ``grouped``: what they did before (one batched pass per group of streams at one frame index; a group
  merges only with a group at the same index, so after L steps there are L groups of k). Timed as L steps
  of one k-stream group at a full window (a pass costs the same at any frame index once the window is
  full) plus the start of the k new streams.
``L = 0`` is the no-reset baseline: one pass over B streams at one frame index, both ways.

    python benchmarks/dream_resets.py --device cuda --batch 512 --episodes 0 128 32 --precision bf16
    python benchmarks/dream_resets.py --batch 8 --episodes 0 8 4          # 2 CPU cores
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from linear_attention import timed  # noqa: E402
from results_io import check_device, hardware, write_result  # noqa: E402

from sana_world.generators import zoo  # noqa: E402
from sana_world.generators.dreamer import Dreamer, DreamerConfig  # noqa: E402

def setup(d: Dreamer, n: int, gen: torch.Generator):
    """n streams past the window fill (every layout seen once), their poses, anchors and captions."""
    S, dev = d.models.resolution, d.device
    rgb = torch.randint(0, 256, (n, S, S, 3), dtype=torch.uint8, generator=gen).to(dev)
    c2w = torch.eye(4, device=dev).expand(n, 4, 4).clone()
    Kt = torch.tensor([[S / 2, 0, S / 2], [0, S / 2, S / 2], [0, 0, 1.0]], device=dev)  # 90° field of view
    state = d.start(rgb, c2w.clone(), Kt, ["a room"] * n)
    g = torch.Generator(dev).manual_seed(0)
    for _ in range(d.config.sink_frames + d.config.window_frames + 2):  # 1. fill the window
        c2w[:, 2, 3] += 0.05
        _, state = d.step(state, c2w, g)
    return {"state": state, "c2w": c2w, "rgb": rgb, "K": Kt, "gen": g, "next": 0}


def ragged_step(d: Dreamer, box: dict, k: int) -> Callable[[], None]:
    """Restart the next k rows (a rolling window over the batch), then one pass over every stream."""
    B = box["state"].batch_size

    def run() -> None:
        if k:
            rows = [(box["next"] + i) % B for i in range(k)]
            box["next"] = (box["next"] + k) % B
            box["state"] = d.restart(box["state"], rows, box["rgb"][rows], box["c2w"][rows], box["K"],
                                     ["a room"] * k)  # fmt: skip
        box["c2w"][:, 2, 3] += 0.05
        _, box["state"] = d.step(box["state"], box["c2w"], box["gen"])

    return run


def grouped_step(d: Dreamer, group: dict, fresh: dict, groups: int) -> Callable[[], None]:
    """``groups`` passes of one k-stream group, then the start of k new streams."""
    def run() -> None:
        for _ in range(groups):
            group["c2w"][:, 2, 3] += 0.05
            _, group["state"] = d.step(group["state"], group["c2w"], group["gen"])
        d.start(fresh["rgb"], fresh["c2w"], fresh["K"], ["a room"] * fresh["rgb"].shape[0])

    return run


VARIANTS = {"eager": (False, None), "eager, fp32 windows": (False, torch.float32), "compiled": (True, None),
            "compiled, fp32 windows": (True, torch.float32)}  # label -> (compiled, window dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--episodes", type=int, nargs="+", default=[0, 8, 4], help="episode lengths L (0: no resets)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="DreamerConfig.compile for the ragged rows too")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="which Dreamers to time (the fp32-window ones need --precision bf16, compiled --compile)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--note", default="", help="free text kept in the results file (e.g. which code ran)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    cuda = check_device(p, a.device).type == "cuda"
    variants = [(v, *VARIANTS[v]) for v in a.variants  # bf16 KV windows against fp32 ones: no resets
                if (a.compile or not VARIANTS[v][0]) and (a.precision == "bf16" or VARIANTS[v][1] is None)]
    if not variants:
        p.error(f"--variants {' / '.join(a.variants)}: none runs here (compiled ones need --compile, "
                "fp32-window ones --precision bf16)")
    if not cuda:
        torch.set_num_threads(a.threads)
    models = zoo.load("rooms-128", device=a.device)
    entry = models.entry
    gen = torch.Generator().manual_seed(0)
    hw = hardware(a.device)
    rows = []
    for label, compiled, window in variants:
        d = Dreamer(models, DreamerConfig.from_zoo(entry.dream_defaults, bf16=a.precision == "bf16",
                                                   compile=compiled))  # fmt: skip
        d.window_dtype = window or d.window_dtype
        box = setup(d, a.batch, gen)
        for L in a.episodes if window is None else [0]:  # 1. one row per episode length, both ways
            k = 0 if L == 0 else max(1, a.batch // L)
            groups = 1 if L == 0 else a.batch // k
            ms_r = timed(ragged_step(d, box, k), 2, a.iters, cuda)[0]
            row = {"variant": label, "window_dtype": str(d.window_dtype).removeprefix("torch."),
                   "episode_steps": L, "resets_per_step": k, "batch": a.batch,
                   "ragged_ms": ms_r, "ragged_steps_per_s": a.batch / ms_r * 1e3}
            # the grouped way at k streams a pass: eager only (compiling each group size is a cost of its own)
            if not compiled and window is None:
                if L == 0:
                    ms_g = ms_r
                else:
                    group, fresh = setup(d, k, gen), setup(d, k, gen)
                    ms_g = timed(grouped_step(d, group, fresh, groups), 1, max(2, a.iters // 2), cuda)[0]
                row.update(grouped_ms=ms_g, grouped_steps_per_s=a.batch / ms_g * 1e3, groups=groups)
            rows.append(row)
            g = row.get("grouped_steps_per_s")
            print(f"{label:22s} L={L:4d} k={k:4d}  ragged {row['ragged_steps_per_s']:9,.1f} steps/s"
                  + ("" if g is None else f"   grouped ({groups} passes) {g:9,.1f} steps/s"), flush=True)
            result = {"benchmark": "dream_resets", "date": date.today().isoformat(), "hardware": hw,
                      "platform": platform.platform(), "torch": torch.__version__, "device": a.device,
                      "precision": a.precision, "threads": torch.get_num_threads() if not cuda else None,
                      "model": "rooms-128", "dream_defaults": entry.dream_defaults, "note": a.note, "rows": rows}
            path = write_result(a.out, "dream_resets", hw, result, f"_b{a.batch}_{a.precision}", quiet=True)
    print("wrote", path)


if __name__ == "__main__":
    main()
