"""Chunk-causal SanaWM and the streaming engine: chunk-by-chunk == one chunk-causal pass, flat memory over
1,000 frames, clone / state_dict / stack, and chunk_size >= T == bidirectional."""

from __future__ import annotations

import resource

import pytest
import torch

from helpers import off_init
from sana_world.samplers import FlowEulerSampler, TrigFlowSampler
from sana_world.world_model import SanaWM, tiny
from sana_world.world_model.cameras import WMCameraInputs
from sana_world.world_model.causal import ChunkCausalConfig
from sana_world.world_model.streaming import WMStreamConfig, WMStreamEngine, WMStreamState, WMText

B, C, T, H, W = 2, 4, 7, 2, 3
WINDOW = ChunkCausalConfig(sink_frames=1, window_frames=2)  # small, so T = 7 frames truncate it


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def model() -> SanaWM:
    """Tiny model with every parameter moved off its init (zero-init camera/Plücker paths included)."""
    return off_init(lambda: SanaWM(tiny()))


def make_inputs(frames: int = T, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    rot, _ = torch.linalg.qr(torch.randn(B, frames, 3, 3, generator=g))
    c2w = torch.eye(4).repeat(B, frames, 1, 1)
    c2w[..., :3, :3] = rot * torch.linalg.det(rot).sign()[..., None, None]
    c2w[..., :3, 3] = torch.randn(B, frames, 3, generator=g)
    intrinsics = torch.tensor([5.0, 4.5, 1.2, 0.7]).expand(B, frames, 4)
    return dict(
        latents=torch.randn(B, C, frames, H, W, generator=g),
        timesteps=torch.rand(B, frames, generator=g) * 1000,
        text=WMText(torch.randn(B, 5, 16, generator=g), torch.tensor([[1] * 5, [1] * 2 + [0] * 3])),
        camera=WMCameraInputs(
            torch.cat([c2w.reshape(B, frames, 16), intrinsics], -1),
            torch.randn(B, 12, frames, H, W, generator=g),
        ),
    )


def cam_slice(cam: WMCameraInputs, a: int, b: int) -> WMCameraInputs:
    return WMCameraInputs(cam.camera_conditions[:, a:b], cam.chunk_plucker[:, :, a:b])


def full_pass(model: SanaWM, inp: dict, chunk_size: int | None, causal=WINDOW) -> torch.Tensor:
    cam, text = inp["camera"], inp["text"]
    return model(inp["latents"], inp["timesteps"], text.hidden_states, text.attention_mask,
                 cam.camera_conditions, cam.chunk_plucker, chunk_size=chunk_size, causal=causal)  # fmt: skip


def stream_pass(engine: WMStreamEngine, inp: dict, k: int, state: WMStreamState | None = None):
    """Chunk by chunk: read the output at the given inputs, then advance with the same inputs."""
    x, t, text, cam = inp["latents"], inp["timesteps"], inp["text"], inp["camera"]
    state = engine.init_state(x.shape[0], (H, W)) if state is None else state
    outs = []
    for a in range(0, x.shape[2], k):
        b = min(a + k, x.shape[2])
        chunk = (x[:, :, a:b], t[:, a:b], text, cam_slice(cam, a, b))
        outs.append(engine.forward_chunk(state, *chunk))
        state = engine.advance(state, chunk[0], text, chunk[3], timesteps=chunk[1])
    return torch.cat(outs, dim=2), state


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2, 3])
def test_stream_equals_chunk_causal_pass(model, k):
    inp = make_inputs()
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    ref = full_pass(model, inp, k)
    out, state = stream_pass(engine, inp, k)
    assert state.frame == T
    assert rel_err(out, ref) < 1e-4, rel_err(out, ref)
    # the chunk-causal mode is really causal: changing the last chunk leaves earlier chunks alone
    inp2 = dict(inp, latents=inp["latents"].clone())
    last = (T - 1) // k * k
    inp2["latents"][:, :, last:] += 1.0
    ref2 = full_pass(model, inp2, k)
    assert torch.equal(ref2[:, :, :last], ref[:, :, :last])
    assert not torch.allclose(ref2[:, :, last:], ref[:, :, last:])


