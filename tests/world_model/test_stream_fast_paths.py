"""The streaming engine's fast paths equal the plain ones: the append folded into the next sampler pass
(`advance_and_denoise`), states after the first frames of a pass (`commit`), the cached stream masks and
caption projections, and the fused fp32 RMSNorm."""

from __future__ import annotations

import pytest
import torch

from helpers import off_init
from sana_world.nn.norms import RMSNorm
from sana_world.samplers import FlowEulerSampler, TrigFlowSampler
from sana_world.world_model import SanaWM, tiny
from sana_world.world_model.cameras import WMCameraInputs
from sana_world.world_model.causal_context import CausalContext, ChunkCausalConfig, _frame_mask
from sana_world.world_model.streaming import WMStreamConfig, WMStreamEngine, WMStreamState, WMText

B, C, H, W = 2, 4, 2, 3
WINDOW = ChunkCausalConfig(sink_frames=1, window_frames=2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def states_close(a: WMStreamState, b: WMStreamState, tol: float = 1e-5) -> bool:
    ta, tb = a.tensors(), b.tensors()
    return a.frame == b.frame and all(rel_err(ta[k], tb[k]) < tol for k in tb)


@pytest.fixture(scope="module")
def model() -> SanaWM:
    """Tiny model with every parameter moved off its init (zero-init camera/Plücker paths included)."""
    return off_init(lambda: SanaWM(tiny()))


def camera(frames: int, g: torch.Generator) -> WMCameraInputs:
    rot, _ = torch.linalg.qr(torch.randn(B, frames, 3, 3, generator=g))
    c2w = torch.eye(4).repeat(B, frames, 1, 1)
    c2w[..., :3, :3] = rot * torch.linalg.det(rot).sign()[..., None, None]
    c2w[..., :3, 3] = torch.randn(B, frames, 3, generator=g)
    intrinsics = torch.tensor([5.0, 4.5, 1.2, 0.7]).expand(B, frames, 4)
    return WMCameraInputs(torch.cat([c2w.reshape(B, frames, 16), intrinsics], -1),
                          torch.randn(B, 12, frames, H, W, generator=g))  # fmt: skip


def warm_stream(engine: WMStreamEngine, frames: int, k: int, g: torch.Generator,
                text: WMText) -> WMStreamState:
    """A stream `frames` frames in (chunks of k), so the window is full or not depending on `frames`."""
    state = engine.init_state(B, (H, W))
    for _ in range(0, frames, k):
        state = engine.advance(state, torch.randn(B, C, k, H, W, generator=g), text, camera(k, g),
                               timesteps=torch.rand(B, k, generator=g) * 1000)  # fmt: skip
    return state


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("past", [0, 2, 6])  # an empty stream, a window being filled, a full window
@pytest.mark.parametrize("sampler", [FlowEulerSampler(1), FlowEulerSampler(2, shift=3.0), TrigFlowSampler(2)])
def test_advance_and_denoise_equals_advance_then_denoise(model, k, past, sampler):
    g = torch.Generator().manual_seed(1)
    text = WMText(torch.randn(B, 5, 16, generator=g), torch.tensor([[1] * 5, [1] * 2 + [0] * 3]))
    engine = WMStreamEngine(model, sampler, WMStreamConfig(causal=WINDOW))
    state = warm_stream(engine, past, k, g, text)
    ctx, ctx_cam, cam = torch.randn(B, C, k, H, W, generator=g), camera(k, g), camera(k, g)
    ctx_t = torch.rand(B, k, generator=g) * 1000
    noise = torch.randn(B, C, k, H, W, generator=g)
    advanced = engine.advance(state, ctx, text, ctx_cam, timesteps=ctx_t)
    ref = engine.denoise_chunk(advanced, noise, text, cam, generator=torch.Generator().manual_seed(5))
    out, fused = engine.advance_and_denoise(state, ctx, noise, text, ctx_cam, cam, context_timesteps=ctx_t,
                                            generator=torch.Generator().manual_seed(5))  # fmt: skip
    assert rel_err(out, ref) < 1e-5
    assert states_close(fused, advanced) and fused.has_camera


@torch.no_grad()
def test_advance_and_denoise_checks(model):
    g = torch.Generator().manual_seed(2)
    text = WMText(torch.randn(B, 5, 16, generator=g))
    state = WMStreamEngine(model, FlowEulerSampler(1)).init_state(B, (H, W))
    x = torch.randn(B, C, 1, H, W, generator=g)
    guided = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(guidance_scale=2.0))
    with pytest.raises(ValueError, match="unguided"):
        guided.advance_and_denoise(state, x, x, text, camera(1, g), camera(1, g))
    plain = WMStreamEngine(model, FlowEulerSampler(1))
    with pytest.raises(ValueError, match="chunks must match"):
        plain.advance_and_denoise(state, x, torch.cat([x, x], 2), text)
    with pytest.raises(ValueError, match="both chunks"):
        plain.advance_and_denoise(state, x, x, text, camera(1, g))


