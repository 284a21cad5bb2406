"""ReLU linear attention speed: Triton kernels vs the torch path (eager, torch.compile) vs softmax SDPA.

    python benchmarks/linear_attention.py                  # CUDA: SANA-1.6B heads, 1K / 4K / 16K tokens, bf16
    python benchmarks/linear_attention.py --smoke          # CPU sanity run (tiny, triton interpreted, tmp out)

Each row times one attention call on (B, H, N, d) inputs laid out as `LinearAttention` makes them (head
views of one (B, N, 3·H·d) qkv tensor), from `--preset`'s head layout (sana_1600m: 70 heads of 32):

- ``fwd``: inference forward under ``torch.no_grad``;
- ``fwd+bwd``: forward, then ``torch.autograd.grad`` for q, k, v from a fixed output gradient.

Methods: ``torch`` (the reference `relu_linear_attention`), ``torch.compile`` of it, ``triton``
(`backend="triton"`), and ``sdpa`` (`F.scaled_dot_product_attention`, softmax attention over the same q, k,
v, for scale). CUDA times come from CUDA events: warm-up, then the median (and min) of `--reps` calls.
``peak_mib`` is the peak allocation during one call above what was allocated before it. ``max_err`` is the
largest difference from the torch path's output (``fwd``) or input gradients (``fwd+bwd``). On CUDA a
short sweep of kernel launch settings (tile tokens × warps) runs at the largest size.

Prints a table and writes ``<out>/linear_attention_<hardware>_<YYYYMMDD>.json`` (hardware named as in
render.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

METHODS = ("torch", "torch.compile", "triton", "sdpa")
MODES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run.

    Attributes:
        preset: SanaDiT preset whose linear-attention head layout is used (heads = dim // head_dim).
        batch: batch size B.
        tokens: sequence lengths N.
        dtype: input dtype ("bfloat16", "float16" or "float32").
        eps: normaliser eps.
        warmup: untimed calls before timing (the first compiled call is timed separately).
        reps: timed calls; the median is reported.
        methods: which of METHODS to run.
        sweep: also time triton launch settings (block_n × num_warps) at the largest N (CUDA only).
        smoke: tiny CPU-sized run (the triton rows use triton's interpreter when there is no CUDA).
        out: results folder.
    """

    preset: str = "sana_1600m"
    batch: int = 2
    tokens: tuple[int, ...] = (1024, 4096, 16384)
    dtype: str = "bfloat16"
    eps: float = 1e-15
    warmup: int = 5
    reps: int = 30
    methods: tuple[str, ...] = METHODS
    sweep: bool = True
    smoke: bool = False
    out: str = str(Path(__file__).parent / "results")


@dataclass
class Row:
    method: str
    mode: str
    batch: int
    heads: int
    head_dim: int
    tokens: int
    dtype: str
    device: str
    ms: float | None = None  # median
    ms_min: float | None = None
    first_call_ms: float | None = None  # includes compilation / autotuning where there is any
    peak_mib: float | None = None
    max_err: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def smoke_config(out: str) -> BenchConfig:
    return BenchConfig(preset="tiny", batch=1, tokens=(64, 100), dtype="float32", warmup=1, reps=2,
                       methods=("torch", "triton", "sdpa"), sweep=False, smoke=True, out=out)


def head_layout(preset: str) -> tuple[int, int]:
    from sana_world.generators.image.dit import PRESETS

    cfg = PRESETS[preset]()
    return cfg.heads, cfg.head_dim


def make_inputs(B: int, H: int, N: int, d: int, dtype: torch.dtype, device: str, grad: bool):
    """Head views of one qkv tensor, as LinearAttention makes them: 3 × (B, H, N, d), (B, N, H, d) strides."""
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(B, N, 3, H, d, generator=g, device=device).to(dtype).requires_grad_(grad)
    q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))
    dout = torch.randn(B, H, N, d, generator=g, device=device).to(dtype)
    return x, (q, k, v), dout


