"""Dreamer.restart: streams begun anew inside a running batch dream what they dream alone, and the batch
keeps stepping in one pass (rows at different frames), with deferred appends or without."""

from __future__ import annotations

import pytest
import torch

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig

K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])


def pose(z: float, x: float = 0.0) -> torch.Tensor:
    c2w = torch.eye(4)
    c2w[2, 3], c2w[0, 3] = z, x
    return c2w


@pytest.mark.parametrize("defer, sigma", [(True, 0.0), (False, 0.0), (True, 0.65), (True, 1.0)])
def test_restarted_row_dreams_as_a_fresh_stream(defer: bool, sigma: float) -> None:
    models = zoo.load("rooms-128")
    d = Dreamer(models, DreamerConfig(context_sigma=sigma, defer_append=defer))
    g = torch.Generator().manual_seed(3)
    rgb = torch.randint(0, 256, (3, 128, 128, 3), generator=g, dtype=torch.uint8)
    captions = ["a room", "a red room", "a long corridor with blue walls"]
    # 1. two streams run 3 steps
    state = d.start(rgb[:2], torch.stack([pose(0.0), pose(0.0, 0.1)]), K, captions[:2])
    for s in range(3):
        _, state = d.step(state, torch.stack([pose(0.05 * (s + 1)), pose(0.05 * (s + 1), 0.1)]), g)
    # 2. stream 1 restarts from a new anchor (and a longer caption); stream 0 goes on
    state = d.restart(state, [1], rgb[2:], pose(1.0)[None], K, captions[2:])
    assert state.frames == (4, 1) and state.batch_size == 2
    alone = d.start(rgb[2:], pose(1.0)[None], K, captions[2:])
    ref_rows = []
    for s in range(3):  # 3. same noise per row: the batched rows equal the fresh stream stepped alone
        noise = torch.randn(2, 16, 1, 16, 16, generator=g)
        both = torch.stack([pose(0.2 + 0.05 * s), pose(1.0 + 0.05 * (s + 1))])
        rgb_b, state = d.step(state, both, noise=noise)
        rgb_1, alone = d.step(alone, both[1:], noise=noise[1:])
        ref_rows.append((rgb_b[1], rgb_1[0]))
        assert state.frames == (5 + s, 2 + s)
    if 0 < sigma < 1:  # each step re-noises its frames with a draw per batch: only the first is comparable
        ref_rows = ref_rows[:1]
    for got, want in ref_rows:
        assert (got.float() - want.float()).abs().mean() < 0.5  # uint8 frames, float round-off only
        assert float(got.float().std()) > 5
    with pytest.raises(ValueError, match="distinct"):
        d.restart(state, [1, 1], rgb[:2], torch.stack([pose(0.0)] * 2), K, captions[:2])
    with pytest.raises(ValueError, match="captions"):
        d.restart(state, [0], rgb[:1], pose(0.0)[None], K, captions[:2])
    with pytest.raises(ValueError, match="uint8"):
        d.restart(state, [0], rgb[:2], torch.stack([pose(0.0)] * 2), K, captions[:2])
