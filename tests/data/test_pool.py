"""The device-resident trajectory pool: deterministic, split across ranks without overlap, valid clips."""

from __future__ import annotations

import pytest
import torch

from dataclasses import replace

from sana_world.data.pool import ClipPool, PoolConfig, pool_generator
from sana_world.render.base import area_average

CFG = PoolConfig(trajectories=6, steps=4, size=32, workers=0, keys_fraction=0.5, seed=3)


@pytest.fixture(scope="module")
def pool() -> ClipPool:
    return ClipPool(CFG, progress=False)


def test_pool_is_a_pure_function_of_its_config(pool: ClipPool) -> None:
    again = ClipPool(CFG, progress=False)
    assert torch.equal(pool.rgb, again.rgb) and torch.equal(pool.c2w, again.c2w)
    assert pool.rgb.shape == (6, 5, 32, 32, 3) and pool.rgb.dtype == torch.uint8
    assert pool.rgb.float().std() > 10  # real frames, not an empty buffer


def test_ranks_split_the_pool_without_overlap(pool: ClipPool) -> None:
    parts = [ClipPool(CFG, rank=r, world_size=2, progress=False) for r in range(2)]
    seeds = [s for p in parts for s in p.seeds]
    assert sorted(seeds) == sorted(pool.seeds) and len(set(seeds)) == 6
    with pytest.raises(ValueError, match="rank"):
        ClipPool(CFG, rank=2, world_size=2, progress=False)


def test_clips_are_windows_of_pooled_trajectories(pool: ClipPool) -> None:
    out = pool.clips(3, 4, pool_generator(0, 1, 0))
    assert out["rgb"].shape == (4, 3, 32, 32, 3) and out["c2w"].shape == (4, 3, 4, 4)
    for b in range(4):  # 1. every clip is a contiguous window of one trajectory
        hits = [(n, f) for n in range(len(pool)) for f in range(3)
                if torch.equal(pool.rgb[n, f:f + 3], out["rgb"][b])]
        assert hits, "clip is not a window of the pool"
        assert out["captions"][b] == pool.captions[hits[0][0]]
    again = pool.clips(3, 4, pool_generator(0, 1, 0))
    assert torch.equal(again["rgb"], out["rgb"])  # same (seed, step, rank): same clips
    with pytest.raises(ValueError, match="clip length"):
        pool.clips(6, 1, pool_generator(0, 1, 0))


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="keys_fraction"):
        PoolConfig(keys_fraction=1.5)
    with pytest.raises(ValueError, match="trajectories"):
        PoolConfig(trajectories=0)
    with pytest.raises(ValueError, match="supersample"):
        PoolConfig(supersample=0)


def test_supersampled_frames_are_the_box_filtered_larger_render(pool: ClipPool) -> None:
    """supersample 2: each pixel the rounded mean of a 2x2 block of the render at twice the side, the same
    poses and the frames' own intrinsics (one field of view)."""
    big = ClipPool(replace(CFG, size=64), progress=False)
    ss = ClipPool(replace(CFG, supersample=2), progress=False)
    assert ss.rgb.shape == pool.rgb.shape and torch.equal(ss.K, pool.K) and torch.equal(ss.c2w, pool.c2w)
    assert torch.equal(ss.rgb, area_average(big.rgb.flatten(0, 1), 32).view_as(ss.rgb))
    diff = (ss.rgb.float() - pool.rgb.float()).abs()
    assert 0 < diff.mean() < 10  # the same scenes, smoothed where edges fall inside a pixel
    x = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8)[None, :, :, None].expand(1, 2, 2, 3)
    assert area_average(x, 1).flatten().tolist() == [128, 128, 128]  # each pixel the block mean, half up