@torch.no_grad()
@pytest.mark.parametrize("k", [T, T + 2])
def test_one_chunk_equals_bidirectional(model, k):
    inp = make_inputs()
    for causal in (WINDOW, ChunkCausalConfig(0, None)):
        assert rel_err(full_pass(model, inp, k, causal), full_pass(model, inp, None)) < 1e-5


@torch.no_grad()
def test_window_is_bounded(model):
    """The softmax window really trims the past: a window of 2 frames differs from an unbounded one."""
    inp = make_inputs()
    ref = full_pass(model, inp, 2)
    assert rel_err(ref, full_pass(model, inp, 2, ChunkCausalConfig(1, None))) > 1e-6  # the window matters


@torch.no_grad()
def test_clone_state_dict_stack(model, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    inp = make_inputs()
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig(causal=WINDOW))
    head = dict(latents=inp["latents"][:, :, :4], timesteps=inp["timesteps"][:, :4], text=inp["text"],
                camera=cam_slice(inp["camera"], 0, 4))  # fmt: skip
    _, state = stream_pass(engine, head, 2)
    nxt = (inp["latents"][:, :, 4:6], inp["timesteps"][:, 4:6], inp["text"], cam_slice(inp["camera"], 4, 6))
    expected = engine.forward_chunk(state, *nxt)
    # 1. clone: advancing a branch leaves the original and the clone untouched
    branch = state.clone()
    before = {key: v.clone() for key, v in state.tensors().items()}
    engine.advance(branch, torch.randn(B, C, 2, H, W), inp["text"], nxt[3])
    moved = engine.advance(branch, nxt[0] + 1, inp["text"], nxt[3])
    assert moved.frame == 6 and branch.frame == 4
    assert all(torch.equal(v, state.tensors()[key]) for key, v in before.items())
    assert torch.equal(engine.forward_chunk(branch, *nxt), expected)
    assert not torch.allclose(engine.forward_chunk(moved, *nxt), expected)
    # 2. state_dict round trip through safetensors
    path = tmp_path / "state.safetensors"
    safetensors.save_file(state.state_dict(), str(path))
    restored = engine.init_state(B, (H, W))
    restored.load_state_dict(safetensors.load_file(str(path)))
    assert restored.frame == 4 and restored.has_camera
    assert torch.equal(engine.forward_chunk(restored, *nxt), expected)
    with pytest.raises(ValueError, match="shape"):
        engine.init_state(1, (H, W)).load_state_dict(state.state_dict())
    # 3. batching: stack of per-env states == the batched state
    stacked = WMStreamState.stack([state.index(0), state.index(1)])
    assert torch.equal(engine.forward_chunk(stacked, *nxt), expected)
    single = engine.forward_chunk(state.index(1), nxt[0][1:], nxt[1][1:], WMText(*(t[1:] for t in nxt[2])),
                                  WMCameraInputs(nxt[3].camera_conditions[1:], nxt[3].chunk_plucker[1:]))
    assert rel_err(single, expected[1:]) < 1e-5
    no_cam = engine.advance(engine.init_state(B, (H, W)), nxt[0], inp["text"])  # built without cameras
    with pytest.raises(ValueError, match="camera use"):
        WMStreamState.stack([state, no_cam])


