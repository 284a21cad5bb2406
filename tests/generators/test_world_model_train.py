"""World-model trainer: CPU smoke run (loss falls, sample video), exact resume (with self-forcing), camera
inputs from the batch's poses, the chunk-causal switch, the dream sampler and config errors."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sana_world.generators.train import wm_data
from sana_world.generators.train.world_model import (
    WorldModelTrainConfig,
    build_parser,
    chunk_kwargs,
    diffusion_forcing_loss,
    train,
)
from sana_world.world_model import SanaWM, tiny
from sana_world.world_model.cameras import WMCameraInputs

RES, FRAMES, STRIDE = 16, 9, 2  # 9 raw frames, stride 2 -> latent frames = raw frames 0, 2, 4, 6, 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny ops on a shared 2-core box run steadier (and faster) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 GT trajectories of 9 frames at 16x16, rendered by the torch caster: one 9-frame clip each."""
    from sana_world.data import generate

    root = tmp_path_factory.mktemp("gt") / "ds"
    generate(root, num_trajectories=4, steps=FRAMES - 1, height=RES, width=RES, shard_size=2, seed=0,
             progress=False)
    return root


def _model_cfg():
    # 2 blocks (block 1 softmax), pixel latents (3 ch), procedural captions (256-d), patch 2: 64 tokens
    # a frame
    return dataclasses.replace(tiny(), in_channels=3, caption_channels=256, num_layers=2, softmax_every_n=2,
                               patch_size=(1, 2, 2), plucker_stride=STRIDE)


def _config(dataset, out_dir, **kw) -> WorldModelTrainConfig:
    base = dict(model=_model_cfg(), data_dir=str(dataset), verify_data=False, clip_frames=FRAMES,
                resolution=RES, batch_size=4, chunk_size=2, lr=2e-3, warmup_steps=2, grad_clip=1.0,
                ema_decay=0.9, out_dir=str(out_dir), progress=False, log_every=5, seed=0)
    return WorldModelTrainConfig.from_flat(**{**base, **kw})  # lr= etc. go into the nested optim / run


