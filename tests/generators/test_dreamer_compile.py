"""DreamerConfig.compile: the stream's block passes and the decode through torch.compile dream the same frames
as eager (up to float round-off), and passes past the sink hand a compiled block the same context."""

from __future__ import annotations

import pytest
import torch

from sana_world.envs.dream import make_dream_config
from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.world_model.causal import push_window
from sana_world.world_model.causal_context import CausalContext, ChunkCausalConfig

K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("sink", [0, 1, 2])
def test_past_sink_context_pushes_the_same_windows(sink: int) -> None:
    cfg = ChunkCausalConfig(sink_frames=sink, window_frames=3)
    gen = torch.Generator().manual_seed(0)
    window = torch.randn(1, sink + 3, 4, 2, 8, generator=gen)  # (B, sink + W, S, H, D)
    frames = torch.randn(1, 2, 4, 2, 8, generator=gen)  # (B, T, S, H, D)
    for f0 in range(8):
        ctx = CausalContext.build(2, 1, f0, cfg, True, None, 1)
        clamped = ctx.past_sink()
        assert clamped.frame_offset == min(f0, sink)
        assert torch.equal(clamped.frame_mask, ctx.frame_mask) and clamped.committed == ctx.committed
        assert torch.equal(push_window(window, frames[:, :1], clamped), push_window(window, frames[:, :1], ctx))


def test_dream_env_passes_compile_through() -> None:
    assert make_dream_config("explore", compile=True).compile
    assert not make_dream_config("explore").compile


@pytest.mark.slow
def test_compiled_dream_matches_eager() -> None:
    models = zoo.load("rooms-128")
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (1, 128, 128, 3), generator=gen, dtype=torch.uint8)  # one env's shapes
    c2w = torch.eye(4).repeat(4, 1, 1, 1)  # (steps, B, 4, 4): a camera walking forward and sideways
    c2w[:, 0, 2, 3] = 0.05 * torch.arange(1, 5)
    c2w[:, 0, 0, 3] = 0.03 * torch.arange(1, 5)
    runs = {}
    for compiled in (False, True):
        d = Dreamer(models, DreamerConfig(context_sigma=0.5, compile=compiled))
        state = d.start(rgb, torch.eye(4)[None], K, ["a room"])
        g = torch.Generator().manual_seed(1)
        frames, lats = [], []
        for pose in c2w:  # start, a sampling-only pass, then append + sample passes past the sink
            out, state = d.step(state, pose, g)
            frames.append(out)
            lats.append(state.last)
        runs[compiled] = (torch.stack(frames), torch.stack(lats), state)
    (f_ref, z_ref, s_ref), (f_out, z_out, s_out) = runs[False], runs[True]
    assert rel_err(z_out, z_ref) < 1e-5
    assert (f_out.int() - f_ref.int()).abs().max() <= 1  # uint8 frames: a rounding may flip
    assert s_out.frame == s_ref.frame == 5
    for name, t in s_ref.stream.tensors().items():
        assert rel_err(s_out.stream.tensors()[name], t) < 1e-5, name


def test_every_block_pass_sees_one_token_dtype_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bf16 autocast the patch embedding gives bf16 tokens; the residual stream enters every block in
    the weights' dtype, so a compiled block pass has one dtype variant, not two (the first block's own)."""
    import sana_world.world_model.streaming as streaming

    seen: list[torch.dtype] = []
    forward = streaming.causal_block_forward

    def record(block, x, *args):  # noqa: ANN001, ANN202
        seen.append(x.dtype)
        return forward(block, x, *args)

    monkeypatch.setattr(streaming, "causal_block_forward", record)
    d = Dreamer(zoo.load("rooms-128"), DreamerConfig(bf16=True))
    rgb = torch.zeros(1, 128, 128, 3, dtype=torch.uint8)
    state = d.start(rgb, torch.eye(4)[None], K, ["a room"])
    d.step(state, torch.eye(4)[None])
    assert len(seen) == 2 * 6 and set(seen) == {torch.float32}  # start + one step, 6 blocks each


def test_compiled_passes_allow_several_batch_sizes() -> None:
    """Each batch size compiles a dozen pass layouts while the window fills: dynamo's default limit (8 per
    function) would drop a second batch size to eager without a word; a compiled engine raises it."""
    from sana_world.world_model.streaming import RECOMPILE_LIMIT, WMStreamConfig, WMStreamEngine
    from sana_world.samplers import FlowEulerSampler

    WMStreamEngine(zoo.load("rooms-128").world_model, FlowEulerSampler(1, 2.0), WMStreamConfig(compile=True))
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT >= 5 * 12


@pytest.mark.slow
def test_compiled_ragged_batch_matches_eager() -> None:
    """A compiled batch whose rows restart at different times dreams the eager frames, and its passes keep
    one batch size: after the restart's layouts are compiled, later restarts compile nothing new."""
    from torch._dynamo.utils import counters

    models = zoo.load("rooms-128")
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (3, 128, 128, 3), generator=gen, dtype=torch.uint8)
    runs, compiles = {}, []
    for compiled in (False, True):
        d = Dreamer(models, DreamerConfig(context_sigma=0.5, window_frames=2, compile=compiled))
        state = d.start(rgb[:2], torch.eye(4).expand(2, 4, 4), K, ["a room"] * 2)
        g = torch.Generator().manual_seed(1)
        frames = []
        for s in range(9):  # restarts at steps 3 and 6: rows at different frames, some filling their window
            if s in (3, 6):
                state = d.restart(state, [s // 3 - 1], rgb[2:], torch.eye(4)[None], K, ["a red room"])
            pose = torch.eye(4).repeat(2, 1, 1)
            pose[:, 2, 3] = 0.05 * (s + 1)
            out, state = d.step(state, pose, g)
            frames.append(out)
            if compiled and s == 5:
                compiles.append(counters["stats"]["unique_graphs"])
        if compiled:
            compiles.append(counters["stats"]["unique_graphs"])
        runs[compiled] = (torch.stack(frames), state)
    (f_ref, s_ref), (f_out, s_out) = runs[False], runs[True]
    assert s_out.frames == s_ref.frames == (7, 4)
    assert (f_out.int() - f_ref.int()).abs().float().mean() < 0.05  # uint8 frames: a rounding may flip
    assert compiles[1] == compiles[0]  # the second restart reuses the first one's graphs