@torch.no_grad()
@pytest.mark.parametrize("commit", [0, 1, 2, 3])
def test_state_after_the_committed_frames(model, commit):
    """A pass over 3 frames committing c of them: the state equals advancing by those c frames, the output
    equals the full pass'."""
    g = torch.Generator().manual_seed(3)
    text = WMText(torch.randn(B, 5, 16, generator=g))
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    state = warm_stream(engine, 2, 1, g, text)
    x, t, cam = torch.randn(B, C, 3, H, W, generator=g), torch.rand(B, 3, generator=g) * 1000, camera(3, g)
    out, new = engine._pass(state, x, t, text, cam, commit=commit, chunk_size=1)
    full, _ = engine._pass(state, x, t, text, cam, chunk_size=1)
    assert torch.equal(out, full)
    if commit == 0:
        assert new is None
        return
    sub = WMCameraInputs(cam.camera_conditions[:, :commit], cam.chunk_plucker[:, :, :commit])
    ref = engine._pass(state, x[:, :, :commit], t[:, :commit], text, sub, chunk_size=1)[1]
    assert states_close(new, ref)
    only_state = engine._pass(state, x, t, text, cam, commit=commit, output=False, chunk_size=1)
    assert only_state[0] is None and states_close(only_state[1], new, 1e-6)


@pytest.mark.parametrize("frames, chunk", [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3), (4, 2)])
def test_stream_masks_are_cached_per_layout(frames, chunk):
    for cfg in (WINDOW, ChunkCausalConfig(0, 3), ChunkCausalConfig(2, 4)):
        for f0 in range(0, 14):
            ctx = CausalContext.build(frames, chunk, f0, cfg, True, "cpu")
            mask = _frame_mask(frames, chunk, f0, cfg, True, "cpu")
            assert torch.equal(ctx.frame_mask, mask) and ctx.attend_all == bool(mask.all())
            rows = [ctx.future_rows(d) for d in range(1, 4)]
            assert all(torch.equal(torch.tensor(r, dtype=torch.float32), ctx.future_mask(d, "cpu"))
                       for d, r in enumerate(rows, 1))  # fmt: skip
    full = CausalContext.full_sequence(frames, chunk, WINDOW, "cpu")
    assert torch.equal(full.frame_mask, _frame_mask(frames, chunk, 0, WINDOW, False, "cpu"))


@torch.no_grad()
def test_caption_cache_follows_text_and_weights(model):
    g = torch.Generator().manual_seed(4)
    engine = WMStreamEngine(model, FlowEulerSampler(1))
    text = WMText(torch.randn(B, 5, 16, generator=g), torch.tensor([[1] * 5, [1] * 2 + [0] * 3]))
    first = engine.caption(text, torch.float32)
    assert engine.caption(text, torch.float32) is first  # the same caption: cached
    fresh = model.caption_context(text.hidden_states, text.attention_mask, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(first.kv[0] + first.kv[-1], fresh.kv[0] + fresh.kv[-1]))
    other = WMText(text.hidden_states, torch.ones(B, 5, dtype=torch.long))
    assert not torch.equal(engine.caption(other, torch.float32).attn_bias, first.attn_bias)  # another mask
    text.hidden_states.mul_(2.0)  # the caption changed in place
    assert not torch.equal(engine.caption(text, torch.float32).context, first.context)
    weight = model.blocks[0].cross_attn.kv.weight
    saved = weight.clone()
    try:
        weight.add_(0.1)  # the weights changed in place
        again = engine.caption(text, torch.float32)
        ref = model.caption_context(text.hidden_states, text.attention_mask, torch.float32)
        assert torch.equal(again.kv[0][0], ref.kv[0][0])
    finally:
        weight.copy_(saved)
    # entries live as long as their caption tensors
    n = len(engine._captions)
    del text, other
    assert len(engine._captions) == n - 1  # `other` shared its hidden states with `text`: one entry


def test_rms_norm_fused_path_is_the_reference():
    torch.manual_seed(5)
    for dim, shape, affine in ((64, (2, 33, 4), True), (256, (1, 128), True), (257, (3,), False)):
        norm = RMSNorm(dim, eps=1e-6, affine=affine)
        if affine:
            torch.nn.init.normal_(norm.weight)
        x = 10 * torch.randn(*shape, dim)
        ref = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)) * (norm.weight if affine else 1.0)
        torch.testing.assert_close(norm(x), ref, rtol=2e-6, atol=1e-7)  # bitwise with torch 2.13's kernel


def test_caches_filled_in_inference_mode_serve_a_pass_with_grad(model):
    """The caption and mask caches of a stream run under `torch.inference_mode` (the Dreamer) never hand a
    later pass that autograd records an inference tensor or a graph without the caption weights."""
    g = torch.Generator().manual_seed(6)
    text = WMText(torch.randn(B, 5, 16, generator=g), torch.tensor([[1] * 5, [1] * 2 + [0] * 3]))
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    with torch.inference_mode():
        state = warm_stream(engine, 4, 1, g, text)
        x = torch.randn(B, C, 1, H, W, generator=g)
        engine.forward_chunk(state, x, torch.zeros(B, 1), text, camera(1, g))
    with torch.no_grad():
        state = warm_stream(engine, 4, 1, g, text)
    model.zero_grad()
    x, cam = torch.randn(B, C, 1, H, W, generator=g), camera(1, g)
    out = engine.forward_chunk(state, x, torch.full((B, 1), 500.0), text, cam)
    out.square().mean().backward()
    grads = [p.grad for p in engine._caption_params()]
    model.zero_grad()
    assert all(gr is not None and gr.abs().sum() > 0 for gr in grads)
