"""SANA-WM 2.66B at 720p: diffusers' reference against ours in one process, same random weights.

    python benchmarks/world_model.py --time-budget-s 150 --compile-frames 161   # one CUDA GPU, bf16
    python benchmarks/world_model.py --smoke                                   # tiny fp32 on CPU (tests)

diffusers' ``SanaWMTransformer3DModel`` is built from our ``sana_wm_2600m`` preset (`config_to_diffusers`)
with random weights (all-zero tensors get N(0, 0.02²)); `from_diffusers` copies them into our `SanaWM`.
diffusers is timed and freed, then ours. Ours runs with ``softmax_in_bf16=True`` on every block (diffusers'
numerics: its softmax and camera-softmax SDPA take bf16 q, k, v; a no-op for bf16 main branches).

Rows, in the order they run:

1. Bidirectional forward, batch 1, of 41 and 161 frames at 704×1280: the LTX-2 VAE gives a 22×40 latent
   (32× spatial) and one latent frame per 8 video frames, the model's Plücker stride (so 6 and 21 latent
   frames, 5,280 and 18,480 tokens), 300 caption tokens (120 valid), camera conditions of a camera walking
   forward and turning (60° horizontal field of view), random Plücker maps. diffusers eager (the
   reference; issue #6 measured 302 and 964 ms on an H100), ours eager, ours + Triton (not applicable,
   recorded as skipped: SanaWM has GDN and softmax attention, no ReLU linear attention, and
   sana_world.kernels has no GDN kernel).
2. Streaming through `WMStreamEngine`: one chunk of 3 latent frames (2,640 tokens) sampled with a 4-step
   Flow-Euler sampler, then the `advance` pass that appends it to the stream state (5 model passes a
   chunk; each timed call is the next chunk of one ongoing stream, so the softmax window fills up).
   bf16 weights run under bf16 autocast there (the sampler keeps latents in fp32). The real-time factor
   is the chunk's video time over its wall time, at 16 fps: a chunk of 3 latent frames is 3 × 8 = 24
   video frames = 1.5 s in steady state (the stream's first chunk holds 1 + 2 × 8 = 17).
3. ours + ``torch.compile`` of the bidirectional forward, block by block (`SanaWM.compile_blocks`;
   `--compile-frames`, default 161 then 41).
4. With ``--fp8`` (issue #6, the Hopper analogue of SANA's NVFP4 deployment): a copy of ours with its linear
   and 1×1-conv layers in FP8 (`sana_world.nn.fp8`, e4m3 weights per output channel, activations per token
   row, `torch._scaled_mm`; the pure-torch emulation on a CPU), eager after row 1 (``ours+fp8``) and compiled
   block by block after row 3 (``ours+fp8+compile``). Their rel err / max abs / x ref are against ours in
   the model dtype, eager, on the same inputs (not against diffusers); the conversion summary is in the
   JSON's ``meta.fp8[preset]``. FP8 rows do not count for the diffusers speed-up summary; they get their own.
   With random weights the error says how FP8 rounding propagates, not what it costs a trained model:
   `tests/nn/test_fp8.py` measures that on the trained ``rooms-128`` world model (output error, PSNR).

Columns, `--time-budget-s` and failure handling as in sana_image.py (machinery in model_bench.py); the
compiled FP8 row's budget estimate is the compiled row's measured cost where that ran. Writes
``<out>/world_model_<hardware>_<YYYYMMDD>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.kernels.linear_attention import triton_available

from model_bench import (
    Row,
    Runner,
    best,
    caption_mask,
    describe,
    fill_zero_parameters_,
    package_version,
    parity_tol,
    parse_args,
    print_summary,
    release,
    setup,
)

ISSUE_DIFFUSERS_H100_MS = {41: 302.0, 161: 964.0}
NO_TRITON = "skipped: the Triton GDN scan needs CUDA and triton (sana_world.kernels.gdn_scan)"


@dataclass(frozen=True)
class BenchConfig:
    """Attributes:
    preset: `sana_world.world_model.PRESETS` key.
    frames: video frame counts of the bidirectional rows (stride·k + 1).
    compile_frames: those of them that get a compiled row, in this order (each compiles once).
    height, width: video size; the latent grid is (height, width) // spatial_stride.
    spatial_stride: VAE spatial compression (32 for LTX-2). The temporal one is the preset's Plücker stride.
    caption_tokens: caption length L.
    chunk_frames: latent frames per streaming chunk.
    stream_steps: sampler steps per chunk.
    fps: video frame rate of the real-time factor.
    dtype: parameter and input dtype.
    warmup, reps: untimed calls, then timed calls (the median is reported).
    compile_mode: torch.compile mode.
    time_budget_s: stop starting rows after this many seconds; interrupt a row still running then.
    row_s, compile_row_s: rough cost of a row without / with compilation (H100 guesses: an eager 161-frame
        row makes ~10 calls of ~1 s), for the budget.
    smoke: tiny CPU-sized run.
    out: results folder.
    fp8: add the FP8 rows (section 4 of the module doc).
    """

    preset: str = "sana_wm_2600m"
    frames: tuple[int, ...] = (41, 161)
    compile_frames: tuple[int, ...] = (161, 41)
    height: int = 704
    width: int = 1280
    spatial_stride: int = 32
    caption_tokens: int = 300
    chunk_frames: int = 3
    stream_steps: int = 4
    fps: float = 16.0
    dtype: str = "bfloat16"
    warmup: int = 2
    reps: int = 5
    compile_mode: str = "default"
    time_budget_s: float | None = None
    row_s: float = 15.0
    compile_row_s: float = 90.0
    smoke: bool = False
    out: str = str(Path(__file__).parent / "results")
    fp8: bool = False


def smoke_config(out: str, time_budget_s: float | None = None, fp8: bool = False) -> BenchConfig:
    """`tiny` (Plücker stride 2): 5 and 9 frames = 3 and 5 latent frames of 4×6; one compiled shape."""
    return BenchConfig(preset="tiny", frames=(5, 9), compile_frames=(9,), height=128, width=192,
                       caption_tokens=7, dtype="float32", warmup=1, reps=2, time_budget_s=time_budget_s,
                       row_s=1.0, compile_row_s=5.0, smoke=True, out=out, fp8=fp8)  # fmt: skip


# FP8 rows (section 4 of the module doc; sana_image.py uses these too).


def fp8_config(smoke: bool, cuda: bool) -> Any:
    """`FP8Config` of the FP8 rows: the kernel on CUDA, the emulation on a CPU; smoke runs convert every
    16-multiple layer (the tiny models are narrower than the default `min_features`)."""
    from sana_world.nn.fp8 import FP8Config

    cfg = FP8Config(backend="scaled_mm" if cuda else "emulate")
    return dataclasses.replace(cfg, min_features=16) if smoke else cfg


def build_fp8(r: Runner, name: str, model: nn.Module, smoke: bool) -> nn.Module:
    """An FP8 copy of `model` (which keeps its weights); the conversion summary goes to meta.fp8[name]."""
    from sana_world.nn.fp8 import convert_to_fp8

    fp8, summary = convert_to_fp8(copy.deepcopy(model), fp8_config(smoke, r.cuda))
    r.extra_meta.setdefault("fp8", {})[name] = summary.as_dict()
    print(summary.report().splitlines()[0], summary.reasons(), flush=True)
    return fp8


def keep_reference(r: Runner, key: str, fn: Callable[[], torch.Tensor], row: Row) -> None:
    """fn()'s output and `row`'s median under `key`: the FP8 rows' reference (ours in the model dtype)."""
    if row.ms is not None:
        r.refs[key] = (fn().detach().float(), row.ms)


