"""Where a training step's time goes: the DC-AE autoencoder step and the SANA-WM world-model step.

Times one optimizer step (AdamW, bf16 autocast, as the trainers run it) of the ``rooms-128`` models in
several variants, and lists the top CUDA kernels of the eager step with the torch profiler:

- autoencoder (``f8c16_lite``, ``f8c16``): eager, channels-last, ``torch.compile``;
- world model (``rooms`` preset, 33-frame chunk-causal clips): the per-step AE encode the trainer does,
  the model step eager, and compiled.

    python benchmarks/profile_training.py [--out OUT] [--what ae wm] [--no-compile] [--smoke]

``--smoke``: tiny sizes on the CPU, eager only, a check that the script runs (about 20 s on 2 quiet cores;
with ``torch.compile`` it did not finish in 300 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sana_world.generators.autoencoder import AE_PRESETS, build_autoencoder
from sana_world.generators.train.common import autocast

sys.path.insert(0, str(Path(__file__).parent))
from results_io import hardware, write_result  # noqa: E402


def timed(step: Callable[[], None], iters: int, warmup: int, device: torch.device) -> float:
    """Median ms of ``step`` over ``iters`` runs after ``warmup``."""
    for _ in range(warmup):  # 1. warm up (compile, cudnn autotune)
        step()
    times = []
    for _ in range(iters):  # 2. time each step
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    return sorted(times)[len(times) // 2]


def top_kernels(step: Callable[[], None], device: torch.device, rows: int = 15) -> dict:
    """Kernel count and the top CUDA kernels (self time) of one step."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    table = events.table(sort_by=key, row_limit=rows, max_name_column_width=60)
    return {"kernel_launches": len(kernels), "table": table}


def ae_step_fn(preset: str, batch: int, device: torch.device, variant: str) -> Callable[[], None]:
    ae = build_autoencoder(AE_PRESETS[preset]()).to(device)
    fmt = torch.channels_last if variant in ("channels_last", "compile") else torch.contiguous_format
    ae = ae.to(memory_format=fmt)
    fwd = torch.compile(ae) if variant == "compile" else ae
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-4)
    x = (torch.rand(batch, 3, 128, 128, device=device) * 2 - 1).contiguous(memory_format=fmt)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, device.type == "cuda"):
            err = fwd(x).sample.float() - x
        (err.abs().mean() + err.square().mean()).backward()
        opt.step()

    return step


