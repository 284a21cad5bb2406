"""The row machinery both paper-scale model benchmarks use (``sana_image.py``, ``world_model.py``): a row
per (group, method, batch) timed with CUDA events after warm-up, compared with its reference output, under
a time budget (a row that would not fit is skipped, one still running when it runs out is interrupted),
its failure recorded instead of raised; the JSON rewritten after every row; the shared flags and summary.
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
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from linear_attention import hardware, peak_mib, timed  # noqa: E402  (one timing and naming convention)

T = TypeVar("T")

# 1. Rows and the runner.

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
