"""SANA image models at paper scale: diffusers' reference against ours in one process, same random weights.

    python benchmarks/sana_image.py --time-budget-s 190     # one CUDA GPU, bf16
    python benchmarks/sana_image.py --smoke                 # tiny fp32 configs on CPU (tests), tmp out

Groups, in order; each builds diffusers' model with random weights (all-zero tensors get N(0, 0.02²)),
copies them into ours (`from_diffusers`), times diffusers, frees it, times ours, frees ours:

1. ``sana_1600m`` forward at 1024² (32×32×32 latent, 300 caption tokens, 120 valid), batch 1 and 2.
2. ``sprint_1600m`` (qk / cross norms, guidance embedding) one step at 1024², batch 1.
3. DC-AE ``f32c32`` decoder (diffusers' ``AutoencoderDC``, SANA's published config) on a (1, 32, 32, 32)
   latent; no "ours": CUDA graph, channels_last and compiled rows against eager.

With ``--fp8``, each DiT group adds FP8 rows after its eager and compiled ones (issue #6, the Hopper analogue
of SANA's NVFP4 deployment): a copy of ours with its linear and 1×1-conv layers in FP8 (`sana_world.nn.fp8`,
e4m3 weights per output channel, activations per token row, `torch._scaled_mm`; the pure-torch emulation on
a CPU): ``ours+fp8``, ``ours+fp8+triton``, ``ours+fp8+compile``, ``ours+fp8+compile+cudagraph``. Their
errors and ``x ref`` are against ours in the model dtype, eager (torch backend), on the same inputs, not
against diffusers; they never count for the bars and get their own summary lines; the conversion summary
is the JSON's ``meta.fp8[preset]``. `--groups` and `--batches` shorten a run.

Methods: ``diffusers`` (eager, the reference); ``ours`` (eager); ``+triton`` (the Triton ReLU linear
attention, set on every `LinearAttention` after construction: SanaDiT has no model-level switch);
``+cudagraph`` (one static-shape call captured in a ``torch.cuda.CUDAGraph``, then replayed); ``+compile``
(``torch.compile(mode=--compile-mode, dynamic=False)``, compiled by the first call); ``+compile+cudagraph``
(that compiled call captured in a graph, no second compilation).

Columns: median and min ms of `--reps` calls after `--warmup` (CUDA events); the first call (with any
compilation); resident MiB (allocated before a call: weights, inputs, caches); peak+ MiB (one call's peak
above that; ~0 for graph replays, whose memory is the graph's pool); max abs and relative error
(‖out − ref‖ / ‖ref‖) against the reference on the same inputs; ``x ref``: reference ms / row ms.

Bars (issue #6): ours ≥ 2× faster than diffusers on the 1.6B forward, batch 1 and 2; Sprint one step
(transformer + decode, batch 1) ≤ 50 ms. Only rows within the parity tolerance count.

`--time-budget-s`: a row starts only if its rough cost fits in the time left (1.6B compile rows also leave
time for the later groups that run; a compiled FP8 row's cost is its compiled twin's measured one); a row
still running when it runs out is interrupted (SIGALRM) and recorded as such. A failing row records its
error and the run goes on. The JSON, rewritten after every row, is
``<out>/sana_image_<hardware>_<YYYYMMDD>.json``. The row machinery lives in model_bench.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from model_bench import (  # noqa: E402  (the row machinery shared with world_model.py)
    HEADER,
    Row,
    Runner,
    best,
    caption_mask,
    compiled,
    describe,
    fill_zero_parameters_,
    package_version,
    parity_tol,
    parse_args,
    print_summary,
    release,
    set_linear_attention_backend,
    setup,
)
from world_model import build_fp8, fp8_items, keep_reference, measured_estimate  # noqa: E402  (FP8 rows)

EAGER_VARIANTS = (  # (method, linear attention backend, CUDA graph)
    ("ours", "torch", False), ("ours+triton", "triton", False), ("ours+cudagraph", "torch", True),
    ("ours+triton+cudagraph", "triton", True),
)
SPEEDUP_BAR = 2.0
SPRINT_BAR_MS = 50.0


# 1. SANA DiT and DC-AE rows.

@dataclass(frozen=True)
class BenchConfig:
    """Attributes:
    preset: SanaDiT preset of the forward group (`tiny_sprint`: Sprint's switches on `tiny`).
    sprint_preset: SanaDiT preset of the one-step Sprint group.
    autoencoder: `generators.autoencoder.AE_PRESETS` key of the decoder group.
    batches: batch sizes of the forward group (Sprint and the decoder run batch 1).
    latent: latent side (32 for 1024² with DC-AE f32).
    caption_tokens: caption length L.
    dtype: parameter and input dtype.
    warmup, reps: untimed calls, then timed calls (the median is reported).
    compile_mode: torch.compile mode ("default", "max-autotune-no-cudagraphs", ...).
    time_budget_s: stop starting rows after this many seconds; interrupt a row still running then.
    row_s, compile_row_s: rough cost of a row without / with compilation (H100 guesses), for the budget.
    reserve_s: time a later group needs for its rows without compilation (1.6B compile rows leave it).
    smoke: tiny CPU-sized run.
    out: results folder.
    fp8: add the FP8 rows (module doc).
    """

    preset: str = "sana_1600m"
    sprint_preset: str = "sprint_1600m"
    autoencoder: str = "f32c32"
    batches: tuple[int, ...] = (1, 2)
    latent: int = 32
    caption_tokens: int = 300
    dtype: str = "bfloat16"
    warmup: int = 3
    reps: int = 10
    compile_mode: str = "default"
    time_budget_s: float | None = None
    row_s: float = 5.0
    compile_row_s: float = 60.0
    reserve_s: float = 20.0
    smoke: bool = False
    out: str = str(Path(__file__).parent / "results")
    fp8: bool = False


def smoke_config(out: str, time_budget_s: float | None = None, fp8: bool = False) -> BenchConfig:
    return BenchConfig(preset="tiny", sprint_preset="tiny_sprint", autoencoder="f8c16_lite", latent=4,
                       caption_tokens=8, dtype="float32", warmup=1, reps=2, time_budget_s=time_budget_s,
                       row_s=0.5, compile_row_s=3.0, reserve_s=1.0, smoke=True, out=out, fp8=fp8)  # fmt: skip


def dit_config(name: str) -> Any:
    from sana_world.generators.image import PRESETS, tiny

    if name == "tiny_sprint":
        return dataclasses.replace(tiny(), qk_norm=True, cross_norm=True, guidance_embeds=True,
                                   truncate_timesteps=False)  # fmt: skip
    return PRESETS[name]()


def build_dit_pair(cfg: Any, device: str, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    """(diffusers SanaTransformer2DModel with random weights, our SanaDiT holding a copy of them)."""
    from diffusers import SanaTransformer2DModel

    from sana_world.generators.image import config_to_diffusers, from_diffusers

    torch.manual_seed(0)
    with torch.device(device):
        dm = SanaTransformer2DModel(**config_to_diffusers(cfg))
    fill_zero_parameters_(dm)
    dm = dm.to(dtype).eval()
    return dm, from_diffusers(dm, dtype=dtype).eval()


def dit_inputs(cfg: Any, batch: int, latent: int, tokens: int, device: str, dtype: torch.dtype) -> dict:
    g = torch.Generator(device).manual_seed(1)
    # Sprint feeds fractional t (TrigFlow) and a guidance scale; the values do not change the cost.
    t = 0.8 if cfg.guidance_embeds else 500.0
    return dict(
        x=torch.randn(batch, cfg.in_channels, latent, latent, generator=g, device=device).to(dtype),
        timestep=torch.full((batch,), t, device=device),
        encoder_hidden_states=torch.randn(batch, tokens, cfg.caption_channels, generator=g,
                                          device=device).to(dtype),
        encoder_attention_mask=caption_mask(batch, tokens, device),
        guidance=torch.full((batch,), 4.5, device=device) if cfg.guidance_embeds else None,
    )  # fmt: skip


def call_diffusers_dit(dm: nn.Module, inp: dict) -> torch.Tensor:
    return dm(inp["x"], inp["encoder_hidden_states"], inp["timestep"], guidance=inp["guidance"],
              encoder_attention_mask=inp["encoder_attention_mask"], return_dict=False)[0]  # fmt: skip


def bench_dit(r: Runner, cfg: BenchConfig, preset: str, batches: tuple[int, ...], reserve_s: float) -> None:
    """diffusers, then our eager variants, then our compiled ones, for one SanaDiT preset (with --fp8: the
    FP8 eager rows after ours eager, the FP8 compiled rows after ours compiled)."""
    dcfg, dtype = dit_config(preset), getattr(torch, cfg.dtype)
    pair = r.build(preset, partial(build_dit_pair, dcfg, r.device, dtype))
    if pair is None:
        return
    dm, ours = pair
    del pair
    inputs = {B: dit_inputs(dcfg, B, cfg.latent, cfg.caption_tokens, r.device, dtype) for B in batches}
    # 1. The reference.
    for B in batches:
        r.run(preset, "diffusers", B, partial(call_diffusers_dit, dm, inputs[B]), ref=f"{preset}/{B}",
              is_ref=True)  # fmt: skip
    del dm
    release()
    # 2. Ours without compilation.
    for B in batches:
        for method, backend, graph in EAGER_VARIANTS:
            row = r.run(preset, method, B, partial(ours, **inputs[B]), ref=f"{preset}/{B}", graph=graph,
                        prepare=partial(set_linear_attention_backend, ours, backend))  # fmt: skip
            if cfg.fp8 and method == "ours":
                keep_reference(r, f"{preset}/{B}/ours", partial(ours, **inputs[B]), row)
    set_linear_attention_backend(ours, "torch")
    # 2'. FP8: a converted copy, eager, against ours.
    fp8 = r.build(f"{preset} fp8", partial(build_fp8, r, preset, ours, cfg.smoke)) if cfg.fp8 else None
    fp8_info = {"ref": "ours (model dtype, eager, torch backend)"}
    if fp8 is not None:
        for B in batches:
            for method, backend in (("ours+fp8", "torch"), ("ours+fp8+triton", "triton")):
                r.run(preset, method, B, partial(fp8, **inputs[B]), ref=f"{preset}/{B}/ours", info=fp8_info,
                      prepare=partial(set_linear_attention_backend, fp8, backend))  # fmt: skip
        set_linear_attention_backend(fp8, "torch")
    # 3. Compiled (static shapes: each batch size compiles once), then that captured in a CUDA graph.
    comp = compiled(ours, cfg.compile_mode, cfg.smoke)
    compiled_rows = {}
    for B in batches:
        row = compiled_rows[B] = r.run(preset, "ours+compile", B, partial(comp, **inputs[B]),
                                       ref=f"{preset}/{B}", estimate_s=cfg.compile_row_s,
                                       reserve_s=reserve_s)  # fmt: skip
        r.run(preset, "ours+compile+cudagraph", B, partial(comp, **inputs[B]), ref=f"{preset}/{B}",
              graph=True, after=row)  # fmt: skip
    del comp, ours
    release(reset_compiled=True)
    # 3'. FP8 compiled the same way (after a reset: its graphs never share the compile cache with ours).
    if fp8 is not None:
        comp = compiled(fp8, cfg.compile_mode, cfg.smoke)
        for B in batches:
            estimate = measured_estimate(r, compiled_rows[B], cfg.compile_row_s)
            row = r.run(preset, "ours+fp8+compile", B, partial(comp, **inputs[B]), ref=f"{preset}/{B}/ours",
                        estimate_s=estimate, reserve_s=reserve_s, info=fp8_info)  # fmt: skip
            r.run(preset, "ours+fp8+compile+cudagraph", B, partial(comp, **inputs[B]),
                  ref=f"{preset}/{B}/ours", graph=True, after=row, info=fp8_info)  # fmt: skip
        del comp, fp8
        release(reset_compiled=True)


def bench_decoder(r: Runner, cfg: BenchConfig) -> None:
    """DC-AE decoder: eager (the reference), in a CUDA graph, channels_last, compiled, compiled in a graph."""
    from sana_world.generators.autoencoder import AE_PRESETS, build_autoencoder

    group, dtype = f"dc_ae_{cfg.autoencoder} decode", getattr(torch, cfg.dtype)
    spec = AE_PRESETS[cfg.autoencoder]()

    def build() -> nn.Module:
        torch.manual_seed(0)
        with torch.device(r.device):
            ae = build_autoencoder(spec)
        return ae.decoder.to(dtype).eval()  # the encoder is dropped with `ae`

    dec = r.build(group, build)
    if dec is None:
        return
    g = torch.Generator(r.device).manual_seed(2)
    z = torch.randn(1, spec.latent_channels, cfg.latent, cfg.latent, generator=g, device=r.device).to(dtype)
    z_cl = z.contiguous(memory_format=torch.channels_last)
    ref, info = f"{group}/1", {"image": cfg.latent * spec.downsample_factor}
    to_channels_last = partial(dec.to, memory_format=torch.channels_last)
    r.run(group, "eager", 1, partial(dec, z), ref=ref, is_ref=True, info=info)
    r.run(group, "eager+cudagraph", 1, partial(dec, z), ref=ref, graph=True, info=info)
    r.run(group, "channels_last", 1, partial(dec, z_cl), ref=ref, prepare=to_channels_last, info=info)
    comp = compiled(dec, cfg.compile_mode, cfg.smoke)
    row = r.run(group, "channels_last+compile", 1, partial(comp, z_cl), ref=ref, prepare=to_channels_last,
                estimate_s=cfg.compile_row_s, info=info)  # fmt: skip
    r.run(group, "channels_last+compile+cudagraph", 1, partial(comp, z_cl), ref=ref, graph=True, after=row,
          info=info)  # fmt: skip
    del comp, dec, to_channels_last
    release(reset_compiled=True)


def image_bars(rows: list[Row], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Issue #6's bars from the rows; `met` is None where a row they need did not run (or missed parity).
    FP8 rows never count for them; with --fp8 their speed-up over ours follows (no `met`)."""
    tol, bars = parity_tol(cfg.dtype), []
    all_rows, rows = rows, [row for row in rows if "fp8" not in row.method]
    missing = f"no row ran (ours rows count only within rel err {tol:g} of diffusers)"
    for B in cfg.batches:
        ref, ours = best(rows, cfg.preset, B, "diffusers", math.inf), best(rows, cfg.preset, B, "ours", tol)
        ratio = ref.ms / ours.ms if ref and ours and ref.ms and ours.ms else None
        detail = missing
        if ref and ours and ours.rel_err is not None:
            detail = (f"best {ours.method} {ours.ms:.2f} ms (rel err {ours.rel_err:.1e}) "
                      f"vs diffusers {ref.ms:.2f} ms")
        bars.append({"bar": f"{cfg.preset} forward bs{B}: ours >= {SPEEDUP_BAR:g}x faster than diffusers",
                     "value": ratio, "met": None if ratio is None else ratio >= SPEEDUP_BAR,
                     "detail": detail})  # fmt: skip
    sprint = best(rows, cfg.sprint_preset, 1, "ours", tol)
    dec = best(rows, f"dc_ae_{cfg.autoencoder} decode", 1, "", tol)
    total = sprint.ms + dec.ms if sprint and dec and sprint.ms and dec.ms else None
    detail = f"{sprint.method} {sprint.ms:.2f} ms + decoder {dec.method} {dec.ms:.2f} ms" \
        if sprint and dec else missing  # fmt: skip
    bars.append({"bar": f"{cfg.sprint_preset} one step + decode <= {SPRINT_BAR_MS:g} ms", "value": total,
                 "met": None if total is None else total <= SPRINT_BAR_MS, "detail": detail})
    if cfg.fp8:
        ran = {row.group for row in all_rows}
        for group, batches in ((cfg.preset, cfg.batches), (cfg.sprint_preset, (1,))):
            if group in ran:
                bars += [item for B in batches for item in fp8_items(all_rows, [group], B, tol)]
    return bars


GROUPS = ("sana", "sprint", "decoder")  # SANA-1.6B, Sprint-1.6B one step, DC-AE f32c32 decode


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS),
                   help="which groups run (the bars need their rows: a group left out leaves its bar unmet)")
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help=f"batch sizes of the {BenchConfig.preset} group (default "
                        f"{' '.join(map(str, BenchConfig.batches))})")  # fmt: skip
    p.add_argument("--fp8", action="store_true",
                   help="add the FP8 rows (ours+fp8, +triton, +compile, +compile+cudagraph) against ours")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, BenchConfig, extra=add_flags)
    if args.smoke:
        cfg = smoke_config(args.out, args.time_budget_s, fp8=args.fp8)
    else:
        cfg = BenchConfig(warmup=args.warmup, reps=args.reps, compile_mode=args.compile_mode,
                          time_budget_s=args.time_budget_s, out=args.out, fp8=args.fp8)  # fmt: skip
    if args.batches is not None:
        cfg = dataclasses.replace(cfg, batches=tuple(args.batches))
    later = {"sana": sum(g in args.groups for g in ("sprint", "decoder")),
             "sprint": int("decoder" in args.groups)}  # groups after it: compile rows leave them time
    setup(cfg.smoke)
    r = Runner("sana_image", cfg, budget_s=cfg.time_budget_s, warmup=cfg.warmup, reps=cfg.reps,
               dtype=cfg.dtype, row_s=cfg.row_s, out=cfg.out)  # fmt: skip
    print(f"{r.device} {torch.cuda.get_device_name(0) if r.cuda else ''} torch {torch.__version__} "
          f"diffusers {package_version('diffusers')} {cfg.dtype}\n{HEADER}", flush=True)
    try:
        if "sana" in args.groups:
            bench_dit(r, cfg, cfg.preset, cfg.batches, reserve_s=later["sana"] * cfg.reserve_s)
        if "sprint" in args.groups:
            bench_dit(r, cfg, cfg.sprint_preset, (1,), reserve_s=later["sprint"] * cfg.reserve_s)
        if "decoder" in args.groups:
            bench_decoder(r, cfg)
    except Exception as e:  # between rows: the budget alarm, or a CUDA context that a failed row broke
        r.extra_meta["stopped"] = describe(e)
        print(f"stopped: {describe(e)}")
    finally:
        r.close()
    r.summary = image_bars(r.rows, cfg)
    r.save()
    print_summary(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