def wm_step_fn(batch: int, frames: int, device: torch.device, compiled: bool,
               smoke: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """(model step, the AE encode the trainer runs per step) for the rooms world model."""
    from sana_world.generators.train import wm_data
    from sana_world.generators.train.world_model import (WorldModelTrainConfig, chunk_kwargs, graph_loss,
                                                             resolve_model_config)
    from sana_world.generators.train.flow_matching import build_components
    from sana_world.world_model import SanaWM

    zoo = Path(__file__).resolve().parents[1] / "sana_world/zoo/rooms-128/autoencoder"
    cfg = WorldModelTrainConfig.from_flat(model="tiny" if smoke else "rooms", autoencoder=str(zoo),
                                          resolution=128, clip_frames=frames, temporal_stride=1, chunk_size=1,
                                          data="pool")
    codec, text, side = build_components(cfg, device)
    model = SanaWM(resolve_model_config(cfg, codec.latent_channels, text.dim)).to(device)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device).manual_seed(0)
    images = torch.rand(batch, frames, 3, 128, 128, device=device, generator=g) * 2 - 1
    # a camera walking forward and turning: c2w (B, F, 4, 4)
    t = torch.arange(frames, device=device, dtype=torch.float32)
    yaw = 0.05 * t
    c2w = torch.eye(4, device=device).repeat(batch, frames, 1, 1)
    c2w[:, :, 0, 0], c2w[:, :, 0, 2] = torch.cos(yaw), torch.sin(yaw)
    c2w[:, :, 2, 0], c2w[:, :, 2, 2] = -torch.sin(yaw), torch.cos(yaw)
    c2w[:, :, 2, 3] = 0.08 * t
    K = torch.tensor([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]], device=device).repeat(batch, 1, 1)
    cam = wm_data.build_camera_inputs(c2w, K, 128, (side, side), 1)
    emb = text.encode(["a room"] * batch).to(device)
    with torch.no_grad(), autocast(device, device.type == "cuda"):
        x0 = wm_data.encode_latent_frames(codec, images, 1).float()  # (B, C, T, h, w)
    chunk_kw = chunk_kwargs(model, 1)
    sigma = torch.rand(batch, frames, device=device, generator=g)
    clean = torch.zeros(batch, frames, device=device)
    clean[:, 0] = 1
    inputs = dict(x0=x0, eps=torch.randn(x0.shape, device=device, generator=g), sigma=sigma * (1 - clean),
                  clean=clean, loss_mask=1 - clean, hidden=emb.hidden, mask=emb.mask,
                  camera_conditions=cam.camera_conditions, chunk_plucker=cam.chunk_plucker)
    loss_fn = graph_loss(fwd, chunk_kw, device, device.type == "cuda")  # the trainer's own objective

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(**inputs).backward()
        opt.step()

    def encode() -> None:
        with torch.no_grad(), autocast(device, device.type == "cuda"):
            wm_data.encode_latent_frames(codec, images, 1)

    return step, encode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, and ``compile``: whether the compiled variants run (not with --no-compile or --smoke)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--what", nargs="+", default=["ae", "wm"], choices=["ae", "wm"])
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes on the CPU, eager only (implies --no-compile): checks that it runs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"),
                    help="results folder (--smoke: pass a scratch folder)")
    args = ap.parse_args(argv)
    args.compile = not (args.no_compile or args.smoke)
    return args


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.backends.cudnn.benchmark = True
    iters, warmup = (2, 1) if args.smoke else (10, 3)
    rows: list[dict] = []
    variants = ["eager", "channels_last"] + (["compile"] if args.compile else [])
    if "ae" in args.what:
        for preset in (["f8c16_lite"] if args.smoke else ["f8c16_lite", "f8c16"]):
            batch = 2 if args.smoke else 64
            for variant in variants:  # 1. autoencoder step variants
                step = ae_step_fn(preset, batch, device, variant)
                ms = timed(step, iters, warmup, device)
                row = {"what": f"ae {preset}", "variant": variant, "batch": batch, "ms": ms,
                       "items_per_s": 1e3 * batch / ms}
                if variant == "eager":
                    row["profile"] = top_kernels(step, device)
                rows.append(row)
                print(f"{row['what']:<16} {variant:<14} {ms:8.2f} ms {row['items_per_s']:9.0f} frames/s", flush=True)
    if "wm" in args.what:
        batch, frames = (2, 5) if args.smoke else (24, 33)
        for variant in ["eager"] + (["compile"] if args.compile else []):  # 2. world-model step variants
            step, encode = wm_step_fn(batch, frames, device, variant == "compile", args.smoke)
            ms = timed(step, iters, warmup, device)
            row = {"what": "wm rooms", "variant": variant, "batch": batch, "frames": frames, "ms": ms,
                   "items_per_s": 1e3 * batch / ms}
            if variant == "eager":
                row["encode_ms"] = timed(encode, iters, warmup, device)
                row["profile"] = top_kernels(step, device, rows=25)
            rows.append(row)
            print(f"wm rooms         {variant:<14} {ms:8.2f} ms {row['items_per_s']:9.1f} clips/s "
                  f"(encode {row.get('encode_ms', float('nan')):.1f} ms)", flush=True)
    for r in rows:
        if "profile" in r:
            print(f"\n== {r['what']} {r['variant']}: {r['profile']['kernel_launches']} kernels\n{r['profile']['table']}")
    hw = hardware(device)
    write_result(args.out, "profile_training", hw, {"benchmark": "profile_training", "hardware": hw,
                                                    "device": hw, "rows": rows})


if __name__ == "__main__":
    main()