def measured_estimate(r: Runner, row: Row | None, default_s: float) -> float:
    """Budget estimate of a row that costs what `row` did: its first call, warm-up, timed, peak and output
    calls, with a quarter on top (`default_s` where `row` did not run)."""
    if row is None or row.ms is None or row.first_call_ms is None:
        return default_s
    return 1.25 * (row.first_call_ms + (r.warmup + r.reps + 2) * row.ms) / 1e3


def fp8_items(rows: list[Row], groups: list[str], batch: int, tol: float) -> list[dict[str, Any]]:
    """Per group: the best FP8 row's speed-up over the best ours row in the model dtype (within `tol` of
    its reference), with the FP8 row's error against ours."""
    plain = [row for row in rows if "fp8" not in row.method]
    items = []
    for group in groups:
        fast, base = best(rows, group, batch, "ours+fp8", math.inf), best(plain, group, batch, "ours", tol)
        ratio = base.ms / fast.ms if fast and base and fast.ms and base.ms else None
        detail = "no fp8 row ran"
        if fast and base:
            err = "-" if fast.rel_err is None else f"{fast.rel_err:.1e}"
            detail = (f"{fast.method} {fast.ms:.2f} ms (rel err {err} vs ours) vs {base.method} "
                      f"{base.ms:.2f} ms")  # fmt: skip
        items.append({"bar": f"{group} bs{batch}: fp8 speed-up over ours", "value": ratio, "detail": detail})
    return items


