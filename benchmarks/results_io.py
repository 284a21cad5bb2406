"""Where a benchmark's results go: ``<out>/<benchmark>_<hardware>_<YYYYMMDD><suffix>.json`` (the naming every
file in ``results/`` follows), written as indented JSON; the checks every script makes before it
measures (the device it was asked for exists); and the timing loops the env benchmarks share."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch


def hardware(device: str | torch.device | None = None) -> str:
    """The ``<hardware>`` of a results file: the CUDA card's name (``nvidia-h100-80gb-hbm3``) for a CUDA
    ``device`` (None: whenever this machine has one), else ``cpu<cores>`` (``cpu2``)."""
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda:
        name = torch.cuda.get_device_name(None if device is None else torch.device(device))
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"cpu{os.cpu_count()}"


def check_device(parser: argparse.ArgumentParser, name: str, what: str | None = None) -> torch.device:
    """``name`` as a torch device this machine has; else ``parser.error`` (usage and a one-line reason, exit
    status 2), so a script asked for CUDA on a machine without it stops before it loads anything. ``what``:
    how the error names the request (default ``--device <name>``)."""
    what = what or f"--device {name}"
    try:
        dev = torch.device(name)
    except RuntimeError:
        parser.error(f"{what}: not a torch device (cpu, cuda, cuda:1, ...)")
    if dev.type not in ("cpu", "cuda"):
        parser.error(f"{what}: the benchmarks run on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"{what} needs a CUDA device, and this machine has none "
                     "(torch.cuda.is_available() is False)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        parser.error(f"{what}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def write_result(out: str | Path, benchmark: str, hardware: str, result: dict[str, Any], suffix: str = "",
                 quiet: bool = False) -> Path:
    """Write ``result`` under folder ``out`` (made if missing) and return the file's path. A result whose
    ``rows`` are empty is refused (``ValueError``): a run that measured nothing must not replace the day's
    file of one that did."""
    path = Path(out) / f"{benchmark}_{hardware}_{date.today():%Y%m%d}{suffix}.json"
    if "rows" in result and not result["rows"]:
        raise ValueError(f"{benchmark}: no rows measured, so nothing written (would have replaced {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if not quiet:
        print("wrote", path)
    return path


def sync() -> None:
    """Wait for the CUDA work queued so far (a timing of GPU work ends here); nothing without CUDA."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def steps_per_s(step: Callable[[], object], steps: int, n: int, warmup: int = 3) -> float:
    """``n`` env steps per call: env steps/s of ``steps`` calls of ``step`` after ``warmup`` calls, CUDA
    work included."""
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * n / (time.perf_counter() - t0)


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn`` in ms, CUDA work included (the first call warms up when
    ``repeats`` > 1: the minimum ignores it)."""
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)
