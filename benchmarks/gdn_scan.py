"""Bidirectional GDN scan speed: the Triton kernels vs the torch path (eager, torch.compile).

    python benchmarks/gdn_scan.py --time-budget-s 75     # CUDA: SANA-WM 2.66B at 161 frames + a small shape
    python benchmarks/gdn_scan.py --smoke                # CPU sanity run (tiny, triton interpreted, tmp out)

One row times one `bidirectional_gdn` call on (B, H, T, S, D) inputs laid out as `GDNCameraAttention`
makes them (`_to_frames` views of (B, T·S, H, D) tensors, β a view of (B, T·S, H), decay of (B, T, H)):

- shapes: ``wm2600m-161f`` is SANA-WM 2.66B at 161 video frames (batch 1, 20 heads of 112, 21 latent
  frames of 22×40 = 880 tokens; 15 GDN blocks each run a ``main`` and a ``camera`` call); ``rooms-b8`` is
  the shipped rooms model (4 heads of 64, 64 tokens a frame) at batch 8 over 16 frames;
- branch ``main``: RoPE'd q̃, k̃ for the numerator and the normaliser on the plain q, k; ``camera``: numerator
  only, no rotation;
- modes ``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (``torch.autograd.grad`` for every input);
- methods ``torch`` (the reference), ``torch.compile`` of it (``dynamic=False``, large shape only),
  ``triton`` (fp32 "ieee" dots, the default) and ``triton-tf32x3`` (``GDNKernelConfig(input_precision=
  "tf32x3")``).

CUDA times come from CUDA events: warm-up, then the median (and min) of `--reps` calls; ``first_call_ms``
includes compilation. ``peak_mib`` is the peak allocation of one call above what was allocated before it.
``max_rel_err`` is the largest |difference| over the torch path's output (``fwd``) or its input gradients
(``fwd+bwd``), each relative to that tensor's largest magnitude. Rows run in order of importance and stop
at `--time-budget-s` (the rest are recorded as skipped); a short sweep of launch settings (tokens per tile ×
head-dim slice per dot) at the large shape closes the run if time is left.

Prints a table and writes ``<out>/gdn_scan_<hardware>_<YYYYMMDD>.json`` (hardware named as in render.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
# one timing, memory and naming convention with the linear-attention benchmark
from linear_attention import _triton_version, hardware, peak_mib, timed  # noqa: E402

METHODS = ("torch", "triton", "triton-tf32x3", "torch.compile")
MODES = ("fwd", "fwd+bwd")
BRANCHES = ("main", "camera")
# name -> (B, H, T, S, D)
SHAPES = {"wm2600m-161f": (1, 20, 21, 880, 112), "rooms-b8": (8, 4, 16, 64, 64), "tiny": (1, 2, 3, 24, 16)}


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run.

    Attributes:
        shapes: keys of SHAPES, the first one is the large shape (compile rows and sweep run there only).
        dtype: dtype of q, k, v, β ("bfloat16", "float16" or "float32"); decay is fp32 as GDNGates makes it.
        warmup: untimed calls before timing.
        reps: timed calls; the median is reported.
        methods: which of METHODS to run.
        sweep: also time triton launch settings at the large shape (CUDA only).
        time_budget_s: rows that would start after this many seconds are recorded as skipped.
        smoke: tiny CPU-sized run (triton rows use triton's interpreter when there is no CUDA).
        out: results folder.
    """

    shapes: tuple[str, ...] = ("wm2600m-161f", "rooms-b8")
    dtype: str = "bfloat16"
    warmup: int = 3
    reps: int = 10
    methods: tuple[str, ...] = METHODS
    sweep: bool = True
    time_budget_s: float = 150.0
    smoke: bool = False
    out: str = str(Path(__file__).parent / "results")


