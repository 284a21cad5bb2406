"""SANA image models at paper scale: diffusers' reference against ours in one process, same random weights.

    python benchmarks/sana_image.py --time-budget-s 190     # one CUDA GPU, bf16
    python benchmarks/sana_image.py --smoke                 # tiny fp32 configs on CPU (tests), tmp out

Groups, in order; each builds diffusers' model with random weights (all-zero tensors get N(0, 0.02²)),
copies them into ours (`from_diffusers`), times diffusers, frees it, times ours, frees ours:

1. ``sana_1600m`` forward at 1024² (32×32×32 latent, 300 caption tokens, 120 valid), batch 1 and 2.
2. ``sprint_1600m`` (qk / cross norms, guidance embedding) one step at 1024², batch 1.
3. DC-AE ``f32c32`` decoder (diffusers' ``AutoencoderDC``, SANA's published config) on a (1, 32, 32, 32)
   latent; no "ours": CUDA graph, channels_last and compiled rows against eager.

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
time for the later groups); a row still running when it runs out is interrupted (SIGALRM) and recorded as
such. A failing row records its error and the run goes on. The JSON, rewritten after every row, is
``<out>/sana_image_<hardware>_<YYYYMMDD>.json``. This file also holds the row machinery world_model.py uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from linear_attention import hardware, peak_mib, timed  # noqa: E402  (one timing and naming convention)

T = TypeVar("T")
EAGER_VARIANTS = (  # (method, linear attention backend, CUDA graph)
    ("ours", "torch", False), ("ours+triton", "triton", False), ("ours+cudagraph", "torch", True),
    ("ours+triton+cudagraph", "triton", True),
)
SPEEDUP_BAR = 2.0
SPRINT_BAR_MS = 50.0


# 1. Rows and the runner (shared with world_model.py).

@dataclass
class Row:
    group: str
    method: str
    batch: int
    dtype: str
    device: str
    ms: float | None = None  # median
    ms_min: float | None = None
    first_call_ms: float | None = None  # includes compilation where there is any
    resident_mib: float | None = None
    peak_extra_mib: float | None = None
    max_abs_err: float | None = None
    rel_err: float | None = None  # ‖out − ref‖ / ‖ref‖
    speedup: float | None = None  # reference median / this median
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class BudgetExceeded(Exception):
    """The --time-budget-s alarm went off."""


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def release(reset_compiled: bool = False) -> None:
    """Free what dropped references held (and compiled graphs, which keep their modules alive)."""
    if reset_compiled:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Runner:
    """Runs rows one at a time: budget check, timing, memory, error against a reference, the row's failure
    recorded instead of raised, and the JSON rewritten after each row."""

    def __init__(self, name: str, config: Any, *, budget_s: float | None, warmup: int, reps: int,
                 dtype: str, row_s: float, out: str) -> None:  # fmt: skip
        self.name, self.config, self.budget_s = name, config, budget_s
        self.warmup, self.reps, self.dtype, self.row_s = warmup, reps, dtype, row_s
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        self.rows: list[Row] = []
        self.summary: list[dict[str, Any]] = []
        self.extra_meta: dict[str, Any] = {}
        self.refs: dict[str, tuple[torch.Tensor, float | None]] = {}  # key -> (output, median ms)
        self.path = Path(out) / f"{name}_{hardware()}_{dt.date.today():%Y%m%d}.json"
        self.start = time.perf_counter()
        main_thread = threading.current_thread() is threading.main_thread()
        self._alarm = budget_s is not None and budget_s > 0 and main_thread
        if self._alarm:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, budget_s)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise BudgetExceeded(f"interrupted: the time budget of {self.budget_s:g} s ran out")

    def close(self) -> None:
        if self._alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)
            self._alarm = False

    def left(self) -> float:
        if self.budget_s is None:
            return math.inf
        return self.budget_s - (time.perf_counter() - self.start)

    def _skip_reason(self, estimate_s: float | None, reserve_s: float = 0.0) -> str | None:
        need = self.row_s if estimate_s is None else estimate_s
        if self.left() >= need + reserve_s:
            return None
        kept = f" + {reserve_s:.0f} s kept for later groups" if reserve_s else ""
        return f"skipped: time budget ({max(self.left(), 0):.0f} s left; the row needs ~{need:.0f} s{kept})"

    def build(self, group: str, factory: Callable[[], T]) -> T | None:
        """factory() or None, with a failure (or no time for it) recorded as the group's "build" row."""
        reason = self._skip_reason(None)
        if reason is None:
            try:
                return factory()
            except Exception as e:
                reason = describe(e)
        self.add(Row(group, "build", 0, self.dtype, self.device, error=reason))
        release()
        return None

    def run(self, group: str, method: str, batch: int, fn: Callable[[], torch.Tensor], *,
            ref: str | None = None, is_ref: bool = False, graph: bool = False,
            prepare: Callable[[], Any] | None = None, estimate_s: float | None = None, reserve_s: float = 0.0,
            after: Row | None = None, info: dict[str, Any] | None = None) -> Row:  # fmt: skip
        """Time fn() and record it. is_ref: keep its output and time under `ref` (else compare with them);
        graph: time replays of fn captured in a CUDA graph; prepare: called first (inside the row's guard);
        estimate_s: the row's rough cost (None: `row_s`), reserve_s: time kept for later rows; after: skip
        unless that row ran."""
        row = Row(group, method, batch, self.dtype, self.device, info=dict(info or {}))
        if graph and not self.cuda:
            row.error = "skipped: needs CUDA"
        elif after is not None and after.ms is None:
            row.error = f"skipped: {after.method} did not run"
        else:
            row.error = self._skip_reason(estimate_s, reserve_s)
        if row.error is None:
            try:
                if prepare is not None:
                    prepare()
                self._measure(row, cuda_graphed(fn) if graph else fn, ref, is_ref)
            except Exception as e:  # out of memory, compile failure, no triton, the budget alarm, ...
                row.error = describe(e)
            release()
        return self.add(row)

    def _measure(self, row: Row, fn: Callable[[], torch.Tensor], ref: str | None, is_ref: bool) -> None:
        row.ms, row.ms_min, row.first_call_ms = timed(fn, self.warmup, self.reps, self.cuda)
        if self.cuda:
            row.resident_mib = torch.cuda.memory_allocated() / 2**20
        row.peak_extra_mib = peak_mib(fn)
        out = fn().detach().float()
        row.info["finite"] = bool(torch.isfinite(out).all())
        if is_ref and ref is not None:
            self.refs[ref] = (out.clone(), row.ms)
        elif ref is not None and ref in self.refs:
            expected, ref_ms = self.refs[ref]
            diff = (out - expected).double()
            row.max_abs_err = _finite(diff.abs().max().item())
            row.rel_err = _finite((diff.norm() / expected.double().norm()).item())
            row.speedup = ref_ms / row.ms if ref_ms else None

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(fmt(row), flush=True)
        self.save()
        return row

    def save(self) -> Path:
        """Write every row so far (a cut-off run keeps what it measured)."""
        meta = {
            "benchmark": self.name, "date": dt.date.today().isoformat(), "torch": torch.__version__,
            "diffusers": package_version("diffusers"), "triton": package_version("triton"),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if self.cuda else None, "cuda": torch.version.cuda,
            "elapsed_s": round(time.perf_counter() - self.start, 1), "time_budget_s": self.budget_s,
            "config": asdict(self.config), **self.extra_meta,
        }  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": meta, "rows": [asdict(r) for r in self.rows], "summary": self.summary}
        self.path.write_text(json.dumps(payload, indent=1))
        return self.path