@pytest.fixture(scope="module")
def smoke(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    return out, train(_config(dataset, out, steps=30, ckpt_every=100, sample_every=30, sample_steps=2,
                              num_samples=2))


def test_smoke_loss_falls_and_writes_a_sample_video(smoke) -> None:
    from sana_world.video import read_video

    out, result = smoke
    losses = np.array(result.losses)
    first, last = losses[:5].mean(), losses[-5:].mean()
    print(f"smoke: first-5 mean {first:.4f}, last-5 mean {last:.4f}, chunk-causal {result.chunk_causal}")
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert last < 0.6 * first, (first, last)
    assert result.step == 30 and result.checkpoint.name == "step-00000030"
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # dream | GT, 2 clips stacked: 5 latent frames of (2 * 16) x (16 + 2 + 16)
    assert result.samples == [out / "samples" / "step-00000030.mp4"]
    video = read_video(result.samples[0])
    assert video.shape == (5, 2 * RES, 2 * RES + 2, 3) and video.dtype == np.uint8


def test_exact_resume_with_self_forcing(dataset, tmp_path) -> None:
    n = 3
    kw = dict(ckpt_every=n, self_forcing_prob=0.5, self_forcing_steps=1)
    straight = train(_config(dataset, tmp_path / "a", steps=2 * n, **kw))
    first = train(_config(dataset, tmp_path / "b", steps=n, **kw))  # "killed" after step n
    second = train(_config(dataset, tmp_path / "b", steps=2 * n, resume=True, **kw))
    resumed, ref = np.array(first.losses + second.losses), np.array(straight.losses)
    print(f"resume: max relative loss difference {np.max(np.abs(resumed - ref) / np.abs(ref)):.3e}")
    np.testing.assert_allclose(resumed, ref, rtol=1e-6, atol=0)
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(straight.checkpoint / name)), load_file(str(second.checkpoint / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(ValueError, match="chunk_size"):  # a change that breaks exactness is refused
        train(_config(dataset, tmp_path / "b", steps=3 * n, resume=True, **{**kw, "chunk_size": 3}))
    with pytest.raises(FileExistsError, match="resume=True"):
        train(_config(dataset, tmp_path / "b", steps=3 * n, **kw))


def test_bidirectional_without_anchor(dataset, tmp_path) -> None:
    result = train(_config(dataset, tmp_path / "bi", steps=2, chunk_size=None, sample_mode="clip",
                           anchor_frame=False, sample_every=2, sample_steps=1, num_samples=1))
    assert result.chunk_causal is False and np.isfinite(result.losses).all() and result.samples[0].is_file()


def test_camera_inputs_come_from_the_batch_poses(dataset, smoke, tmp_path, monkeypatch) -> None:
    # 1. the model sees camera_conditions built from the step's GT poses (relative to frame 0)
    seen: list[dict] = []
    original = SanaWM.forward

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        seen.append({k: kwargs[k].detach().clone() for k in ("camera_conditions", "chunk_plucker")})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SanaWM, "forward", spy)
    train(_config(dataset, tmp_path / "spy", steps=1))
    monkeypatch.setattr(SanaWM, "forward", original)
    data = wm_data.ShardClips(str(dataset), FRAMES, FRAMES, 0, 4, _dist(), verify=False)
    batch = data.batch_at(1)
    images, K = wm_data.to_clip_images(batch.rgb, batch.K, RES)
    cam = wm_data.build_camera_inputs(batch.c2w, K, RES, (RES, RES), STRIDE)
    cc = seen[0]["camera_conditions"]
    assert cc.shape == (4, 5, 20) and cc[:, 1:, :16].abs().sum() > 0
    assert seen[0]["chunk_plucker"].shape == (4, 12, 5, RES, RES) and seen[0]["chunk_plucker"].any()
    torch.testing.assert_close(cc, cam.camera_conditions)
    torch.testing.assert_close(cc[:, 0, :16], torch.eye(4).flatten().expand(4, 16))
    # 2. with trained weights, other poses (each clip's trajectory reversed) change the loss
    model = SanaWM(_model_cfg())
    model.load_state_dict(load_file(str(smoke[1].checkpoint / "model.safetensors")))
    x0 = wm_data.encode_latent_frames(_pixels(), images, STRIDE)
    gen = torch.Generator().manual_seed(0)
    sigma = torch.rand(4, 5, generator=gen) * 0.8 + 0.1
    eps = torch.randn(x0.shape, generator=gen)
    clean = torch.zeros(4, 5)
    clean[:, 0] = 1
    emb = _text().encode(batch.captions)
    shuffled = wm_data.build_camera_inputs(batch.c2w.flip(1), K, RES, (RES, RES), STRIDE)
    with torch.no_grad():
        losses = [float(diffusion_forcing_loss(model, x0, eps, sigma * (1 - clean), clean, 1 - clean, emb, c,
                                               chunk_kwargs(model, 2))) for c in (cam, shuffled)]
    print(f"loss with GT poses {losses[0]:.6f}, with reversed poses {losses[1]:.6f}")
    assert abs(losses[0] - losses[1]) > 1e-5 * losses[0], losses


def _dist():
    from sana_world.generators.train.common import DistInfo

    return DistInfo()


def _pixels():
    from sana_world.generators.train.flow_matching import PixelCodec

    return PixelCodec()


def _text():
    from sana_world.generators.train.flow_matching import build_text_encoder

    return build_text_encoder("procedural", torch.device("cpu"))


def test_clips_are_a_function_of_step_and_rank(dataset) -> None:
    from sana_world.generators.train.common import DistInfo

    def clips(rank: int) -> wm_data.ShardClips:  # 4 clips, batch 1 on 2 ranks: 2 steps an epoch
        return wm_data.ShardClips(str(dataset), FRAMES, FRAMES, 5, 1, DistInfo(rank=rank, world_size=2),
                                  verify=False)

    ranks = [clips(0), clips(1)]
    epochs = [[i for step in (2 * e + 1, 2 * e + 2) for c in ranks for i in c.indices(step)]
              for e in range(3)]
    assert all(sorted(e) == [0, 1, 2, 3] for e in epochs) and len({tuple(e) for e in epochs}) > 1
    fresh = clips(1)
    a, b = fresh.batch_at(3), ranks[1].batch_at(3)  # no iterator state: a resumed run reads the same clips
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.c2w, b.c2w) and a.captions == b.captions
    assert a.rgb.shape == (1, FRAMES, RES, RES, 3) and a.c2w.shape == (1, FRAMES, 4, 4)
    assert a.K.shape == (1, 3, 3)
    s1, s2 = (wm_data.StreamClips(FRAMES, RES, 0, 2, DistInfo()) for _ in range(2))  # rendered on the device
    x, y = s1.batch_at(2), s2.batch_at(2)
    assert torch.equal(x.rgb, y.rgb) and torch.equal(x.c2w, y.c2w) and x.rgb.shape == (2, FRAMES, RES, RES, 3)