def build_wm_pair(cfg: Any, device: str, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    """(diffusers SanaWMTransformer3DModel with random weights, our SanaWM holding a copy of them)."""
    from diffusers import SanaWMTransformer3DModel

    from sana_world.world_model import config_to_diffusers, from_diffusers

    torch.manual_seed(0)
    with torch.device(device):
        dm = SanaWMTransformer3DModel(**config_to_diffusers(cfg))
    fill_zero_parameters_(dm)
    dm = dm.to(dtype).eval()
    ours = from_diffusers(dm, dtype=dtype).eval()
    for block in ours.blocks:
        block.attn.cfg = dataclasses.replace(block.attn.cfg, softmax_in_bf16=True)
    return dm, ours


def camera_conditions(frames: int, h: int, w: int, device: str) -> torch.Tensor:
    """(1, T, 20): relative c2w of a camera stepping 0.05 forward and turning 1.2° a latent frame, flattened,
    then [fx, fy, cx, cy] of a 60° horizontal field of view on the latent grid."""
    yaw = torch.arange(frames) * math.radians(1.2)
    c2w = torch.eye(4).repeat(frames, 1, 1)
    c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 2, 0], c2w[:, 2, 2] = yaw.cos(), yaw.sin(), -yaw.sin(), yaw.cos()
    c2w[:, 2, 3] = 0.05 * torch.arange(frames)
    f = 0.5 * w / math.tan(math.radians(30))
    intrinsics = torch.tensor([f, f, w / 2, h / 2]).expand(frames, 4)
    return torch.cat([c2w.reshape(frames, 16), intrinsics], -1)[None].to(device)


def wm_inputs(cfg: Any, frames: int, hw: tuple[int, int], tokens: int, device: str,
              dtype: torch.dtype) -> dict:  # fmt: skip
    """Keyword arguments both models take (camera tensors in the model dtype, as diffusers' pipeline does)."""
    g = torch.Generator(device).manual_seed(1)
    h, w = hw
    randn = partial(torch.randn, generator=g, device=device)
    return dict(
        hidden_states=randn(1, cfg.in_channels, frames, h, w).to(dtype),
        timestep=torch.full((1, 1, frames), 500.0, device=device),
        encoder_hidden_states=randn(1, tokens, cfg.caption_channels).to(dtype),
        encoder_attention_mask=caption_mask(1, tokens, device),
        camera_conditions=camera_conditions(frames, h, w, device).to(dtype),
        chunk_plucker=randn(1, cfg.plucker_channels, frames, h, w).to(dtype),
    )


def call_diffusers_wm(dm: nn.Module, inp: dict) -> torch.Tensor:
    return dm(**inp, return_dict=False)[0]


def bench_stream(r: Runner, cfg: BenchConfig, ours: nn.Module, hw: tuple[int, int]) -> None:
    """ms per streamed chunk (sampler steps + advance) and the real-time factor."""
    from sana_world.samplers import FlowEulerSampler
    from sana_world.world_model import WMCameraInputs, WMStreamConfig, WMStreamEngine, WMText

    wcfg, dtype, T = ours.cfg, getattr(torch, cfg.dtype), cfg.chunk_frames
    bf16_autocast = r.cuda and dtype != torch.float32
    box: dict[str, Any] = {}

    def prepare() -> None:
        inp = wm_inputs(wcfg, T, hw, cfg.caption_tokens, r.device, dtype)
        box.update(engine=WMStreamEngine(ours, FlowEulerSampler(cfg.stream_steps), WMStreamConfig()),
                   text=WMText(inp["encoder_hidden_states"], inp["encoder_attention_mask"]),
                   camera=WMCameraInputs(inp["camera_conditions"], inp["chunk_plucker"]),
                   noise=inp["hidden_states"].float())  # fmt: skip
        box["state"] = box["engine"].init_state(1, hw, device=r.device)

    def chunk() -> torch.Tensor:
        """The stream's next chunk: sample it, then append it to the state."""
        engine, text, camera = box["engine"], box["text"], box["camera"]
        with torch.autocast("cuda", dtype=dtype) if bf16_autocast else contextlib.nullcontext():
            clean = engine.denoise_chunk(box["state"], box["noise"], text, camera)
            box["state"] = engine.advance(box["state"], clean, text, camera)
        return clean

    info = {"latent_frames": T, "tokens": T * hw[0] * hw[1], "model_passes": cfg.stream_steps + 1,
            "sampler": f"flow-euler {cfg.stream_steps} steps", "video_frames": T * wcfg.plucker_stride,
            "fps": cfg.fps}  # fmt: skip
    row = r.run(f"{cfg.preset} stream {T}f chunk", f"ours {cfg.stream_steps}-step + advance", 1, chunk,
                prepare=prepare, info=info)  # fmt: skip
    if row.ms is not None:
        row.info.update(realtime_factor=info["video_frames"] / cfg.fps / (row.ms / 1e3),
                        state_mib=box["state"].nbytes() / 2**20, frames_streamed=box["state"].frame)
        r.save()
    box.clear()


