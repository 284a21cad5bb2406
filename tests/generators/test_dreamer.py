"""The Dreamer's streaming loop reproduces the training-time chunk-by-chunk sampler on the shipped models."""

from __future__ import annotations

import torch

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.generators.train import wm_data


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_stream_equals_chunk_causal_sampler_of_training() -> None:
    models = zoo.load("rooms-128")
    from sana_world.data.pool import ClipPool, PoolConfig, pool_generator

    pool = ClipPool(PoolConfig(trajectories=2, steps=4, workers=0, seed=1_000_000), progress=False)
    clip = pool.clips(5, 2, pool_generator(0, 1, 0))  # rgb (2, 5, 128, 128, 3)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 16, 5, 16, 16, generator=g)
    # 1. training's sampler: one chunk-causal pass over the clip per Euler step, chunk after chunk
    images, K = wm_data.to_clip_images(clip["rgb"], clip["K"], 128)
    with torch.no_grad():
        x0 = wm_data.encode_latent_frames(models.codec, images, 1)
    cam = wm_data.build_camera_inputs(clip["c2w"], K, 128, (16, 16), 1)
    emb = models.text.encode(clip["captions"])
    ref = wm_data.dream(models.world_model, x0[:, :, 0], noise, emb, cam, {"chunk_size": 1},
                        wm_data.chunk_bounds(5, 1)[1:], 2, 2.0)  # (2, 16, 5, 16, 16)
    # 2. the streaming Dreamer from the same anchor, poses and noise
    dreamer = Dreamer(models, DreamerConfig(num_steps=2, shift=2.0))
    state = dreamer.start(clip["rgb"][:, 0], clip["c2w"][:, 0], clip["K"], clip["captions"])
    for t in range(1, 5):
        _, state = dreamer.step(state, clip["c2w"][:, t], noise=noise[:, :, t:t + 1])
        err = (state.last - ref[:, :, t]).abs().max() / ref[:, :, t].abs().max()
        assert err < 1e-4, (t, float(err))
    assert state.frame == 5


def test_self_forcing_rollout_is_the_dreamers_rollout() -> None:
    """The trainer's self-forcing context (wm_data.stream_rollout) is what the Dreamer dreams, re-noising
    included: same anchor, poses, sample noise and context noise -> same latent frames."""
    models = zoo.load("rooms-128")
    from sana_world.data.pool import ClipPool, PoolConfig, pool_generator

    pool = ClipPool(PoolConfig(trajectories=2, steps=4, workers=0, seed=1_000_001), progress=False)
    clip = pool.clips(5, 2, pool_generator(0, 1, 0))  # rgb (2, 5, 128, 128, 3)
    noise = torch.randn(2, 16, 5, 16, 16, generator=torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(9)
    ctx_noise = torch.cat([torch.zeros(2, 16, 1, 16, 16)] + [torch.randn(2, 16, 1, 16, 16, generator=draws)
                                                              for _ in range(4)], dim=2)  # (2, 16, 5, 16, 16)
    images, K = wm_data.to_clip_images(clip["rgb"], clip["K"], 128)
    with torch.no_grad():
        x0 = wm_data.encode_latent_frames(models.codec, images, 1)
    cam = wm_data.build_camera_inputs(clip["c2w"], K, 128, (16, 16), 1)
    emb = models.text.encode(clip["captions"])
    ref = wm_data.stream_rollout(models.world_model, x0[:, :, 0], noise, ctx_noise, emb, cam,
                                 wm_data.chunk_bounds(5, 1), 1, 2.0, 0.5)  # (2, 16, 5, 16, 16)
    assert ref.shape == (2, 16, 5, 16, 16) and torch.equal(ref[:, :, 0], x0[:, :, 0])
    dreamer = Dreamer(models, DreamerConfig(num_steps=1, shift=2.0, context_sigma=0.5))
    state = dreamer.start(clip["rgb"][:, 0], clip["c2w"][:, 0], clip["K"], clip["captions"])
    g = torch.Generator().manual_seed(9)
    for t in range(1, 5):
        _, state = dreamer.step(state, clip["c2w"][:, t], generator=g, noise=noise[:, :, t:t + 1])
        err = (state.last - ref[:, :, t]).abs().max() / ref[:, :, t].abs().max()
        assert err < 1e-4, (t, float(err))
    # a different context noise level changes the later frames (the state really carries the re-noising)
    other = wm_data.stream_rollout(models.world_model, x0[:, :, 0], noise, ctx_noise, emb, cam,
                                   wm_data.chunk_bounds(5, 1), 1, 2.0, 0.0)
    assert torch.equal(other[:, :, 1], ref[:, :, 1]) and not torch.allclose(other[:, :, 2:], ref[:, :, 2:])


def test_context_sigma_appends_a_renoised_frame() -> None:
    """context_sigma s: the sampled frame is unchanged, the state gets ((1 - s) z + s eps) at timestep 1000 s."""
    import pytest

    models = zoo.load("rooms-128")
    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (1, 128, 128, 3), generator=g, dtype=torch.uint8)
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    c2w1 = torch.eye(4)[None].clone()
    c2w1[0, 2, 3] = 0.1
    noise = torch.randn(1, 16, 1, 16, 16, generator=g)
    plain, renoised = (Dreamer(models, DreamerConfig(context_sigma=s)) for s in (0.0, 0.5))
    state = renoised.start(rgb, torch.eye(4)[None], K, ["a room"])
    _, s0 = plain.step(state, c2w1, noise=noise)
    _, s5 = renoised.step(state, c2w1, generator=torch.Generator().manual_seed(7), noise=noise)
    assert torch.equal(s0.last, s5.last)  # the dreamed frame itself does not depend on it
    # the reference: the same pieces by hand
    cam = renoised._camera(state.c2w0, c2w1, state.K, (128, 128), (16, 16))
    z = s5.last[:, :, None]
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(7))
    ref = renoised.engine.advance(state.stream, 0.5 * z + 0.5 * eps, state.text, cam,
                                  timesteps=torch.full((1, 1), 500.0))
    for name, t in ref.tensors().items():
        torch.testing.assert_close(s5.stream.tensors()[name], t, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(s0.stream.tensors()[n], t) for n, t in ref.tensors().items())
    # the zoo default and its validation
    cfg = DreamerConfig.from_zoo({"shift": 3.0, "context_sigma": 0.2, "not_a_field": 1}, num_steps=2)
    assert (cfg.shift, cfg.context_sigma, cfg.num_steps) == (3.0, 0.2, 2)
    assert DreamerConfig.from_zoo(zoo.entry("rooms-128").dream_defaults).context_sigma == 1.0  # fused
    with pytest.raises(ValueError, match="context_sigma"):
        DreamerConfig(context_sigma=1.01)