def test_clip_images_and_intrinsics_follow_the_crop() -> None:
    rgb = torch.zeros(1, 3, 16, 24, 3, dtype=torch.uint8)  # (B, F, H, W, 3), wider than tall
    K = torch.tensor([[[20.0, 0.0, 12.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]]])  # centred principal point
    images, K8 = wm_data.to_clip_images(rgb, K, 8)  # centre 16x16 crop, then resize to 8x8
    assert images.shape == (1, 3, 3, 8, 8) and float(images.max()) == -1.0
    torch.testing.assert_close(K8[0], torch.tensor([[10.0, 0.0, 4.0], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]]))
    assert wm_data.latent_frame_indices(9, 2) == [0, 2, 4, 6, 8]
    assert wm_data.latent_frame_indices(17, 8) == [0, 8, 16]
    with pytest.raises(ValueError, match="8k\\+1"):
        wm_data.latent_frame_indices(10, 8)


def test_dream_keeps_anchor_and_future_noise() -> None:
    torch.manual_seed(0)
    model = SanaWM(_model_cfg()).eval()
    B, T = 2, 5
    noise, anchor = torch.randn(B, 3, T, 8, 8), torch.randn(B, 3, 8, 8)
    eye = torch.eye(4).flatten().expand(B, T, 16)
    cam = WMCameraInputs(torch.cat([eye, torch.full((B, T, 4), 4.0)], -1), torch.randn(B, 12, T, 8, 8))
    emb = _text().encode(["a room", "a red ball"])
    chunks = wm_data.chunk_bounds(T, 2)
    assert chunks == [(0, 2), (2, 4), (4, 5)] and wm_data.chunk_bounds(T, None) == [(0, 5)]
    x = wm_data.dream(model, anchor, noise, emb, cam, {}, chunks[:2], num_steps=2, shift=3.0)  # not chunk 2
    assert torch.equal(x[:, :, 0], anchor) and torch.equal(x[:, :, 4:], noise[:, :, 4:])
    assert torch.isfinite(x).all() and not torch.equal(x[:, :, 1:4], noise[:, :, 1:4])


def test_chunk_mode_falls_back_with_a_logged_note(caplog) -> None:
    class Causal(torch.nn.Module):
        def forward(self, x, t, y, mask=None, camera_conditions=None, chunk_plucker=None, chunk_size=None):
            return x

    class Bidirectional(torch.nn.Module):
        def forward(self, x, t, y, mask=None, camera_conditions=None, chunk_plucker=None):
            return x

    assert chunk_kwargs(Causal(), 3) == {"chunk_size": 3} and chunk_kwargs(Causal(), None) == {}
    with caplog.at_level(logging.WARNING):
        assert chunk_kwargs(Bidirectional(), 3) == {}
    assert "BIDIRECTIONALLY" in caplog.text
    has_causal = "chunk_size" in inspect.signature(SanaWM.forward).parameters  # the chunk-causal SanaWM
    assert chunk_kwargs(SanaWM(_model_cfg()), 3) == ({"chunk_size": 3} if has_causal else {})