def attention_fn(method: str, eps: float, compiled: dict[str, Callable]) -> Callable:
    from sana_world.nn import relu_linear_attention

    if method == "torch":
        return lambda q, k, v: relu_linear_attention(q, k, v, eps=eps)
    if method == "triton":
        return lambda q, k, v: relu_linear_attention(q, k, v, eps=eps, backend="triton")
    if method == "torch.compile":
        if "fn" not in compiled:
            compiled["fn"] = torch.compile(lambda q, k, v: relu_linear_attention(q, k, v, eps=eps),
                                           dynamic=False, fullgraph=True)
        return compiled["fn"]
    if method == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def step_fn(attn: Callable, mode: str, x: torch.Tensor, qkv: tuple, dout: torch.Tensor) -> Callable[[], Any]:
    if mode == "fwd":
        def fwd() -> torch.Tensor:
            with torch.no_grad():
                return attn(*qkv)
        return fwd

    def fwd_bwd() -> torch.Tensor:
        out = attn(*qkv)
        (dx,) = torch.autograd.grad(out, x, dout)
        return dx
    return fwd_bwd


def timed(fn: Callable[[], Any], warmup: int, reps: int, cuda: bool) -> tuple[float, float, float]:
    """(median, min, first-call) milliseconds; CUDA events on a GPU, perf_counter on CPU."""
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), first


def peak_mib(fn: Callable[[], Any]) -> float | None:
    """Peak CUDA allocation of one call above what was allocated before it."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def run_row(cfg: BenchConfig, method: str, mode: str, N: int, H: int, d: int, device: str,
            compiled: dict[str, Callable], reference: dict[tuple[str, int], torch.Tensor],
            kernel_config: Any = None) -> Row:
    dtype = getattr(torch, cfg.dtype)
    row = Row(method, mode, cfg.batch, H, d, N, cfg.dtype, device)
    cuda = device == "cuda"
    try:
        x, qkv, dout = make_inputs(cfg.batch, H, N, d, dtype, device, grad=mode == "fwd+bwd")
        if kernel_config is not None:
            from sana_world.kernels import triton_relu_linear_attention

            row.config = asdict(kernel_config)
            attn = lambda q, k, v: triton_relu_linear_attention(q, k, v, cfg.eps, kernel_config)  # noqa: E731
        else:
            attn = attention_fn(method, cfg.eps, compiled)
        fn = step_fn(attn, mode, x, qkv, dout)
        row.ms, row.ms_min, row.first_call_ms = timed(fn, cfg.warmup, cfg.reps, cuda)
        row.peak_mib = peak_mib(fn)
        result = fn().float()
        if method == "torch" and kernel_config is None:
            reference[(mode, N)] = result
        elif method != "sdpa" and (mode, N) in reference:
            row.max_err = (result - reference[(mode, N)]).abs().max().item()
        del x, qkv, dout, result
    except Exception as e:  # a row that cannot run (no triton, out of memory, compile failure) is recorded
        row.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    if cuda:
        torch.cuda.empty_cache()
    return row


def sweep_rows(cfg: BenchConfig, N: int, H: int, d: int, device: str,
               reference: dict[tuple[str, int], torch.Tensor]) -> list[Row]:
    from sana_world.kernels import LinearAttentionKernelConfig

    rows = []
    for block_n in (32, 64, 128):
        for num_warps in (2, 4, 8):
            kc = LinearAttentionKernelConfig(block_n=block_n, num_warps=num_warps)
            for mode in MODES:
                rows.append(run_row(cfg, "triton-sweep", mode, N, H, d, device, {}, reference, kc))
                print(fmt(rows[-1]), flush=True)
    return rows


def hardware() -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from results_io import hardware as named  # one naming convention for every result file

    return named()


def save(cfg: BenchConfig, rows: list[Row]) -> Path:
    """Write the rows so far (also called mid-run, so a cut-off run keeps what it measured)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"linear_attention_{hardware()}_{dt.date.today():%Y%m%d}.json"
    meta = {"benchmark": "linear_attention", "date": dt.date.today().isoformat(), "torch": torch.__version__,
            "triton": _triton_version(), "python": sys.version.split()[0], "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1", "config": asdict(cfg)}
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    return path


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


HEADER = (f"{'method':14} {'mode':8} {'N':>6} {'ms':>9} {'ms min':>9} {'first ms':>9} {'peak MiB':>9} "
          f"{'max err':>9}  config")


