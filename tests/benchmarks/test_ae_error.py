"""benchmarks/ae_error.py: the error statistics say where the error is (a line drawn wrong is all edge error),
and a tiny run scores the zoo autoencoder between the learning-free 8x baseline and a perfect copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from ae_error import edge_mask, pooled, scores  # noqa: E402


def test_an_error_on_a_line_is_edge_error() -> None:
    rgb = torch.full((2, 32, 32, 3), 100, dtype=torch.uint8)
    rgb[:, 10] = 200  # a one-pixel bright line across each frame
    edges = edge_mask(rgb, 20.0)
    assert edges[:, 9:11].all() and not edges[:, 20:].any()
    recon = rgb.clone()
    recon[:, 10] = 150  # the line drawn half as bright: every wrong pixel lies on an edge
    s = scores(recon, rgb, edges)
    assert s["edge_share_of_squared_error"] == pytest.approx(1.0)
    assert s["psnr_if_edges_exact_db"] > 100 and s["psnr_if_flat_exact_db"] == pytest.approx(s["psnr_db"])
    flat = rgb.clone()
    flat[:, 20:] = 110  # now the error is off the edges only
    assert scores(flat, rgb, edges)["edge_share_of_squared_error"] == 0.0
    assert scores(rgb, rgb, edges)["psnr_db"] > 100  # an exact copy
    assert pooled(rgb, 2).shape == rgb.shape and (pooled(rgb, 2).float() - rgb.float()).abs().max() > 10


@pytest.mark.slow
def test_tiny_run_ranks_the_zoo_autoencoder(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    args = [sys.executable, BENCHMARKS / "ae_error.py", "--trajectories", "1", "--out", tmp_path]
    res = subprocess.run(args, capture_output=True, text=True, cwd=BENCHMARKS, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads(next(tmp_path.glob("ae_error_*.json")).read_text())
    rows = {r["reconstruction"]: r for r in data["rows"]}
    assert data["frames"] == 16 and 0 < data["edge_pixel_fraction"] < 0.5
    assert 20.0 < rows["zoo"]["psnr_db"] < 40.0
    assert rows["zoo"]["psnr_db"] > rows["8x avg-pool + bilinear"]["psnr_db"]
    assert next(tmp_path.glob("ae_error_*.png")).stat().st_size > 1000
