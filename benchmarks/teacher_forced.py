"""Teacher-forced next-frame quality by absolute frame index: does the world model get worse far into a stream
even when its context is the truth?

On held-out scenes along the explorer's path, GT frames 0..n-1 enter the streaming state (encoded by the
autoencoder, at timestep 0) and the model predicts frame n with its one-step sampler. PSNR of that
prediction against GT frame n is reported for every n, beside "previous frame" (GT frame n-1 as the guess).
A flat curve means frame positions past the training clips are fine and a falling dream (``fidelity.py``)
comes from its own context, not from the positions.

    python benchmarks/teacher_forced.py --scenes 8 --steps 100
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch
from tqdm import tqdm

from fidelity import hardware, render_paths
from results_io import check_device, write_result
from sana_world.envs.world import HELDOUT_START
from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.metrics import psnr

REPORT = (1, 8, 16, 32, 33, 40, 48, 64, 80, 100, 128)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128")
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    dev = check_device(p, args.device)
    t0 = time.perf_counter()
    models = zoo.load(args.model, device=dev)
    S, H = models.resolution, args.steps
    seeds = [HELDOUT_START + i for i in range(args.scenes)]
    plans, c2w, gt, _, K = render_paths(seeds, H, S, dev, args.workers)  # gt (N, H + 1, S, S, 3)
    # context_sigma 0: the step's own append is discarded, and the generator draws only the sampler's noise
    defaults = models.entry.dream_defaults
    dreamer = Dreamer(models, DreamerConfig.from_zoo(defaults, num_steps=1, context_sigma=0.0))
    state = dreamer.start(gt[:, 0], c2w[:, 0], K, [pl.caption for pl in plans])
    gen = torch.Generator(dev).manual_seed(0)
    pred_db, prev_db = [], []
    for n in tqdm(range(1, H + 1), desc="teacher-forced", unit="frame"):
        # 1. predict frame n from GT frames 0..n-1 (the state is not changed by a dream step)
        rgb, _ = dreamer.step(state, c2w[:, n], gen)  # (N, S, S, 3)
        pred_db.append(float(psnr(rgb.cpu(), gt[:, n].cpu()).mean()))
        prev_db.append(float(psnr(gt[:, n - 1].cpu(), gt[:, n].cpu()).mean()))
        # 2. GT frame n enters the state (clean, timestep 0), at its own pose
        state = dreamer.observe(state, gt[:, n], c2w[:, n])
    rows = [{"frame": n, "predicted_db": pred_db[n - 1], "previous_frame_db": prev_db[n - 1]}
            for n in REPORT if n <= H]
    print(f"{'frame':>6} {'predicted':>10} {'previous GT':>12}")
    for r in rows:
        print(f"{r['frame']:>6} {r['predicted_db']:>10.2f} {r['previous_frame_db']:>12.2f}")
    head, tail = pred_db[:16], pred_db[-16:]
    first, last = sum(head) / len(head), sum(tail) / len(tail)
    print(f"mean of frames 1-16: {first:.2f} dB; of the last 16: {last:.2f} dB")
    res = {"benchmark": "teacher_forced", "date": date.today().isoformat(), "hardware": hardware(dev),
           "platform": platform.platform(), "torch": torch.__version__, "model": args.model,
           "scenes": args.scenes, "steps": H, "heldout_seeds": [seeds[0], seeds[-1]],
           "dreamer": {"num_steps": 1, "context": "GT latents at timestep 0"}, "rows": rows,
           "predicted_db": pred_db, "previous_frame_db": prev_db, "mean_first16_db": first,
           "mean_last16_db": last, "seconds": time.perf_counter() - t0}
    write_result(args.out, "teacher_forced", res["hardware"], res)


if __name__ == "__main__":
    main()