@dataclass
class Row:
    shape: str
    branch: str
    method: str
    mode: str
    dims: tuple[int, ...]  # (B, H, T, S, D)
    dtype: str
    device: str
    ms: float | None = None  # median
    ms_min: float | None = None
    first_call_ms: float | None = None
    peak_mib: float | None = None
    max_rel_err: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def make_inputs(dims: tuple[int, ...], branch: str, dtype: torch.dtype, device: str, grad: bool):
    """(leaves, kwargs of bidirectional_gdn, dout): model-layout views of random leaf tensors."""
    B, H, T, S, D = dims
    g = torch.Generator(device).manual_seed(0)

    def leaf(*shape: int, scale: float = 1.0, positive: bool = False) -> torch.Tensor:
        x = torch.rand(*shape, generator=g, device=device) if positive else torch.randn(
            *shape, generator=g, device=device)
        return (x * scale).to(dtype).requires_grad_(grad)

    def frames(x: torch.Tensor) -> torch.Tensor:  # (B, T·S, H, D) -> (B, H, T, S, D)
        return x.unflatten(1, (T, S)).permute(0, 3, 1, 2, 4)

    key_scale = (D * S) ** -0.5
    leaves = {"q": leaf(B, T * S, H, D, positive=True),
              "k": leaf(B, T * S, H, D, scale=key_scale, positive=True),
              "v": leaf(B, T * S, H, D), "beta": leaf(B, T * S, H, positive=True)}
    decay = (0.5 + 0.5 * torch.rand(B, T, H, generator=g, device=device)).requires_grad_(grad)
    leaves["decay"] = decay
    kw = {"q": frames(leaves["q"]), "k": frames(leaves["k"]), "v": frames(leaves["v"]),
          "beta": leaves["beta"].unflatten(1, (T, S)).permute(0, 3, 1, 2), "decay": decay.transpose(1, 2),
          "denominator": branch == "main"}
    if branch == "main":
        leaves["q_rot"] = leaf(B, T * S, H, D)
        leaves["k_rot"] = leaf(B, T * S, H, D, scale=key_scale)
        kw["q_rot"], kw["k_rot"] = frames(leaves["q_rot"]), frames(leaves["k_rot"])
    dout = torch.randn(B, H, T, S, D, generator=g, device=device)
    return leaves, kw, dout


def gdn_fn(method: str, compiled: dict[str, Callable]) -> Callable[..., torch.Tensor]:
    from sana_world.kernels.gdn_scan import GDNKernelConfig, triton_bidirectional_gdn
    from sana_world.nn.gdn import bidirectional_gdn

    if method == "torch":
        return bidirectional_gdn
    if method == "triton":
        return lambda **kw: bidirectional_gdn(**kw, backend="triton")
    if method == "triton-tf32x3":
        return lambda **kw: triton_bidirectional_gdn(**kw, config=GDNKernelConfig(input_precision="tf32x3"))
    if method == "torch.compile":
        if "fn" not in compiled:
            compiled["fn"] = torch.compile(bidirectional_gdn, dynamic=False, fullgraph=True)
        return compiled["fn"]
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def step_fn(fn: Callable, mode: str, leaves: dict, kw: dict, dout: torch.Tensor) -> Callable[[], Any]:
    if mode == "fwd":
        def fwd() -> torch.Tensor:
            with torch.no_grad():
                return fn(**kw)
        return fwd

    def fwd_bwd() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(**kw), list(leaves.values()), dout)
    return fwd_bwd