def test_bad_configs_raise_clearly(dataset) -> None:
    with pytest.raises(ValueError, match=r"clip_frames must be temporal_stride \* k \+ 1"):
        _config(dataset, "x", clip_frames=8)
    with pytest.raises(ValueError, match=r"clip_frames must be .* for temporal stride 4"):
        _config(dataset, "x", model="small", clip_frames=9 + 2)
    with pytest.raises(ValueError, match="plucker_stride"):
        _config(dataset, "x", temporal_stride=4)
    with pytest.raises(ValueError, match="need a chunk_size"):
        _config(dataset, "x", chunk_size=None)
    with pytest.raises(ValueError, match="self-forcing needs >= 2 chunks"):
        _config(dataset, "x", chunk_size=5, sample_mode="clip", self_forcing_prob=0.5)
    with pytest.raises(ValueError, match="needs data_dir"):
        WorldModelTrainConfig()
    with pytest.raises(ValueError, match="unknown model preset"):
        _config(dataset, "x", model="huge")
    cfg = _config(dataset, "x", chunk_size=None, sample_mode="clip")  # bidirectional is fine
    assert cfg.latent_frames == 5
    with pytest.raises(ValueError, match="in_channels"):  # the codec gives 3 channels, not 4
        train(_config(dataset, "x", model=dataclasses.replace(_model_cfg(), in_channels=4)))


def test_cli_parses_into_config() -> None:
    argv = ["--preset", "tiny", "--data-dir", "x", "--clip-frames", "9", "--chunk-size", "none",
            "--sample-mode", "clip", "--no-anchor-frame", "--adam-betas", "0.8", "0.9"]
    args = vars(build_parser().parse_args(argv))
    cfg = WorldModelTrainConfig.from_flat(**args)
    assert cfg.model == "tiny" and cfg.chunk_size is None and cfg.anchor_frame is False
    assert cfg.clip_frames == 9 and cfg.latent_frames == 5 and cfg.optim.adam_betas == (0.8, 0.9)
    assert cfg.optim.warmup_steps == 1000 and cfg.run.out_dir == "runs/world_model"  # trainer defaults


def test_pool_latent_cache_equals_per_step_encoding() -> None:
    """Cached pool latents gathered per clip == encoding the clip's frames that step (an AE codec)."""
    from sana_world.data.pool import PoolConfig
    from sana_world.generators.autoencoder import AE_PRESETS, build_autoencoder
    from sana_world.generators.train.common import DistInfo
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    data = wm_data.PoolClips(PoolConfig(trajectories=3, steps=6, size=32, workers=0, seed=5), 5, 0, 2, info)
    from sana_world.generators.autoencoder import LatentCodec

    torch.manual_seed(0)
    codec = LatentCodec(build_autoencoder(AE_PRESETS["f8c16_lite"]())).eval().requires_grad_(False)
    before = data.batch_at(3)
    assert before.latents is None
    data.cache_latents(codec, 32, bf16=False, batch=5)  # a slice size that splits trajectories
    batch = data.batch_at(3)
    assert torch.equal(batch.rgb, before.rgb)
    images, _ = wm_data.to_clip_images(batch.rgb, batch.K, 32)
    ref = wm_data.encode_latent_frames(codec, images, 1)  # (B, C, T, h, w)
    torch.testing.assert_close(batch.latents.transpose(1, 2), ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().max() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_step_matches_eager() -> None:
    """The captured forward + backward gives the eager loss and gradients, step after step."""
    from sana_world.generators.train.graphs import GraphedLoss
    from sana_world.generators.train.world_model import graph_loss
    from sana_world.generators.text_encoders import TextEmbedding

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = SanaWM(_model_cfg()).to(dev)
    chunk_kw = chunk_kwargs(model, 1)
    fn = graph_loss(model, chunk_kw, dev, bf16=False)
    graphed = GraphedLoss(fn, model)
    B, T, h = 2, 5, 8
    for step in range(3):
        g = torch.Generator(dev).manual_seed(step)
        c2w = torch.eye(4, device=dev).repeat(B, 2 * T - 1, 1, 1)
        c2w[:, :, 2, 3] = 0.1 * torch.arange(2 * T - 1, device=dev)
        K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]], device=dev).repeat(B, 1, 1)
        cam = wm_data.build_camera_inputs(c2w, K, RES, (h, h), STRIDE)
        inputs = dict(x0=torch.randn(B, 3, T, h, h, device=dev, generator=g),
                      eps=torch.randn(B, 3, T, h, h, device=dev, generator=g),
                      sigma=torch.rand(B, T, device=dev, generator=g), clean=torch.zeros(B, T, device=dev),
                      loss_mask=torch.ones(B, T, device=dev), hidden=torch.randn(B, 4, 256, device=dev, generator=g),
                      mask=torch.ones(B, 4, dtype=torch.bool, device=dev),
                      camera_conditions=cam.camera_conditions, chunk_plucker=cam.chunk_plucker)
        loss = graphed(**inputs).clone()
        params = [p for p in model.parameters() if p.requires_grad]
        buffers = [p.grad for p in params]  # the tensors the graph writes every replay
        grads = [b.clone() for b in buffers]
        for p in params:
            p.grad = None
        ref = fn(**inputs)
        ref.backward()
        torch.testing.assert_close(loss, ref.detach(), rtol=1e-4, atol=1e-6)
        for gg, p in zip(grads, params):
            torch.testing.assert_close(gg, p.grad, rtol=1e-3, atol=1e-5)
        for p, b in zip(params, buffers):
            p.grad = b
        TextEmbedding(inputs["hidden"], inputs["mask"])  # the inputs are a valid embedding


