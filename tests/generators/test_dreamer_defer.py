"""DreamerConfig.defer_append: folding each frame's append into the next step's pass dreams the same frames
and carries the same stream state (up to float round-off), through select, observe and the env's regrouping."""

from __future__ import annotations

import pytest
import torch

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig, DreamState
from sana_world.world_model.streaming import WMStreamState, WMText

K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def assert_states_close(a: WMStreamState, b: WMStreamState) -> None:
    assert a.frame == b.frame
    for name, t in b.tensors().items():
        assert rel_err(a.tensors()[name], t) < 1e-5, name


def path(steps: int) -> torch.Tensor:
    """Poses (steps, 2, 4, 4): two cameras walking forward and sideways."""
    c2w = torch.eye(4).repeat(steps, 2, 1, 1)
    c2w[:, :, 2, 3] = 0.05 * torch.arange(1, steps + 1)[:, None]
    c2w[:, 1, 0, 3] = 0.03 * torch.arange(1, steps + 1)
    return c2w


@pytest.mark.parametrize("num_steps, sigma", [(1, 0.5), (2, 0.0)])
def test_deferred_append_dreams_the_same_frames(num_steps: int, sigma: float) -> None:
    models = zoo.load("rooms-128")
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 128, 128, 3), generator=gen, dtype=torch.uint8)
    runs = {}
    for defer in (False, True):
        d = Dreamer(models, DreamerConfig(num_steps=num_steps, context_sigma=sigma, defer_append=defer))
        state = d.start(rgb, torch.eye(4).repeat(2, 1, 1), K, ["a room", "a hall"])
        g = torch.Generator().manual_seed(1)
        lats = []
        for c2w in path(4):
            _, state = d.step(state, c2w, g)
            assert (state.pending is not None) == defer and state.frame == len(lats) + 2
            lats.append(state.last)
        runs[defer] = (torch.stack(lats), state)
    (ref, plain), (out, deferred) = runs[False], runs[True]
    assert rel_err(out, ref) < 1e-5
    assert_states_close(deferred.stream, plain.stream)  # reading .stream appends the pending frame
    assert deferred.pending is None and deferred.frame == plain.frame == 5


def test_pending_frames_survive_select_observe_and_merge() -> None:
    models = zoo.load("rooms-128")
    gen = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (2, 2, 128, 128, 3), generator=gen, dtype=torch.uint8)  # (B, frames, ...)
    c2w = path(2)
    ref_d, d = (Dreamer(models, DreamerConfig(context_sigma=0.5, defer_append=x)) for x in (False, True))
    start = d.start(rgb[:, 0], torch.eye(4).repeat(2, 1, 1), K, ["a room", "a hall"])
    noise = torch.randn(2, 16, 1, 16, 16, generator=gen)
    _, ref = ref_d.step(start, c2w[0], torch.Generator().manual_seed(3), noise=noise)
    _, state = d.step(start, c2w[0], torch.Generator().manual_seed(3), noise=noise)
    # 1. select keeps the pending frame of the selected streams
    one = state.select([1])
    assert one.pending is not None and one.frame == 2
    assert_states_close(one.stream, ref.select([1]).stream)
    # 2. stacking states (what DreamCore does when groups meet) reads the full streams
    assert state.pending is not None
    merged = DreamState(WMStreamState.stack([state.select([0]).stream, state.select([1]).stream]), state.c2w0,
                        state.K, WMText(state.text.hidden_states, state.text.attention_mask), state.last)
    assert_states_close(merged.stream, ref.stream)
    # 3. observe appends the pending frame, then leaves the observed one pending
    seen, ref_seen = d.observe(state, rgb[:, 1], c2w[1]), ref_d.observe(ref, rgb[:, 1], c2w[1])
    assert seen.frame == ref_seen.frame == 3 and torch.equal(seen.last, ref_seen.last)
    assert_states_close(seen.stream, ref_seen.stream)
