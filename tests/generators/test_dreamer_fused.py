"""Context sigma 1: a dreamed frame enters the stream as its own sampling noise, so with one sampler step the
sampling pass is the append (one pass over one frame per step). The streamed dream then equals the training
forward of a model trained with every frame after the anchor at sigma 1: one chunk-causal pass over
[anchor; noise ...] at timesteps [0, 1000, ...]."""

from __future__ import annotations

import pytest
import torch

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.generators.train import wm_data
from sana_world.samplers import FlowEulerSampler
from sana_world.world_model.streaming import WMStreamEngine


def test_fused_stream_equals_the_sigma_one_training_pass() -> None:
    models = zoo.load("rooms-128")
    from sana_world.data.pool import ClipPool, PoolConfig, pool_generator

    pool = ClipPool(PoolConfig(trajectories=2, steps=5, workers=0, seed=1_000_002), progress=False)
    clip = pool.clips(6, 2, pool_generator(0, 1, 0))  # rgb (2, 6, 128, 128, 3)
    noise = torch.randn(2, 16, 6, 16, 16, generator=torch.Generator().manual_seed(4))
    images, K = wm_data.to_clip_images(clip["rgb"], clip["K"], 128)
    with torch.no_grad():
        x0 = wm_data.encode_latent_frames(models.codec, images, 1)  # (2, 16, 6, 16, 16)
    cam = wm_data.build_camera_inputs(clip["c2w"], K, 128, (16, 16), 1)
    emb = models.text.encode(clip["captions"])
    # 1. training's forward: one chunk-causal pass, the anchor clean, every later frame at sigma 1
    x = torch.cat([x0[:, :, :1], noise[:, :, 1:]], dim=2)
    sigma = torch.ones(2, 6)
    sigma[:, 0] = 0.0
    clean = 1.0 - sigma
    with torch.no_grad():
        v = wm_data.velocity(models.world_model, x, sigma, clean, emb, cam, {"chunk_size": 1}).float()
    ref = noise - v  # (2, 16, 6, 16, 16): x0 = x1 - v, the one Euler step from sigma 1
    # 2. the streaming Dreamer at context sigma 1, one pass per frame
    d = Dreamer(models, DreamerConfig(num_steps=1, context_sigma=1.0))
    assert d.config.fused
    state = d.start(clip["rgb"][:, 0], clip["c2w"][:, 0], clip["K"], clip["captions"])
    for t in range(1, 6):
        _, state = d.step(state, clip["c2w"][:, t], noise=noise[:, :, t:t + 1])
        assert state.pending is None and state.frame == t + 1
        err = (state.last - ref[:, :, t]).abs().max() / ref[:, :, t].abs().max()
        assert err < 1e-4, (t, float(err))
    # the frames do depend on the state: the same noise from the anchor alone gives other frames at t >= 2
    alone = d.start(clip["rgb"][:, 0], clip["c2w"][:, 0], clip["K"], clip["captions"])
    _, alone = d.step(alone, clip["c2w"][:, 5], noise=noise[:, :, 5:6])
    assert (alone.last - ref[:, :, 5]).abs().max() > 1e-2


def test_fused_step_is_sample_then_append_of_its_noise() -> None:
    """The one pass equals denoise_chunk, then advance of the noise at timestep 1000; several sampler steps at
    context sigma 1 take the unfused path and append the initial noise the same way."""
    models = zoo.load("rooms-128")
    g = torch.Generator().manual_seed(5)
    rgb = torch.randint(0, 256, (2, 128, 128, 3), generator=g, dtype=torch.uint8)
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    c2w1 = torch.eye(4).repeat(2, 1, 1)
    c2w1[:, 2, 3] = 0.1
    noise = torch.randn(2, 16, 1, 16, 16, generator=g)
    for num_steps in (1, 2):
        d = Dreamer(models, DreamerConfig(num_steps=num_steps, context_sigma=1.0, defer_append=False))
        assert d.config.fused == (num_steps == 1)
        state = d.start(rgb, torch.eye(4).repeat(2, 1, 1), K, ["a room", "a hall"])
        _, out = d.step(state, c2w1, noise=noise)
        cam = d._camera(state.c2w0, c2w1, state.K, (128, 128), (16, 16))
        z = d.engine.denoise_chunk(state.stream, noise, state.text, cam)
        ref = d.engine.advance(state.stream, noise, state.text, cam, timesteps=torch.full((2, 1), 1000.0))
        torch.testing.assert_close(out.last, z[:, :, 0], rtol=1e-4, atol=1e-5)
        for name, t in ref.tensors().items():
            torch.testing.assert_close(out.stream.tensors()[name], t, rtol=1e-4, atol=1e-5)


def test_denoise_and_append_needs_one_euler_step() -> None:
    models = zoo.load("rooms-128")
    engine = WMStreamEngine(models.world_model, FlowEulerSampler(2, 2.0))
    state = engine.init_state(1, (16, 16), torch.device("cpu"))
    text = Dreamer(models).encode_text(["a room"])
    with pytest.raises(ValueError, match="one-step"):
        engine.denoise_and_append(state, torch.randn(1, 16, 1, 16, 16), text)
