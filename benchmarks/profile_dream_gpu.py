"""Where a batched dream step goes on a GPU: ms per part at each batch size, and the top CUDA kernels.

Parts of ``Dreamer.step`` on a live batched state (shipped ``rooms-128`` model), each timed alone (median
of CUDA-event times after warm-up, ``linear_attention.timed``): ``camera inputs``, ``model pass``
(the fused one-frame pass, ``denoise_and_append``, at context sigma 1; else the two-frame
``advance_and_denoise``), ``decode`` (the
autoencoder), and the whole ``Dreamer.step``. Then
``torch.profiler`` over a few whole steps at the largest batch: the kernels by total CUDA time.

    python benchmarks/profile_dream_gpu.py --batches 256 1024 --precision bf16
    python benchmarks/profile_dream_gpu.py --batches 512 --precision bf16 --compile   # DreamerConfig.compile
"""

from __future__ import annotations

import argparse
from datetime import date
from collections.abc import Callable
from pathlib import Path

import torch

from sana_world.envs.dream_core import load_models
from sana_world.generators.dreamer import Dreamer, DreamerConfig

from linear_attention import hardware, timed  # noqa: E402  (benchmarks/ is the script's folder)
from results_io import check_device, write_result  # noqa: E402


def parts(dreamer: Dreamer, batch: int, iters: int) -> tuple[dict[str, float], tuple]:
    """ms per part of one step at ``batch`` streams (random anchors, a camera moving forward), and the live
    (state, c2w, generator) for profiling."""
    dev, S = dreamer.device, dreamer.models.resolution
    K = torch.tensor([[S / 2, 0, S / 2], [0, S / 2, S / 2], [0, 0, 1.0]], device=dev)
    rgb = torch.randint(0, 255, (batch, S, S, 3), dtype=torch.uint8, device=dev)
    c2w = torch.eye(4, device=dev).expand(batch, 4, 4).clone()
    gen = torch.Generator(dev).manual_seed(0)
    state = dreamer.start(rgb, c2w.clone(), K, ["a room"] * batch)  # the anchor keeps its own pose
    for _ in range(14):  # 1. past the sink + window frames: the steady state (compiled: every layout seen)
        c2w[:, 2, 3] += 0.05
        _, state = dreamer.step(state, c2w, gen)
    p, engine, f = state.pending, dreamer.engine, dreamer.codec.downsample_factor
    C, h, w = state.last.shape[1:]
    noise = torch.randn(batch, C, 1, h, w, device=dev, dtype=dreamer.dtype)
    cam = dreamer._camera(state.c2w0, c2w, state.K, (h * f, w * f), (h, w))

    def inference(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), dreamer._autocast():
                return fn()
        return run

    if dreamer.config.fused:  # the step's one pass: the frame sampled and appended as its noise
        model_pass = inference(lambda: engine.denoise_and_append(state.committed, noise, state.text, cam))
    else:  # the pending frame appended with the new frame's sampler pass
        model_pass = inference(lambda: engine.advance_and_denoise(
            state.committed, p.latents, noise, state.text, p.camera, cam, context_timesteps=p.timesteps))
    rows = {
        "camera inputs": lambda: dreamer._camera(state.c2w0, c2w, state.K, (h * f, w * f), (h, w)),  # fp32
        "model pass": model_pass,
        "decode": inference(lambda: dreamer._decode(state.last, as_uint8=True)),  # compiled with the config
        "Dreamer.step": lambda: dreamer.step(state, c2w, gen),
    }
    return {name: timed(fn, 2, iters, cuda=True)[0] for name, fn in rows.items()}, (state, c2w, gen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--precision", nargs="+", default=["bf16"], choices=["fp32", "bf16"])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--top", type=int, default=30, help="rows of the kernel table")
    p.add_argument("--compile", action="store_true", help="DreamerConfig.compile (blocks and decode compiled)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--suffix", default="", help="appended to the result file's name")
    p.add_argument("--cudnn-benchmark", nargs="+", default=["off"], choices=["off", "on"],
                   help="torch.backends.cudnn.benchmark per row (on: cuDNN times its kernels per shape and keeps "
                        "the fastest); several values: one row each, same process")
    a = p.parse_args()
    dev = check_device(p, "cuda", "this profile")
    models = load_models("rooms-128", dev)
    result = {"benchmark": "profile_dream_gpu", "date": f"{date.today():%Y%m%d}", "hardware": hardware(),
              "torch": torch.__version__, "model": "rooms-128", "compile": a.compile, "rows": []}
    print(f"{'precision':<9} {'cudnn':>5} {'batch':>6} " + " ".join(f"{k:>16}" for k in
                                                      ("camera inputs", "model pass", "decode",
                                                       "Dreamer.step")) + "   steps/s")
    last = None
    settings = [(prec, bench) for prec in a.precision for bench in a.cudnn_benchmark]
    for prec, bench in settings:  # 1. parts per precision, cuDNN setting and batch
        torch.backends.cudnn.benchmark = bench == "on"
        dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults, bf16=prec == "bf16",
                                                         compile=a.compile))
        for batch in a.batches:
            row = {"precision": prec, "cudnn_benchmark": bench == "on", "batch": batch}
            try:
                ms, last = parts(dreamer, batch, a.iters)
            except torch.OutOfMemoryError:  # a measured limit: recorded, the kernel table uses the last fit
                print(f"{prec:<9} {bench:>5} {batch:>6}   out of GPU memory", flush=True)
                result["rows"].append({**row, "out_of_memory": True})
                torch.cuda.empty_cache()
                continue
            rate = batch * 1e3 / ms["Dreamer.step"]
            print(f"{prec:<9} {bench:>5} {batch:>6} " + " ".join(f"{v:>16.2f}" for v in ms.values())
                  + f"   {rate:,.0f}", flush=True)
            result["rows"].append({**row, "ms": ms, "steps_per_s": rate})
    # 2. the kernels of a few whole steps at the last setting
    from torch.profiler import ProfilerActivity, profile

    if last is None:
        raise SystemExit("no batch size fit in GPU memory: nothing to profile")
    state, c2w, gen = last
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            dreamer.step(state, c2w, gen)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=a.top)
    print(table)
    result["kernel_table"] = table
    write_result(a.out, "profile_dream_gpu", result["hardware"], result,
                 ("_compiled" if a.compile else "") + a.suffix)


if __name__ == "__main__":
    main()