def test_bf16_stays_close_to_fp32() -> None:
    """bf16 autocast on the device at hand (CUDA, else the CPU) against the fp32 reference, one step; the
    camera geometry stays fp32 under autocast, so the CPU path runs at all (its cross products need it)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = zoo.load("rooms-128", device=device)
    g = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (2, 128, 128, 3), generator=g, dtype=torch.uint8)
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    c2w = torch.eye(4).repeat(2, 1, 1)
    frames = {}
    for bf16 in (False, True):
        d = Dreamer(models, DreamerConfig(bf16=bf16))
        state = d.start(rgb, c2w, K, ["a room"] * 2)
        noise = torch.randn(2, 16, 1, 16, 16, generator=torch.Generator().manual_seed(3)).to(device)
        frames[bf16], _ = d.step(state, c2w, noise=noise)
    err = (frames[True].float() - frames[False].float()).square().mean()
    assert 10 * torch.log10(255.0**2 / err.clamp(min=1e-12)) > 30  # dB between the two precisions


def test_observe_appends_the_encoded_frame_clean() -> None:
    models = zoo.load("rooms-128")
    g = torch.Generator().manual_seed(4)
    rgb = torch.randint(0, 256, (2, 2, 128, 128, 3), generator=g, dtype=torch.uint8)  # (B, 2 frames, ...)
    c2w = torch.eye(4).repeat(2, 2, 1, 1)
    c2w[:, 1, 0, 3] = 0.2
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    d = Dreamer(models)
    state = d.start(rgb[:, 0], c2w[:, 0], K, ["a room"] * 2)
    seen = d.observe(state, rgb[:, 1], c2w[:, 1])
    with torch.no_grad():
        z = models.codec.encode(rgb[:, 1])
        cam = d._camera(state.c2w0, c2w[:, 1], state.K, (128, 128), (16, 16))
        ref = d.engine.advance(state.stream, z[:, :, None], state.text, cam)
    assert seen.frame == 2 and torch.equal(seen.last, z)
    for name, t in ref.tensors().items():
        torch.testing.assert_close(seen.stream.tensors()[name], t)
    import pytest

    with pytest.raises(ValueError, match="uint8"):
        d.observe(state, rgb[:1, 1], c2w[:, 1])


def test_start_copies_the_anchor_pose() -> None:
    """Moving the caller's pose tensor in place after start (as a benchmark loop does) leaves the anchor."""
    dreamer = Dreamer(zoo.load("rooms-128"))
    c2w = torch.eye(4)[None].clone()
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    state = dreamer.start(torch.zeros(1, 128, 128, 3, dtype=torch.uint8), c2w, K, ["a room"])
    c2w[:, 2, 3] += 0.5
    assert torch.equal(state.c2w0, torch.eye(4)[None])


