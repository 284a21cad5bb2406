"""benchmarks/fidelity.py renders its GT paths as the GT envs do: with ``supersample`` s the rgb is the box
filter of the same paths rendered at s times the size, the depth that render's ray (s // 2, s // 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_supersampled_gt_paths_are_the_box_filter_of_a_larger_render() -> None:
    pytest.importorskip("open3d")
    from fidelity import render_paths

    from sana_world.render.base import area_average
    from sana_world.worlds.sampler import HELDOUT_START

    seeds = [HELDOUT_START + 3]
    _, c2w, rgb, depth, K = render_paths(seeds, 2, 24, torch.device("cpu"), 0, supersample=2)
    _, c2w_big, rgb_big, depth_big, _ = render_paths(seeds, 2, 48, torch.device("cpu"), 0)
    assert rgb.shape == (1, 3, 24, 24, 3) and torch.equal(c2w, c2w_big)
    assert torch.equal(rgb, area_average(rgb_big, 24))
    assert torch.equal(depth, depth_big[..., 1::2, 1::2])
    assert K[0, 0] == pytest.approx(12.0)  # the frames' intrinsics (90 degrees at 24 pixels), not the render's
    _, _, plain, _, _ = render_paths(seeds, 2, 24, torch.device("cpu"), 0)
    assert 0 < (plain.int() - rgb.int()).abs().float().mean() < 25  # the same views (24 px: heavily aliased)
