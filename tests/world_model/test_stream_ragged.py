"""Rows at different frames in one stream state (`WMStreamState.row_frames`): every row of a batched pass
gets the numbers it gets alone, at any mix of frames (the sink, the window filling, a full window)."""

from __future__ import annotations

import pytest
import torch

from helpers import off_init
from sana_world.samplers import FlowEulerSampler
from sana_world.world_model import SanaWM, tiny
from sana_world.world_model.cameras import WMCameraInputs
from sana_world.world_model.causal import ChunkCausalConfig, rope_tables_at
from sana_world.world_model.causal_context import CausalContext, _frame_mask
from sana_world.world_model.streaming import WMStreamConfig, WMStreamEngine, WMStreamState, WMText

C, H, W = 4, 2, 3
WINDOW = ChunkCausalConfig(sink_frames=1, window_frames=3)
FRAMES = (0, 1, 2, 3, 4, 5, 9)  # empty, sink only, window filling, window full and later


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def model() -> SanaWM:
    return off_init(lambda: SanaWM(tiny()))


def inputs(frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, WMText, WMCameraInputs]:
    """One stream's latents (1, C, F, H, W), timesteps, caption and cameras."""
    g = torch.Generator().manual_seed(seed)
    rot, _ = torch.linalg.qr(torch.randn(1, frames, 3, 3, generator=g))
    c2w = torch.eye(4).repeat(1, frames, 1, 1)
    c2w[..., :3, :3] = rot * torch.linalg.det(rot).sign()[..., None, None]
    c2w[..., :3, 3] = torch.randn(1, frames, 3, generator=g)
    cond = torch.cat([c2w.reshape(1, frames, 16), torch.tensor([5.0, 4.5, 1.2, 0.7]).expand(1, frames, 4)], -1)
    cam = WMCameraInputs(cond, torch.randn(1, 12, frames, H, W, generator=g))
    text = WMText(torch.randn(1, 3 + seed % 3, 16, generator=g))
    return torch.randn(1, C, frames, H, W, generator=g), torch.rand(1, frames, generator=g) * 1000, text, cam


def cams(c: WMCameraInputs, a: int, b: int) -> WMCameraInputs:
    return WMCameraInputs(c.camera_conditions[:, a:b], c.chunk_plucker[:, :, a:b])


def streams(engine: WMStreamEngine, frames: tuple[int, ...], total: int):
    """One stream per entry, advanced alone to that many frames, and its inputs (`total` frames)."""
    out = []
    for i, f in enumerate(frames):
        x, t, text, cam = inputs(total, seed=i)
        state = engine.init_state(1, (H, W))
        for j in range(f):  # 1. one frame at a time
            state = engine.advance(state, x[:, :, j : j + 1], text, cams(cam, j, j + 1), t[:, j : j + 1])
        out.append((state, x, t, text, cam))
    return out


def stacked_inputs(parts, frames: tuple[int, ...], n: int):
    """The next n frames of every stream, batched."""
    x = torch.cat([p[1][:, :, f : f + n] for p, f in zip(parts, frames)])
    t = torch.cat([p[2][:, f : f + n] for p, f in zip(parts, frames)])
    c = [cams(p[4], f, f + n) for p, f in zip(parts, frames)]
    cam = WMCameraInputs(torch.cat([q.camera_conditions for q in c]), torch.cat([q.chunk_plucker for q in c]))
    return x, t, WMText.stack([p[3] for p in parts]), cam


@pytest.mark.parametrize("n", [1, 2])
@torch.no_grad()
def test_ragged_batch_equals_each_row_alone(model, n):
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    parts = streams(engine, FRAMES, max(FRAMES) + n)
    state = WMStreamState.stack([p[0] for p in parts])
    assert state.ragged and state.frames == FRAMES and state.frame == max(FRAMES)
    x, t, text, cam = stacked_inputs(parts, FRAMES, n)
    out = engine.forward_chunk(state, x, t, text, cam)  # (B, C, n, H, W)
    new = engine.advance(state, x, text, cam, t)
    assert new.frames == tuple(f + n for f in FRAMES)
    for i, (p, f) in enumerate(zip(parts, FRAMES)):  # 1. every row as it is alone
        one = (p[1][:, :, f : f + n], p[2][:, f : f + n], p[3], cams(p[4], f, f + n))
        assert rel_err(out[i : i + 1], engine.forward_chunk(p[0], *one)) < 1e-5, f
        alone = engine.advance(p[0], one[0], one[2], one[3], one[1]).tensors()
        row = new.index(i)
        assert row.frame == f + n and not row.ragged
        for k, v in row.tensors().items():
            assert torch.allclose(v, alone[k], atol=1e-5, rtol=1e-4), (f, k)


