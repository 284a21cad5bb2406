"""benchmarks/dream_resets.py end to end on the shipped model (2 streams, one reset per step): both ways'
rows are written, and without resets the two ways are the same single pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_dream_resets_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCHMARKS / "dream_resets.py"), "--batch", "2", "--episodes", "0", "2",
           "--iters", "1", "--out", str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    assert "ragged" in out and "grouped (2 passes)" in out
    (path,) = tmp_path.glob("dream_resets_*_b2_fp32.json")
    rows = json.loads(path.read_text())["rows"]
    assert [(r["episode_steps"], r["resets_per_step"], r["groups"]) for r in rows] == [(0, 0, 1), (2, 1, 2)]
    assert rows[0]["ragged_ms"] == rows[0]["grouped_ms"] > 0
    assert all(r["ragged_steps_per_s"] > 0 and r["grouped_steps_per_s"] > 0 for r in rows)