def rel_err(result: Any, reference: Any) -> float:
    pairs = zip(result, reference) if isinstance(result, tuple) else [(result, reference)]
    return max(((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()
               for a, b in pairs)


def run_row(cfg: BenchConfig, shape: str, branch: str, method: str, mode: str, device: str,
            compiled: dict[str, Callable], reference: dict[tuple, Any], kernel_config: Any = None) -> Row:
    dims = SHAPES[shape]
    row = Row(shape, branch, method, mode, dims, cfg.dtype, device)
    cuda = device == "cuda"
    try:
        leaves, kw, dout = make_inputs(dims, branch, getattr(torch, cfg.dtype), device, mode == "fwd+bwd")
        if kernel_config is not None:
            from sana_world.kernels.gdn_scan import triton_bidirectional_gdn

            row.config = asdict(kernel_config)

            def fn(**k: Any) -> torch.Tensor:
                return triton_bidirectional_gdn(**k, config=kernel_config)
        else:
            fn = gdn_fn(method, compiled)
        step = step_fn(fn, mode, leaves, kw, dout)
        row.ms, row.ms_min, row.first_call_ms = timed(step, cfg.warmup, cfg.reps, cuda)
        row.peak_mib = peak_mib(step)
        result = step()
        key = (shape, branch, mode)
        if method == "torch" and kernel_config is None:
            reference[key] = result
        elif key in reference:
            row.max_rel_err = rel_err(result, reference[key])
        del leaves, kw, dout, result
    except Exception as e:  # noqa: BLE001 - a row that cannot run (no triton, OOM, compile error) is recorded
        row.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    if cuda:
        torch.cuda.empty_cache()
    return row


def save(cfg: BenchConfig, rows: list[Row]) -> Path:
    """Write the rows so far (also called mid-run, so a cut-off run keeps what it measured)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gdn_scan_{hardware()}_{dt.date.today():%Y%m%d}.json"
    meta = {"benchmark": "gdn_scan", "date": dt.date.today().isoformat(), "torch": torch.__version__,
            "triton": _triton_version(), "python": sys.version.split()[0], "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1", "config": asdict(cfg),
            "shapes": {k: SHAPES[k] for k in cfg.shapes}}
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    return path


HEADER = (f"{'shape':13} {'branch':7} {'method':14} {'mode':8} {'ms':>9} {'ms min':>9} {'first ms':>9} "
          f"{'peak MiB':>9} {'max rel':>9}  config")


def fmt(r: Row) -> str:
    head = f"{r.shape:13} {r.branch:7} {r.method:14} {r.mode:8}"
    if r.error:
        return f"{head} unavailable: {r.error[:90]}"

    def num(v: float | None, spec: str) -> str:
        return format(v, spec) if v is not None else f"{'-':>9}"

    cfg = " ".join(f"{k}={v}" for k, v in r.config.items() if k in ("block_n", "block_k"))
    return (f"{head} {num(r.ms, '9.3f')} {num(r.ms_min, '9.3f')} {num(r.first_call_ms, '9.1f')} "
            f"{num(r.peak_mib, '9.1f')} {num(r.max_rel_err, '9.2e')}  {cfg}")


def speedups(rows: list[Row]) -> list[str]:
    """Median time of each other method over triton's per (shape, branch, mode): above 1, triton is faster."""
    ms = {(r.shape, r.branch, r.mode, r.method): r.ms for r in rows
          if r.ms is not None and r.method != "sweep"}
    lines = []
    for (shape, branch, mode, method), t in sorted(ms.items()):
        tri = ms.get((shape, branch, mode, "triton"))
        if method != "triton" and tri:
            lines.append(f"{shape:13} {branch:7} {mode:8} triton speed-up over {method:14} {t / tri:7.3g}x")
    return lines


def plan(cfg: BenchConfig) -> list[tuple[str, str, str, str]]:
    """(shape, branch, method, mode) in order of importance, torch first in each group: the large shape's
    main branch (torch, triton, torch.compile), its camera branch, tf32x3, then the other shapes."""
    big, rows = cfg.shapes[0], []
    core = [m for m in ("torch", "triton", "torch.compile") if m == "torch" or m in cfg.methods]
    for branch in BRANCHES:
        rows += [(big, branch, m, mode) for m in core for mode in MODES]
    if "triton-tf32x3" in cfg.methods:
        rows += [(big, b, "triton-tf32x3", mode) for b in BRANCHES for mode in MODES]
    rest = [m for m in ("torch", "triton", "triton-tf32x3") if m == "torch" or m in cfg.methods]
    rows += [(s, b, m, mode) for s in cfg.shapes[1:] for b in BRANCHES for mode in MODES for m in rest]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny fp32 run that also works on CPU (interpreted)")
    p.add_argument("--shapes", nargs="+", default=list(BenchConfig.shapes), choices=list(SHAPES),
                   help="shapes to time; the first gets the compile rows and the sweep")
    p.add_argument("--dtype", default=BenchConfig.dtype, choices=("bfloat16", "float16", "float32"))
    p.add_argument("--reps", type=int, default=BenchConfig.reps, help="timed calls per row (median reported)")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="untimed calls per row")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to time")
    p.add_argument("--no-sweep", action="store_true", help="skip the triton launch-setting sweep")
    p.add_argument("--time-budget-s", type=float, default=BenchConfig.time_budget_s,
                   help="rows that would start later are recorded as skipped")
    p.add_argument("--out", default=None,
                   help=f"results folder (default {BenchConfig.out}; --smoke: a temporary folder)")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    tmp = str(Path(tempfile.gettempdir()) / "sana_world_bench")
    out = args.out or (tmp if args.smoke else BenchConfig.out)
    if args.smoke:
        cfg = BenchConfig(shapes=("tiny",), dtype="float32", warmup=0, reps=1,
                          methods=("torch", "triton"), sweep=False, smoke=True, out=out)
    else:
        if not cuda:
            p.error("needs a CUDA device; use --smoke for a CPU sanity run")
        cfg = BenchConfig(shapes=tuple(args.shapes), dtype=args.dtype, warmup=args.warmup, reps=args.reps,
                          methods=tuple(args.methods), sweep=not args.no_sweep,
                          time_budget_s=args.time_budget_s, out=out)
    device = "cuda" if cuda else "cpu"
    if not cuda and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"  # triton's own switch for its CPU interpreter: smoke runs only
    print(f"GDN scan, {cfg.dtype} on {torch.cuda.get_device_name(0) if cuda else 'cpu'} (torch "
          f"{torch.__version__}, triton {_triton_version()}{', interpreted' if not cuda else ''})")
    print(HEADER, flush=True)

    # 1. Every planned row until the budget runs out (the torch row of each group is the error reference).
    t_start = time.perf_counter()
    rows: list[Row] = []
    compiled: dict[str, Callable] = {}
    reference: dict[tuple, Any] = {}
    for shape, branch, method, mode in plan(cfg):
        if time.perf_counter() - t_start > cfg.time_budget_s:
            row = Row(shape, branch, method, mode, SHAPES[shape], cfg.dtype, device,
                      error="skipped: time budget")
        else:
            row = run_row(cfg, shape, branch, method, mode, device, compiled, reference)
        rows.append(row)
        print(fmt(row), flush=True)
        save(cfg, rows)

    # 2. Launch settings at the large shape, main branch, while time is left.
    if cfg.sweep and cuda and "triton" in cfg.methods:
        from sana_world.kernels.gdn_scan import GDNKernelConfig

        print(f"\nsweep ({cfg.shapes[0]}, main):")
        for block_n in (16, 32, 64):
            for block_k in (16, 32):
                for mode in MODES:
                    if time.perf_counter() - t_start > cfg.time_budget_s:
                        break
                    kc = GDNKernelConfig(block_n=block_n, block_k=block_k)
                    rows.append(run_row(cfg, cfg.shapes[0], "main", "sweep", mode, device, {}, reference, kc))
                    print(fmt(rows[-1]), flush=True)
        save(cfg, rows)

    path = save(cfg, rows)
    print("\n" + HEADER + "\n" + "\n".join(fmt(r) for r in rows if r.method != "sweep"))
    print("\n" + "\n".join(speedups(rows)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