COLUMNS = (  # (Row field, header, width, format)
    ("ms", "ms", 9, ".2f"), ("ms_min", "ms min", 9, ".2f"), ("first_call_ms", "first ms", 9, ".0f"),
    ("resident_mib", "res MiB", 8, ".0f"), ("peak_extra_mib", "peak+MiB", 8, ".0f"),
    ("max_abs_err", "max abs", 8, ".1e"), ("rel_err", "rel err", 8, ".1e"), ("speedup", "x ref", 6, ".2f"),
)
HEADER = f"{'group':30} {'method':31} {'B':>2} " + " ".join(f"{h:>{w}}" for _, h, w, _ in COLUMNS)


def fmt(r: Row) -> str:
    cells = [f"{r.group:30} {r.method:31} {r.batch:>2}"]
    if r.error:
        return f"{cells[0]} {r.error[:110]}"
    for key, _, width, spec in COLUMNS:
        v = getattr(r, key)
        cells.append(f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}")
    return " ".join(cells)


def parity_tol(dtype: str) -> float:
    """Relative error a row may have against the reference and still count for a bar."""
    return 1e-4 if dtype == "float32" else 0.1  # bf16: 20 blocks of rounding in two operation orders


def best(rows: list[Row], group: str, batch: int, prefix: str, tol: float) -> Row | None:
    """Fastest row of `group` at `batch` whose method starts with `prefix` and that matches its reference."""
    ok = [r for r in rows if r.group == group and r.batch == batch and r.method.startswith(prefix)
          and r.ms is not None and r.info.get("finite", True) and (r.rel_err is None or r.rel_err <= tol)]
    return min(ok, key=lambda r: r.ms, default=None)  # type: ignore[arg-type, return-value]