def fmt(r: Row) -> str:
    if r.error:
        return f"{r.method:14} {r.mode:8} {r.tokens:>6} unavailable: {r.error[:90]}"

    def num(v: float | None, spec: str) -> str:
        return format(v, spec) if v is not None else f"{'-':>9}"

    cfg = " ".join(f"{k}={v}" for k, v in r.config.items() if k in ("block_n", "num_warps"))
    return (f"{r.method:14} {r.mode:8} {r.tokens:>6} {num(r.ms, '9.3f')} {num(r.ms_min, '9.3f')} "
            f"{num(r.first_call_ms, '9.1f')} {num(r.peak_mib, '9.1f')} {num(r.max_err, '9.2e')}  {cfg}")


def speedups(rows: list[Row]) -> list[str]:
    """Median time of each other method over triton's, per (mode, N): above 1 means triton is faster."""
    ms = {(r.method, r.mode, r.tokens): r.ms for r in rows if r.ms is not None and r.method != "triton-sweep"}
    lines = []
    for (method, mode, n), t in sorted(ms.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        tri = ms.get(("triton", mode, n))
        if method != "triton" and tri:
            lines.append(f"{mode:8} N={n:<6} triton speed-up over {method:14} {t / tri:7.3g}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny fp32 run that also works on CPU (triton interpreted)")
    p.add_argument("--preset", default=BenchConfig.preset, help="SanaDiT preset for heads × head_dim")
    p.add_argument("--batch", type=int, default=BenchConfig.batch, help="batch size")
    p.add_argument("--tokens", type=int, nargs="+", default=list(BenchConfig.tokens), help="sequence lengths")
    p.add_argument("--dtype", default=BenchConfig.dtype, choices=("bfloat16", "float16", "float32"),
                   help="input dtype")
    p.add_argument("--reps", type=int, default=BenchConfig.reps, help="timed calls per row (median reported)")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="untimed calls per row")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to time")
    p.add_argument("--no-sweep", action="store_true", help="skip the triton launch-setting sweep")
    p.add_argument("--out", default=None,
                   help=f"results folder (default {BenchConfig.out}; --smoke: a temporary folder)")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    out = args.out or (str(Path(tempfile.gettempdir()) / "sana_world_bench") if args.smoke else BenchConfig.out)
    if args.smoke:
        cfg = smoke_config(out)
    else:
        if not cuda:
            p.error("needs a CUDA device; use --smoke for a CPU sanity run")
        cfg = BenchConfig(preset=args.preset, batch=args.batch, tokens=tuple(args.tokens), dtype=args.dtype,
                          warmup=args.warmup, reps=args.reps, methods=tuple(args.methods),
                          sweep=not args.no_sweep, out=out)
    device = "cuda" if cuda else "cpu"
    if not cuda and "triton" not in sys.modules:
        # triton's own switch for its CPU interpreter, read at import and first launch: smoke runs only
        os.environ["TRITON_INTERPRET"] = "1"
    torch.manual_seed(0)
    H, d = head_layout(cfg.preset)
    print(f"{cfg.preset}: B={cfg.batch} heads={H} head_dim={d} {cfg.dtype} on "
          f"{torch.cuda.get_device_name(0) if cuda else 'cpu'} (torch {torch.__version__}, "
          f"triton {_triton_version()}{', interpreted' if not cuda and _triton_version() else ''})")
    print(HEADER, flush=True)

    # 1. Every method × mode × N (the torch row first: it is the reference for max_err).
    rows: list[Row] = []
    compiled: dict[str, Callable] = {}
    reference: dict[tuple[str, int], torch.Tensor] = {}
    methods = ("torch",) + tuple(m for m in cfg.methods if m != "torch")
    for N in cfg.tokens:
        for mode in MODES:
            for method in methods:
                rows.append(run_row(cfg, method, mode, N, H, d, device, compiled, reference))
                print(fmt(rows[-1]), flush=True)
            save(cfg, rows)
        reference.clear()

    # 2. Triton launch settings at the largest N.
    if cfg.sweep and cuda and "triton" in cfg.methods:
        N = max(cfg.tokens)
        for mode in MODES:
            run_row(cfg, "torch", mode, N, H, d, device, compiled, reference)  # reference for max_err
        print(f"\nsweep at N={N}:\n{HEADER}")
        rows += sweep_rows(cfg, N, H, d, device, reference)

    path = save(cfg, rows)
    print("\n" + HEADER + "\n" + "\n".join(fmt(r) for r in rows if r.method != "triton-sweep"))
    print("\n" + "\n".join(speedups(rows)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