def bench(r: Runner, cfg: BenchConfig) -> None:
    """diffusers, ours eager (then FP8), the stream, ours compiled (then FP8 compiled)."""
    from sana_world.world_model import PRESETS

    wcfg, dtype = PRESETS[cfg.preset](), getattr(torch, cfg.dtype)
    stride, hw = wcfg.plucker_stride, (cfg.height // cfg.spatial_stride, cfg.width // cfg.spatial_stride)
    latent = {F: (F - 1) // stride + 1 for F in cfg.frames}
    group = {F: f"{cfg.preset} {F}f ({latent[F] * hw[0] * hw[1]} tok)" for F in cfg.frames}
    info = {F: {"frames": F, "latent_frames": latent[F], "latent_hw": hw, "tokens": latent[F] * hw[0] * hw[1]}
            for F in cfg.frames}  # fmt: skip
    pair = r.build(cfg.preset, partial(build_wm_pair, wcfg, r.device, dtype))
    if pair is None:
        return
    dm, ours = pair
    del pair
    inputs = {F: wm_inputs(wcfg, latent[F], hw, cfg.caption_tokens, r.device, dtype) for F in cfg.frames}
    # 1. The reference, then ours eager.
    for F in cfg.frames:
        r.run(group[F], "diffusers", 1, partial(call_diffusers_wm, dm, inputs[F]), ref=group[F], is_ref=True,
              info=info[F])  # fmt: skip
    del dm
    release()
    for F in cfg.frames:
        row = r.run(group[F], "ours", 1, partial(ours, **inputs[F]), ref=group[F], info=info[F])
        if torch.device(r.device).type == "cuda" and triton_available():  # the fused GDN scans (SanaWM.set_gdn_backend)
            ours.set_gdn_backend("triton")
            r.run(group[F], "ours+triton", 1, partial(ours, **inputs[F]), ref=group[F], info=info[F])
            ours.set_gdn_backend("torch")
        else:
            r.add(Row(group[F], "ours+triton", 1, r.dtype, r.device, info=dict(info[F]), error=NO_TRITON))
        if cfg.fp8:
            keep_reference(r, f"{group[F]}/ours", partial(ours, **inputs[F]), row)
    # 1'. FP8: a converted copy, eager, against ours.
    fp8 = None
    if cfg.fp8:
        fp8 = r.build(f"{cfg.preset} fp8", partial(build_fp8, r, cfg.preset, ours, cfg.smoke))
    fp8_info = {F: {**info[F], "ref": "ours (model dtype, eager)"} for F in cfg.frames}
    if fp8 is not None:
        for F in cfg.frames:
            r.run(group[F], "ours+fp8", 1, partial(fp8, **inputs[F]), ref=f"{group[F]}/ours",
                  info=fp8_info[F])  # fmt: skip
    # 2. Streaming.
    bench_stream(r, cfg, ours, hw)
    # 3. Compiled, block by block (SanaWM.compile_blocks: one graph per block kind, not one for the model).
    kw = dict(backend="eager") if cfg.smoke else dict(mode=cfg.compile_mode)
    if cfg.compile_frames:
        ours.compile_blocks(dynamic=False, **kw)
    compiled_rows = {}
    for F in (F for F in cfg.compile_frames if F in cfg.frames):
        compiled_rows[F] = r.run(group[F], "ours+compile", 1, partial(ours, **inputs[F]), ref=group[F],
                                 estimate_s=cfg.compile_row_s, info=info[F])  # fmt: skip
    del ours
    release(reset_compiled=True)
    # 3'. FP8 compiled the same way (after a reset: its graphs never share the compile cache with ours).
    if fp8 is not None:
        if cfg.compile_frames:
            fp8.compile_blocks(dynamic=False, **kw)
        for F in (F for F in cfg.compile_frames if F in cfg.frames):
            r.run(group[F], "ours+fp8+compile", 1, partial(fp8, **inputs[F]), ref=f"{group[F]}/ours",
                  estimate_s=measured_estimate(r, compiled_rows.get(F), cfg.compile_row_s),
                  info=fp8_info[F])  # fmt: skip
        del fp8
        release(reset_compiled=True)


def wm_summary(r: Runner, cfg: BenchConfig) -> list[dict[str, Any]]:
    """Best ours against diffusers per frame count, and the stream's real-time factor (no bars: no `met`);
    with --fp8, the FP8 speed-up over ours (FP8 rows never count against diffusers)."""
    tol, items = parity_tol(cfg.dtype), []
    groups = dict.fromkeys(row.group for row in r.rows if row.method == "diffusers")
    plain = [row for row in r.rows if "fp8" not in row.method]
    for group in groups:
        ref, ours = best(plain, group, 1, "diffusers", math.inf), best(plain, group, 1, "ours", tol)
        ratio = ref.ms / ours.ms if ref and ours and ref.ms and ours.ms else None
        frames = ref.info.get("frames") if ref else None
        detail = f"best {ours.method} {ours.ms:.1f} ms vs diffusers {ref.ms:.1f} ms" if ref and ours else "-"
        if frames in ISSUE_DIFFUSERS_H100_MS:
            detail += f" (issue #6: diffusers {ISSUE_DIFFUSERS_H100_MS[frames]:g} ms on an H100)"
        items.append({"bar": f"{group}: speed-up of ours over diffusers", "value": ratio, "detail": detail})
    for row in r.rows:
        if "realtime_factor" in row.info:
            items.append({"bar": f"{row.group}: real-time factor at {cfg.fps:g} fps",
                          "value": row.info["realtime_factor"],
                          "detail": f"{row.ms:.1f} ms a chunk of {row.info['video_frames']} video frames"})
    if cfg.fp8:
        items += fp8_items(r.rows, list(groups), 1, tol)
    return items


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile-frames", type=int, nargs="*", default=list(BenchConfig.compile_frames),
                   help="frame counts that get a compiled row, in this order (none: no compilation)")
    default = " ".join(map(str, BenchConfig.frames))
    p.add_argument("--frames", type=int, nargs="+", default=None,
                   help=f"frame counts of the bidirectional rows, stride·k + 1 (default {default})")
    p.add_argument("--fp8", action="store_true",
                   help="add the FP8 rows: ours+fp8 and ours+fp8+compile, against ours (section 4 above)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, BenchConfig, extra=add_flags)
    if args.smoke:
        cfg = smoke_config(args.out, args.time_budget_s, fp8=args.fp8)
    else:
        cfg = BenchConfig(warmup=args.warmup, reps=args.reps, compile_mode=args.compile_mode,
                          compile_frames=tuple(args.compile_frames), time_budget_s=args.time_budget_s,
                          out=args.out, fp8=args.fp8)  # fmt: skip
    if args.frames is not None:
        cfg = dataclasses.replace(cfg, frames=tuple(args.frames))
    setup(cfg.smoke)
    r = Runner("world_model", cfg, budget_s=cfg.time_budget_s, warmup=cfg.warmup, reps=cfg.reps,
               dtype=cfg.dtype, row_s=cfg.row_s, out=cfg.out)  # fmt: skip
    r.extra_meta["issue_diffusers_h100_ms"] = ISSUE_DIFFUSERS_H100_MS
    print(f"{r.device} {torch.cuda.get_device_name(0) if r.cuda else ''} torch {torch.__version__} "
          f"diffusers {package_version('diffusers')} {cfg.dtype}", flush=True)
    try:
        bench(r, cfg)
    except Exception as e:  # between rows: the budget alarm, or a CUDA context that a failed row broke
        r.extra_meta["stopped"] = describe(e)
        print(f"stopped: {describe(e)}")
    finally:
        r.close()
    r.summary = wm_summary(r, cfg)
    r.save()
    print_summary(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