# 2. Model variants.

def set_linear_attention_backend(model: nn.Module, backend: str) -> None:
    """Point every `LinearAttention` of `model` at `backend` (its frozen config replaced)."""
    from sana_world.nn import LinearAttention

    for m in model.modules():
        if isinstance(m, LinearAttention):
            m.cfg = dataclasses.replace(m.cfg, backend=backend)


def cuda_graphed(fn: Callable[[], torch.Tensor], warmup: int = 3) -> Callable[[], torch.Tensor]:
    """fn captured once in a CUDA graph after warm-up on a side stream; the returned callable replays it and
    returns the graph's static output (overwritten by the next replay). fn's inputs must stay in place."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def compiled(module: nn.Module, mode: str, smoke: bool) -> nn.Module:
    """torch.compile with static shapes; smoke runs only trace (backend "eager": no codegen on the CPU)."""
    if smoke:
        return torch.compile(module, backend="eager", dynamic=False)  # type: ignore[return-value]
    return torch.compile(module, mode=mode, dynamic=False)  # type: ignore[return-value]


@torch.no_grad()
def fill_zero_parameters_(model: nn.Module, std: float = 0.02) -> None:
    """Give every all-zero parameter (zero-initialised gates and projections) N(0, std²) values."""
    for p in model.parameters():
        if not p.any():
            p.normal_(0.0, std)


def caption_mask(batch: int, tokens: int, device: str) -> torch.Tensor:
    """(B, L) with the first 40 % of the tokens valid (120 of SANA's 300)."""
    mask = torch.zeros(batch, tokens, dtype=torch.long, device=device)
    mask[:, : max(1, tokens * 2 // 5)] = 1
    return mask


# 3. SANA DiT and DC-AE rows.

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


def smoke_config(out: str, time_budget_s: float | None = None) -> BenchConfig:
    return BenchConfig(preset="tiny", sprint_preset="tiny_sprint", autoencoder="f8c16_lite", latent=4,
                       caption_tokens=8, dtype="float32", warmup=1, reps=2, time_budget_s=time_budget_s,
                       row_s=0.5, compile_row_s=3.0, reserve_s=1.0, smoke=True, out=out)  # fmt: skip


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
    """diffusers, then our eager variants, then our compiled ones, for one SanaDiT preset."""
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
            r.run(preset, method, B, partial(ours, **inputs[B]), ref=f"{preset}/{B}", graph=graph,
                  prepare=partial(set_linear_attention_backend, ours, backend))  # fmt: skip
    set_linear_attention_backend(ours, "torch")
    # 3. Compiled (static shapes: each batch size compiles once), then that captured in a CUDA graph.
    comp = compiled(ours, cfg.compile_mode, cfg.smoke)
    for B in batches:
        row = r.run(preset, "ours+compile", B, partial(comp, **inputs[B]), ref=f"{preset}/{B}",
                    estimate_s=cfg.compile_row_s, reserve_s=reserve_s)  # fmt: skip
        r.run(preset, "ours+compile+cudagraph", B, partial(comp, **inputs[B]), ref=f"{preset}/{B}",
              graph=True, after=row)  # fmt: skip
    del comp, ours
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
    """Issue #6's bars from the rows; `met` is None where a row they need did not run (or missed parity)."""
    tol, bars = parity_tol(cfg.dtype), []
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
    return bars


VERDICTS = {True: " -> MET", False: " -> NOT MET", None: " -> not measured"}


def print_summary(r: Runner) -> None:
    print("\n" + HEADER + "\n" + "\n".join(fmt(row) for row in r.rows))
    for item in r.summary:  # a bar has "met" (None: not measured); other items are plain numbers
        value = f"{item['value']:.3g}" if item["value"] is not None else "-"
        verdict = VERDICTS[item["met"]] if "met" in item else ""
        print(f"{'bar' if 'met' in item else 'summary'}: {item['bar']}: {value} ({item['detail']}){verdict}")
    print(f"wrote {r.path}")


def parse_args(doc: str, argv: list[str] | None, defaults: Any,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The flags both model benchmarks share (`extra` adds a script's own)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny fp32 configs on CPU (what the tests run)")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="start no row after this many seconds; interrupt a row still running then")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed calls per row")
    p.add_argument("--reps", type=int, default=defaults.reps, help="timed calls per row (median reported)")
    p.add_argument("--compile-mode", default=defaults.compile_mode, help="torch.compile mode")
    p.add_argument("--out", default=None,
                   help=f"results folder (default {defaults.out}; --smoke: a temporary folder)")
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        p.error("needs a CUDA device; use --smoke for a CPU sanity run")
    if args.out is None:
        args.out = str(Path(tempfile.gettempdir()) / "sana_world_bench") if args.smoke else defaults.out
    return args


def setup(smoke: bool) -> None:
    """No autograd; quiet diffusers; smoke runs on CPU use triton's interpreter for the Triton rows."""
    if smoke and not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"  # triton's own switch, read at import (as linear_attention.py)
    from diffusers.utils import logging as diffusers_logging  # (imports triton where it is installed)

    diffusers_logging.set_verbosity_error()
    torch.set_grad_enabled(False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, BenchConfig)
    if args.smoke:
        cfg = smoke_config(args.out, args.time_budget_s)
    else:
        cfg = BenchConfig(warmup=args.warmup, reps=args.reps, compile_mode=args.compile_mode,
                          time_budget_s=args.time_budget_s, out=args.out)  # fmt: skip
    setup(cfg.smoke)
    r = Runner("sana_image", cfg, budget_s=cfg.time_budget_s, warmup=cfg.warmup, reps=cfg.reps,
               dtype=cfg.dtype, row_s=cfg.row_s, out=cfg.out)  # fmt: skip
    print(f"{r.device} {torch.cuda.get_device_name(0) if r.cuda else ''} torch {torch.__version__} "
          f"diffusers {package_version('diffusers')} {cfg.dtype}\n{HEADER}", flush=True)
    try:
        bench_dit(r, cfg, cfg.preset, cfg.batches, reserve_s=2 * cfg.reserve_s)
        bench_dit(r, cfg, cfg.sprint_preset, (1,), reserve_s=cfg.reserve_s)
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
