"""benchmarks/sdpa_window.py: every backend row is timed or says why it cannot run, and every way of
computing an attention equals its reference (the split calls the masked one; the ragged bias and the ragged
split with key-only masks the per-row token mask)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(tmp_path: Path, *args: str) -> dict:
    subprocess.run([sys.executable, str(BENCHMARKS / "sdpa_window.py"), *args, "--out", str(tmp_path)],
                   check=True, timeout=300)  # fmt: skip
    (path,) = tmp_path.glob("sdpa_window_*.json")
    return json.loads(path.read_text())


def test_sdpa_window_cpu(tmp_path: Path) -> None:
    d = _run(tmp_path, "--device", "cpu", "--batch", "6", "--filling", "4")
    assert set(d["max_abs_diff"]) == {"split", "ragged rows bias", "ragged split key mask"}
    assert max(d["max_abs_diff"].values()) < 1e-5  # fp32
    assert [r["way"] for r in d["rows"]] == ["masked", "split", "ragged rows mask", "ragged rows bias",
                                             "ragged split key mask"]  # fmt: skip
    assert all(r["ms"] > 0 for r in d["rows"])


def test_frame_masks_fill_like_a_restarted_stream() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from sdpa_window import frame_masks

    fm, valid = frame_masks(5, 3, "cpu")
    assert fm.sum(1).tolist() == [12, 12]  # each query frame sees 12 of the 13 key frames
    assert valid.sum(1).tolist() == [3, 4, 5, 13, 13]  # sink + r recent + both frames of the pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sdpa_window_runs(tmp_path: Path) -> None:
    d = _run(tmp_path, "--batch", "4", "--filling", "2")
    assert max(d["max_abs_diff"].values()) < 2e-2  # bf16
    assert len(d["rows"]) == 25 and all(("ms" in r) != ("error" in r) for r in d["rows"])