@torch.no_grad()
def test_ragged_fused_append_and_sample(model):
    """The Dreamer's pass (append a context frame, sample the next) over rows at mixed frames."""
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    frames = (0, 2, 6)
    parts = streams(engine, frames, max(frames) + 2)
    state = WMStreamState.stack([p[0] for p in parts])
    x, t, text, cam = stacked_inputs(parts, frames, 2)
    noise = torch.randn(len(frames), C, 1, H, W, generator=torch.Generator().manual_seed(5))
    ctx_cam, cam_next = cams(cam, 0, 1), cams(cam, 1, 2)
    sample, new = engine.advance_and_denoise(state, x[:, :, :1], noise, text, ctx_cam, cam_next,
                                             context_timesteps=t[:, :1])  # fmt: skip
    for i, p in enumerate(parts):
        one_text = WMText(p[3].hidden_states)
        c0 = WMCameraInputs(ctx_cam.camera_conditions[i : i + 1], ctx_cam.chunk_plucker[i : i + 1])
        c1 = WMCameraInputs(cam_next.camera_conditions[i : i + 1], cam_next.chunk_plucker[i : i + 1])
        ref, ref_state = engine.advance_and_denoise(p[0], x[i : i + 1, :, :1], noise[i : i + 1], one_text, c0, c1,
                                                    context_timesteps=t[i : i + 1, :1])  # fmt: skip
        assert rel_err(sample[i : i + 1], ref) < 1e-5
        assert new.index(i).frame == ref_state.frame == frames[i] + 1


def test_ragged_masks_are_each_rows_own():
    """Full-window layout & a row's filled slots == the mask the row's own frame builds."""
    for T, k in ((1, 1), (2, 1), (2, 2), (3, 2)):
        rows = tuple(range(9))
        ctx = CausalContext.ragged(T, k, rows, WINDOW, "cpu")
        assert ctx.key_valid is not None and ctx.row_f0 is not None
        per_row = ctx.frame_mask[None] & ctx.key_valid[:, None, :]  # (B, T, F_keys)
        for i, f in enumerate(rows):
            assert torch.equal(per_row[i], _frame_mask(T, k, f, WINDOW, True, "cpu")), (T, k, f)
        assert ctx.row_f0.tolist() == [min(f, WINDOW.sink_frames) for f in rows]
        tokens = ctx.token_mask(4)
        assert tokens.shape == (len(rows), 1, T * 4, ctx.frame_mask.shape[1] * 4)
    full = CausalContext.ragged(2, 1, (4, 7, 20), WINDOW, "cpu")  # every window full: one shared mask
    assert full.key_valid is None and full.row_f0 is None


def test_rope_tables_per_row_match_per_offset():
    cfg = SanaWM(tiny()).rope.cfg
    cos, sin = rope_tables_at(cfg, (2, 3, 2), (0, 5, 17), "cpu")
    for i, f in enumerate((0, 5, 17)):
        c, s = rope_tables_at(cfg, (2, 3, 2), f, "cpu")
        assert torch.equal(cos[i], c) and torch.equal(sin[i], s)


@torch.no_grad()
def test_restart_rows_and_state_dict(model, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    parts = streams(engine, (3, 5), 6)
    state = WMStreamState.stack([p[0] for p in parts])
    fresh = state.restart_rows([1])
    assert fresh.frames == (3, 0)
    empty = engine.init_state(1, (H, W)).tensors()
    assert all(torch.equal(v[1:], empty[k]) for k, v in fresh.tensors().items())
    assert all(torch.equal(v[:1], state.tensors()[k][:1]) for k, v in fresh.tensors().items())
    with pytest.raises(ValueError, match="out of range"):
        state.restart_rows([2])
    # state_dict keeps every row's frame
    path = tmp_path / "ragged.safetensors"
    safetensors.save_file(state.state_dict(), str(path))
    restored = engine.init_state(2, (H, W))
    restored.load_state_dict(safetensors.load_file(str(path)))
    assert restored.frames == (3, 5)
    assert all(torch.equal(v, state.tensors()[k]) for k, v in restored.tensors().items())
    assert state.select([1, 0]).frames == (5, 3) and state.select([1]).frame == 5