@torch.no_grad()
@pytest.mark.parametrize("sampler", [FlowEulerSampler(2, shift=3.0), TrigFlowSampler(2)])
def test_denoise_chunk_anchor_and_cfg(model, sampler):
    inp = make_inputs(3)
    engine = WMStreamEngine(model, sampler, WMStreamConfig(causal=WINDOW, guidance_scale=2.0))
    state = engine.init_state(B, (H, W))
    img = torch.randn(B, C, H, W)
    negative = WMText(torch.zeros(B, 5, 16), None)
    noise = torch.randn(B, C, 3, H, W)
    clean = engine.denoise_chunk(state, noise, inp["text"], inp["camera"], first_frame=img, negative=negative)
    assert state.frame == 0 and all(v.abs().sum() == 0 for v in state.tensors().values())  # not mutated
    assert torch.allclose(clean[:, :, 0], img, atol=1e-6) and torch.isfinite(clean).all()
    # per-frame (diffusion-forcing) schedule: a frame whose time stays 0 is left as it came in
    sched = sampler.schedule()[:, None, None].expand(-1, B, 3).clone()
    sched[:, :, 2] = 0.0
    out = engine.denoise_chunk(state, noise, inp["text"], inp["camera"], negative=negative, schedule=sched)
    assert torch.allclose(out[:, :, 2], noise[:, :, 2], atol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        engine.denoise_chunk(state, noise, inp["text"], inp["camera"])


@pytest.fixture
def one_thread():
    """Tiny ops run far faster on one intra-op thread (and do not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # 20-35 s on 2 shared CPU cores
@torch.no_grad()
def test_long_stream_memory_is_flat(model, one_thread):
    """1,002 latent frames at 2×2, chunks of 3, one Euler step: constant state size, flat peak RSS, no NaN."""
    torch.manual_seed(0)
    engine = WMStreamEngine(model, FlowEulerSampler(1), WMStreamConfig())
    state = engine.init_state(1, (2, 2))
    text = WMText(torch.randn(1, 5, 16))
    intrinsics = torch.tensor([[[2.0, 2.0, 1.0, 1.0]]])
    cc = torch.cat([torch.eye(4).reshape(1, 1, 16), intrinsics], -1).expand(1, 3, 20)
    cam = WMCameraInputs(cc, torch.zeros(1, 12, 3, 2, 2))
    bad = torch.zeros((), dtype=torch.bool)
    stats = {}
    for step in range(334):
        clean = engine.denoise_chunk(state, torch.randn(1, C, 3, 2, 2), text, cam,
                                     first_frame=torch.randn(1, C, 2, 2) if step == 0 else None)  # fmt: skip
        state = engine.advance(state, clean, text, cam)
        bad |= ~torch.isfinite(clean).all()
        if state.frame in (99, 1002):
            stats[state.frame] = (state.nbytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert state.frame == 1002 and not bool(bad)
    (bytes_100, rss_100), (bytes_1000, rss_1000) = stats[99], stats[1002]
    print(f"state bytes {bytes_100} -> {bytes_1000}, peak RSS {rss_100} -> {rss_1000} KiB")
    assert bytes_1000 == bytes_100
    assert rss_1000 <= 1.05 * rss_100


def test_chunks_the_stream_cannot_take_raise_clearly(model: SanaWM) -> None:
    engine = WMStreamEngine(model, FlowEulerSampler(num_steps=1), WMStreamConfig(causal=WINDOW))
    inp = make_inputs(frames=1)
    state = engine.init_state(B, (H, W))
    lat, t, text, cam = inp["latents"], inp["timesteps"], inp["text"], inp["camera"]
    with pytest.raises(ValueError, match=r"latents must be \(B, C=4"):
        engine.advance(state, lat[:, :3], text, cam, timesteps=t)
    with pytest.raises(ValueError, match="do not fit this stream"):
        engine.advance(state, torch.randn(B, C, 1, H + 1, W), text, cam, timesteps=t)
    with pytest.raises(ValueError, match=r"text hidden states must be \(B, L, 16\)"):
        engine.advance(state, lat, WMText(text.hidden_states[..., :8], text.attention_mask), cam, timesteps=t)
    assert engine.advance(state, lat, text, cam, timesteps=t).frame == 1