def test_frame_sigmas_shares_at_one_and_at_the_context_level(dataset, tmp_path):
    from sana_world.generators.train.world_model import frame_sigmas

    cfg = _config(dataset, tmp_path, sigma_one_prob=0.3, context_sigma_prob=0.4, context_sigma_value=0.5)
    gen = torch.Generator().manual_seed(0)
    s = frame_sigmas(cfg, 400, 50, gen, torch.device("cpu"))  # (B, T)
    assert s.shape == (400, 50) and ((s > 0) & (s <= 1)).all()
    assert abs((s == 1.0).float().mean().item() - 0.3) < 0.01
    assert abs((s == 0.5).float().mean().item() - 0.4) < 0.01
    # without the context share: the same draws as the code before the option existed (a shifted
    # logit-normal, then one uniform draw for the frames at 1), so older runs resume exactly
    from sana_world.generators.train.flow_matching import sample_sigmas

    for p_one in (0.0, 0.3):
        plain = _config(dataset, tmp_path, sigma_one_prob=p_one)
        g_new, g_old = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a = frame_sigmas(plain, 8, 5, g_new, torch.device("cpu"))
        b = sample_sigmas(40, plain.logit_mean, plain.logit_std, plain.shift, g_old, torch.device("cpu")).view(8, 5)
        if p_one > 0:
            b = torch.where(torch.rand(8, 5, generator=g_old) < p_one, torch.ones_like(b), b)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.equal(g_new.get_state(), g_old.get_state())  # nothing more drawn
    with pytest.raises(ValueError, match="must be <= 1"):
        _config(dataset, tmp_path, sigma_one_prob=0.7, context_sigma_prob=0.4)
    with pytest.raises(ValueError, match="context_sigma_value"):
        _config(dataset, tmp_path, context_sigma_value=1.0)


def test_resume_accepts_fields_added_after_the_checkpoint(tmp_path):
    """A checkpoint written before a config field existed resumes if the run keeps that field's default,
    and refuses otherwise; a resume may name another init (the checkpoint's weights win)."""
    from sana_world.generators.train.run import check_resume, field_defaults
    from sana_world.generators.train.world_model import _RUN_FIELDS

    defaults = field_defaults(WorldModelTrainConfig)
    assert defaults["context_sigma_prob"] == 0.0 and defaults["lr"] == WorldModelTrainConfig.__dataclass_fields__[
        "optim"].default_factory().lr
    run = {**defaults, "lr": 3e-4, "sigma_one_prob": 0.3, "init_weights": "runs/init"}
    saved = {k: v for k, v in run.items() if k not in ("context_sigma_prob", "context_sigma_value")}  # older
    check_resume(saved, {**run, "init_weights": None}, tmp_path, _RUN_FIELDS, defaults)
    with pytest.raises(ValueError, match="context_sigma_prob"):
        check_resume(saved, {**run, "context_sigma_prob": 0.3}, tmp_path, _RUN_FIELDS, defaults)
    with pytest.raises(ValueError, match="context_sigma_prob"):  # without the defaults: refused as before
        check_resume(saved, run, tmp_path, _RUN_FIELDS)
    with pytest.raises(ValueError, match="sigma_one_prob"):
        check_resume(saved, {**run, "sigma_one_prob": 0.2}, tmp_path, _RUN_FIELDS, defaults)


