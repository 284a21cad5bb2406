"""benchmarks/plot_speed.py on the committed H100 results: it draws a PNG, and refuses two machines' files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SPEED = RESULTS / "dream_env_nvidia-h100-80gb-hbm3_20261206_compiled.json"
FLOPS = RESULTS / "step_flops_nvidia-h100-80gb-hbm3_20261206_b512_bf16.json"


def _run(speed: Path, flops: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ROOT / "benchmarks" / "plot_speed.py", "--speed", speed, "--flops", flops,
                           "--out", out], capture_output=True, text=True, timeout=120)


def test_plot_from_committed_results(tmp_path: Path) -> None:
    out = tmp_path / "speed.png"
    res = _run(SPEED, FLOPS, out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_two_machines_are_refused(tmp_path: Path) -> None:
    other = json.loads(FLOPS.read_text())
    other["hardware"] = "cpu2"
    (tmp_path / "flops.json").write_text(json.dumps(other))
    res = _run(SPEED, tmp_path / "flops.json", tmp_path / "x.png")
    assert res.returncode != 0 and "one machine only" in res.stderr and not (tmp_path / "x.png").exists()
