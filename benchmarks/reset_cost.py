"""What an autoreset of k envs costs a GT world of N envs (the torch renderer's tables and the collision
tables), the way it was (every scene packed and every SDF built again) against now (only the k new scenes:
``repack_slots`` and kept SDFs), same scenes, same run. Then the frame an autoreset needs: the whole batch
rendered again (the way it was) against only the k restarted envs rendered onto the last frames
(``GTWorld.render(slots, onto=...)``), at the default 128x128, same world, same run.

    python benchmarks/reset_cost.py --envs 256 1024 --resets 1 8
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import best_ms, check_device, hardware, write_result  # noqa: E402

from sana_world.envs.world import GTConfig, GTWorld  # noqa: E402
from sana_world.render.torch_packing import pack_scenes, repack_slots  # noqa: E402
from sana_world.worlds import WorldConfig, sample_scene  # noqa: E402
from sana_world.worlds.collision import PackedSDF, SceneSDF  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--envs", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--resets", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    dev = check_device(p, a.device)
    world = WorldConfig(layout="multi")
    pool = [sample_scene(s, world) for s in range(max(a.envs) + 64)]
    rows, render_rows = [], []
    for n in a.envs:
        specs = pool[:n]
        packed, sdfs = pack_scenes(specs, dev), [SceneSDF(s) for s in specs]
        for k in a.resets:
            new = [c for c in pool[n:] if repack_slots(packed, [0], [c]) is not None][:k]  # scenes that fit
            slots = list(range(0, n, max(1, n // k)))[:len(new)]
            after = list(specs)
            for i, c in zip(slots, new):
                after[i] = c

            def before() -> None:
                PackedSDF(after, dev)
                pack_scenes(after, dev)

            def now() -> None:
                kept = list(sdfs)
                for i in slots:
                    kept[i] = SceneSDF(after[i])
                PackedSDF(after, dev, kept)
                repack_slots(packed, slots, [after[i] for i in slots])

            row = {"num_envs": n, "resets": len(slots), "before_ms": best_ms(before, a.repeats),
                   "now_ms": best_ms(now, a.repeats)}
            rows.append(row)
            print(f"N={n:5d} k={len(slots):3d}  before {row['before_ms']:8.1f} ms   now {row['now_ms']:7.1f} ms")
    for n in a.envs:  # 2. the autoreset's frame: all N rendered again, or only the k restarted envs
        gt = GTWorld(GTConfig(device=str(dev), renderer="torch", world=world), n)
        gt.reset_slots(list(range(n)), [np.random.default_rng(s) for s in range(n)])
        last = gt.render()
        for k in a.resets:
            slots = list(range(0, n, max(1, n // k)))[:k]
            row = {"num_envs": n, "resets": len(slots), "full_render_ms": best_ms(gt.render, a.repeats),
                   "partial_render_ms": best_ms(lambda: gt.render(slots, onto=last), a.repeats)}
            render_rows.append(row)
            print(f"N={n:5d} k={len(slots):3d}  render all {row['full_render_ms']:8.1f} ms   "
                  f"only the restarted {row['partial_render_ms']:7.1f} ms")
    write_result(a.out, "reset_cost", hardware(dev), {
        "benchmark": "reset_cost", "date": str(date.today()), "hardware": hardware(dev),
        "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "rows": rows, "render_rows": render_rows})


if __name__ == "__main__":
    main()