def test_resume_takes_a_moved_dataset_and_changed_worker_settings(dataset, tmp_path, monkeypatch) -> None:
    """The same dataset under another (relative vs absolute) path, with verification and pool workers
    changed, is the same run; the checkpoint records the dataset's fingerprint."""
    import json
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(dataset, tmp_path / "data")
    shutil.copytree(dataset, tmp_path / "moved")
    first = train(_config("data", tmp_path / "run", steps=2, verify_data=True, pool_workers=8))
    inputs = json.loads((first.checkpoint / "config.json").read_text())["inputs"]
    assert set(inputs) == {"data_dir"} and inputs["data_dir"]["path"] == str(tmp_path / "data")
    second = train(_config(str(tmp_path / "moved"), "run", steps=3, resume=True, verify_data=False,
                           pool_workers=2))
    assert second.step == 3


def test_clips_too_large_for_the_device_are_refused_before_any_work(dataset, tmp_path, monkeypatch,
                                                                     capsys) -> None:
    """Pixel latents at 64^2 (36,864 tokens a clip): refused with the token count and what to change,
    before a directory is made; the CLI says it in one line naming flags."""
    from sana_world.generators.train import attention_cost
    from sana_world.generators.train.world_model import main

    monkeypatch.setattr(attention_cost, "device_memory", lambda device: 8 * 1024**3)
    kw = dict(model="tiny", resolution=64, temporal_stride=1, chunk_size=1, clip_frames=9, batch_size=2)
    with pytest.raises(ValueError, match="36,864 tokens per clip .*autoencoder=PATH"):
        train(_config(dataset, tmp_path / "big", **kw))
    assert not (tmp_path / "big").exists()
    cost = attention_cost.clip_cost(tiny(), 9, (64, 64), 2, torch.device("cpu"), masked=True)
    assert cost.tokens == 9 * 64 * 64 and cost.too_large
    argv = ["--preset", "tiny", "--data-dir", str(dataset), "--resolution", "64", "--temporal-stride", "1",
            "--chunk-size", "1", "--clip-frames", "9", "--out-dir", str(tmp_path / "big")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and not (tmp_path / "big").exists()
    assert "error: 36,864 tokens per clip" in err and "--autoencoder PATH" in err
    assert "--allow-large-attention" in err


def test_cpu_attention_estimate_counts_only_the_mask(monkeypatch) -> None:
    """The CPU runs a fused (flash) kernel that keeps no scores: 32 px pixel clips of 17 frames, batch 4
    (8.25 GB peak when measured) fit 16 GB; only the mask (a float bias a call) is counted, on every device."""
    from sana_world.generators.train import attention_cost

    monkeypatch.setattr(attention_cost, "device_memory", lambda device: 16 * 1024**3)
    cpu = attention_cost.clip_cost(tiny(), 17, (32, 32), 4, torch.device("cpu"), masked=True)
    assert not cpu.too_large and cpu.attention_bytes < 4 * 1024**3
    n = cpu.tokens
    assert cpu.attention_bytes % (4 * n * n) == 0
    assert attention_cost.clip_cost(tiny(), 17, (32, 32), 4, torch.device("cpu"), False).attention_bytes == 0
    assert attention_cost.clip_cost(tiny(), 17, (32, 32), 1, torch.device("cpu"), True) == dataclasses.replace(
        cpu, batch=1)  # the batch does not change the estimate


def test_cli_errors_are_one_line_naming_flags(dataset, smoke, capsys) -> None:
    from sana_world.generators.train.world_model import main

    out, _ = smoke
    argv = ["--preset", "tiny", "--data-dir", str(dataset), "--resolution", str(RES), "--clip-frames",
            str(FRAMES), "--temporal-stride", str(STRIDE), "--out-dir", str(out), "--no-verify-data"]
    with pytest.raises(SystemExit) as e:  # a used out_dir
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "pass --resume to continue" in err
    with pytest.raises(SystemExit) as e:  # a resume that is not the saved run
        main([*argv, "--resume", "--steps", "40"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: cannot resume exactly" in err
    assert "model.num_layers (saved 2, now 4)" in err and "--out-dir" in err
    with pytest.raises(SystemExit) as e:  # the config class refuses
        main([*argv, "--clip-frames", "8"])
    assert e.value.code == 2 and "error: clip_frames must be" in capsys.readouterr().err