def test_bf16_windows_hold_what_the_attention_reads() -> None:
    """Under bf16 the softmax KV windows are stored in bf16 (half the bytes): the first softmax block's window
    holds exactly the fp32 window's values rounded to bf16, which is what its attention reads under autocast;
    later blocks differ by the kernels' round-off only, and the dream stays within it over 5 steps."""
    models = zoo.load("rooms-128")
    g = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (1, 128, 128, 3), generator=g, dtype=torch.uint8)
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    noise = torch.randn(5, 1, 16, 1, 16, 16, generator=g)
    runs = {}
    for window in (torch.float32, torch.bfloat16):
        d = Dreamer(models, DreamerConfig(bf16=True, window_frames=2, context_sigma=0.0))
        d.window_dtype = window
        state = d.start(rgb, torch.eye(4)[None], K, ["a room"])
        first = state.stream.tensors()
        lats = []
        for s in range(5):
            c2w = torch.eye(4)[None].clone()
            c2w[0, 2, 3] = 0.05 * (s + 1)
            _, state = d.step(state, c2w, noise=noise[s])
            lats.append(state.last)
        runs[window] = (first, torch.stack(lats), state.stream)
    (f32, z32, s32), (b16, z16, s16) = runs[torch.float32], runs[torch.bfloat16]
    first_softmax = next(i for i, b in enumerate(s16.blocks) if hasattr(b, "cam_k"))
    for name in ("k", "v", "cam_k", "cam_v"):
        key = f"blocks.{first_softmax}.{name}"
        assert b16[key].dtype == torch.bfloat16 and torch.equal(b16[key], f32[key].bfloat16()), key
    assert rel_err(z16, z32) < 0.02, rel_err(z16, z32)
    assert s16.nbytes() < 0.8 * s32.nbytes()


def test_default_config_is_the_zoo_entrys_and_bad_inputs_raise() -> None:
    import pytest

    models = zoo.load("rooms-128")
    d = Dreamer(models)
    assert d.config == DreamerConfig.from_zoo(models.entry.dream_defaults)
    assert d.config.context_sigma == models.entry.dream_defaults["context_sigma"] > 0
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    rgb = torch.zeros(1, 128, 128, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="list of 1 strings"):
        d.start(rgb, torch.eye(4), K, "a room")
    with pytest.raises(ValueError, match=r"c2w0 must be camera-to-world poses \(1, 4, 4\)"):
        d.start(rgb, torch.eye(4)[:3], K, ["a room"])
    with pytest.raises(ValueError, match="K must be intrinsics"):
        d.start(rgb, torch.eye(4), K[:2], ["a room"])
    state = d.start(rgb, torch.eye(4), K, ["a room"])
    with pytest.raises(ValueError, match=r"c2w must be camera-to-world poses \(1, 4, 4\)"):
        d.step(state, torch.eye(4).repeat(2, 1, 1))
    with pytest.raises(ValueError, match="num_steps must be an int"):
        DreamerConfig(num_steps=1.5)
    with pytest.raises(ValueError, match="float32"):
        Dreamer(zoo.load("rooms-128", dtype=torch.bfloat16))


def test_fp8_dreams_close_to_fp32_on_a_copy() -> None:
    """DreamerConfig(fp8=True): the world model's wide layers run in FP8 (the kernel on CUDA, the emulation
    on the CPU) on a copy, the zoo's model untouched; four steps of a moving camera stay close to
    the fp32 dream, and they differ from it (the layers really are quantised)."""
    from sana_world.nn.fp8 import FP8Linear

    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = zoo.load("rooms-128", device=device)
    g = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (2, 128, 128, 3), generator=g, dtype=torch.uint8)
    K = torch.tensor([[64.0, 0, 64], [0, 64.0, 64], [0, 0, 1]])
    frames = {}
    for fp8 in (False, True):
        d = Dreamer(models, DreamerConfig(fp8=fp8))
        assert any(isinstance(m, FP8Linear) for m in d.model.modules()) == fp8
        c2w = torch.eye(4).repeat(2, 1, 1)
        state = d.start(rgb, c2w, K, ["a room"] * 2)
        out = []
        for i in range(4):  # 1. forward 0.1 m a step
            c2w = c2w.clone()
            c2w[:, 2, 3] += 0.1
            noise = torch.randn(2, 16, 1, 16, 16, generator=torch.Generator().manual_seed(3 + i)).to(device)
            f, state = d.step(state, c2w, noise=noise)
            out.append(f)
        frames[fp8] = torch.stack(out)
    assert not any(isinstance(m, FP8Linear) for m in models.world_model.modules())
    err = (frames[True].float() - frames[False].float()).square().mean()
    psnr = 10 * torch.log10(255.0**2 / err.clamp(min=1e-12))
    assert 30 < psnr < 60, psnr  # dB between the two precisions (36 on the CPU)
