"""benchmarks/sdpa_window.py on a GPU (small batch): every backend row is timed or says why it cannot run,
and the split calls equal the masked one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sdpa_window_runs(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(BENCHMARKS / "sdpa_window.py"), "--batch", "4", "--out", str(tmp_path)],
                   check=True, timeout=300)  # fmt: skip
    (path,) = tmp_path.glob("sdpa_window_*.json")
    d = json.loads(path.read_text())
    assert d["max_abs_diff_split_vs_masked"] < 2e-2
    assert len(d["rows"]) == 8 and all(("ms" in r) != ("error" in r) for r in d["rows"])
