"""Flow-matching trainer: CPU smoke run, exact resume, checkpoint files and errors, the sigma sampler."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from helpers import tiny_train_state, tiny_train_step
from sana_world.generators.image.dit import PRESETS
from sana_world.generators.train.common import (
    EMA,
    CheckpointError,
    DistInfo,
    autocast,
    grad_clip,
    latest_checkpoint,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
    warmup_cosine,
)
from sana_world.generators.train.flow_matching import (
    FlowMatchingConfig,
    ShardFrames,
    StreamFrames,
    build_parser,
    sample_sigmas,
    shift_sigma,
    train,
)

RES = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 GT trajectories of 8 frames at 16x16 (32 frames), rendered by the torch caster."""
    from sana_world.data import generate

    root = tmp_path_factory.mktemp("gt") / "ds"
    generate(root, num_trajectories=4, steps=7, height=RES, width=RES, shard_size=2, seed=0, progress=False)
    return root


def _config(dataset, out_dir, **kw) -> FlowMatchingConfig:
    # the tiny preset with pixel latents (3 ch), procedural captions (256-d) and patch 2: 64 tokens
    model = dataclasses.replace(PRESETS["tiny"](), in_channels=3, caption_channels=256, patch_size=2,
                                sample_size=RES)
    base = dict(model=model, data_dir=str(dataset), resolution=RES, batch_size=8, lr=2e-3, warmup_steps=2,
                grad_clip=1.0, ema_decay=0.9, out_dir=str(out_dir), progress=False, log_every=5, seed=0)
    return FlowMatchingConfig.from_flat(**{**base, **kw})  # lr= etc. go into the nested optim / run


def _weights(ckpt, name):
    return load_file(str(ckpt / name))


def test_smoke_loss_falls(dataset, tmp_path) -> None:
    result = train(_config(dataset, tmp_path / "run", steps=30, ckpt_every=100, sample_every=30,
                           sample_steps=2, num_samples=2))
    losses = np.array(result.losses)
    first, last = losses[:5].mean(), losses[-5:].mean()
    print(f"smoke: first-5 mean {first:.4f}, last-5 mean {last:.4f}")
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert last < 0.5 * first, (first, last)
    assert result.step == 30 and result.checkpoint.name == "step-00000030"
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def test_exact_resume(dataset, tmp_path) -> None:
    n = 4
    decay = dict(decay_steps=2 * n - 1, min_lr_ratio=0.2)  # the cosine anneal crosses the resume point
    straight = train(_config(dataset, tmp_path / "a", steps=2 * n, ckpt_every=n, **decay))
    first = train(_config(dataset, tmp_path / "b", steps=n, ckpt_every=n, **decay))  # "killed" after step n
    second = train(_config(dataset, tmp_path / "b", steps=2 * n, ckpt_every=n, resume=True, **decay))
    resumed = np.array(first.losses + second.losses)
    ref = np.array(straight.losses)
    print(f"resume: max relative loss difference {np.max(np.abs(resumed - ref) / np.abs(ref)):.3e}")
    np.testing.assert_allclose(resumed, ref, rtol=1e-6, atol=0)
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a, b = _weights(straight.checkpoint, name), _weights(second.checkpoint, name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # a config change that would break exactness is refused; so is mixing a fresh run into old checkpoints
    with pytest.raises(ValueError, match="lr"):
        train(_config(dataset, tmp_path / "b", steps=3 * n, lr=1e-3, resume=True, **decay))
    with pytest.raises(ValueError, match="decay_steps"):
        train(_config(dataset, tmp_path / "b", steps=3 * n, resume=True))
    with pytest.raises(FileExistsError, match="resume=True"):
        train(_config(dataset, tmp_path / "b", steps=3 * n, **decay))
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        train(_config(dataset, tmp_path / "empty", steps=n, resume=True))


def test_lr_schedule() -> None:
    f = [lr_factor(s, 4, 0) for s in range(8)]  # warm-up then constant
    assert f == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    c = [lr_factor(s, 2, 10, 0.1) for s in range(14)]  # warm-up, cosine 1 -> 0.1 at step 10, then held
    assert c[0] == 0.5 and c[1] == 1.0 and c[9] == pytest.approx(0.1) and c[13] == pytest.approx(0.1)
    assert c[5] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(c[1:], c[2:]))  # never rises after the peak
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, 2, 10, 0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0 * x for x in c[:12]])
    for bad in (dict(decay_steps=2), dict(min_lr_ratio=1.5), dict(decay_steps=-1)):
        with pytest.raises(ValueError):
            lr_factor(0, **{"warmup_steps": 4, "decay_steps": 10, **bad})


def test_data_order_is_a_function_of_step_and_rank(dataset) -> None:
    ranks = [ShardFrames(str(dataset), 5, 4, DistInfo(rank=r, world_size=2), verify=False) for r in (0, 1)]
    n = ranks[0].num_frames  # 32 frames: 4 steps x 2 ranks x 4 images per epoch
    epoch0 = [i for step in range(1, 5) for frames in ranks for i in frames.indices(step)]
    assert sorted(epoch0) == list(range(n))  # every frame once per epoch, ranks disjoint
    epoch1 = [i for step in range(5, 9) for frames in ranks for i in frames.indices(step)]
    assert sorted(epoch1) == list(range(n)) and epoch1 != epoch0  # a new permutation each epoch
    fresh = ShardFrames(str(dataset), 5, 4, DistInfo(rank=1, world_size=2), verify=False)
    rgb, captions = fresh.batch_at(7)  # no iterator state: a resumed run reads the same frames
    torch.testing.assert_close(rgb, ranks[1].batch_at(7)[0])
    assert rgb.shape == (4, RES, RES, 3) and rgb.dtype == torch.uint8 and len(captions) == 4
    # the on-device stream: batch (n - 1) * W + r of the GPUStream, the same for the same step
    cfg = _config(dataset, "unused", data="stream", stream_steps=2, batch_size=4)
    a, b = StreamFrames(cfg, DistInfo()), StreamFrames(cfg, DistInfo())
    (ra, ca), (rb, cb) = a.batch_at(2), b.batch_at(2)
    assert torch.equal(ra, rb) and ca == cb and ra.shape == (4, RES, RES, 3)


# ---------------------------------------------------------------------------------------------------------
# Checkpoint files (common.py), on a small MLP
# ---------------------------------------------------------------------------------------------------------


def test_checkpoint_files_round_trip_and_pruning(tmp_path) -> None:
    state = tiny_train_state()
    for _ in range(5):
        tiny_train_step(state)
        save_checkpoint(tmp_path, state, {"lr": 1e-2, "name": "mlp"}, keep_last=2)
    ckpt = latest_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000005"]
    assert ckpt.name == "step-00000005"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["config.json", "ema.safetensors", "model.safetensors", "optimizer.safetensors",
                     "rng-rank00000.safetensors", "trainer_state.json"]
    for name in names:
        if name.endswith(".safetensors"):
            with safe_open(str(ckpt / name), framework="pt") as f:  # real safetensors files
                assert f.metadata()["step"] == "5"
    assert json.loads((ckpt / "config.json").read_text()) == {"lr": 1e-2, "name": "mlp"}
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 5
    # exact restore: weights, EMA, optimizer, scheduler, RNG
    expected_rand = torch.rand(3)
    other = tiny_train_state(seed=1)
    load_checkpoint(ckpt, other)
    assert torch.equal(torch.rand(3), expected_rand)
    assert other.step == 5 and other.scheduler.last_epoch == state.scheduler.last_epoch
    for a, b in zip(state.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(state.ema.model.parameters(), other.ema.model.parameters()):
        assert torch.equal(a, b)
    a, b = state.optimizer.state_dict(), other.optimizer.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for pid, st in a["state"].items():
        assert st.keys() == b["state"][pid].keys()
        assert all(torch.equal(v, b["state"][pid][k]) for k, v in st.items())


def test_corrupted_or_missing_checkpoint_raises(tmp_path) -> None:
    state = tiny_train_state()
    tiny_train_step(state)
    ckpt = save_checkpoint(tmp_path, state, {})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "step-00000099", tiny_train_state())
    # one flipped byte: the hash catches it
    path = ckpt / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 mismatch"):
        load_checkpoint(ckpt, tiny_train_state())
    # truncation: the size check names the file
    path.write_bytes(bytes(blob[:100]))
    with pytest.raises(CheckpointError, match="model.safetensors: 100 bytes"):
        load_checkpoint(ckpt, tiny_train_state())
    # without verification, the unreadable file itself is reported
    (ckpt / "trainer_state.json").write_text(json.dumps(
        {**json.loads((ckpt / "trainer_state.json").read_text()), "files": {}}))
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable safetensors"):
        load_checkpoint(ckpt, tiny_train_state(), verify=False)
    (ckpt / "optimizer.safetensors").unlink()
    (ckpt / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        load_checkpoint(ckpt, tiny_train_state())
    assert latest_checkpoint(tmp_path) is None  # an incomplete directory is never picked for resume
    # a model of another shape
    ckpt = save_checkpoint(tmp_path / "b", state, {})
    wrong = tiny_train_state()
    wrong.model[2] = torch.nn.Linear(8, 3)
    with pytest.raises(CheckpointError, match="(?s)does not fit Sequential.*size mismatch"):
        load_checkpoint(ckpt, wrong)


# ---------------------------------------------------------------------------------------------------------
# Pieces of the objective and helpers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [1.0, 3.0, 4.0])
def test_logit_normal_shift_sampler(s: float) -> None:
    assert float(shift_sigma(torch.tensor(0.5), s)) == pytest.approx(s / (1 + s))
    sig = torch.linspace(0, 1, 11)
    torch.testing.assert_close(shift_sigma(sig, s), s * sig / (1 + (s - 1) * sig))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    drawn = sample_sigmas(20_000, 0.2, 0.8, s, g1)
    u = torch.randn(20_000, generator=g2) * 0.8 + 0.2
    torch.testing.assert_close(drawn, s * torch.sigmoid(u) / (1 + (s - 1) * torch.sigmoid(u)))
    # the shift is monotone, so it maps the median sigmoid(mean) to shift(sigmoid(mean))
    median = float(drawn.median())
    want = s * (1 / (1 + math.exp(-0.2))) / (1 + (s - 1) / (1 + math.exp(-0.2)))
    assert median == pytest.approx(want, abs=0.01)
    assert 0 < float(drawn.min()) and float(drawn.max()) < 1


def test_ema_clip_autocast_helpers() -> None:
    model = torch.nn.Linear(3, 1)
    ema = EMA(model, decay=0.75)
    old = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.75 * old + 0.25 * model.weight)
    model.weight.grad = torch.full_like(model.weight, 4.0)
    model.bias.grad = torch.zeros_like(model.bias)
    norm = grad_clip(model.parameters(), 1.0)
    assert norm == pytest.approx(4.0 * math.sqrt(3))
    assert float(model.weight.grad.norm()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="only supported on CUDA"):
        autocast(torch.device("cpu"), bf16=True)


def test_cli_parses_into_config(tmp_path) -> None:
    argv = ["--preset", "tiny", "--steps", "7", "--data-dir", "x", "--no-progress",
            "--adam-betas", "0.8", "0.9"]
    args = vars(build_parser().parse_args(argv))
    cfg = FlowMatchingConfig.from_flat(**args)
    assert cfg.model == "tiny" and cfg.run.steps == 7 and cfg.run.progress is False
    assert cfg.optim.adam_betas == (0.8, 0.9)
    assert cfg.cfg_dropout == 0.1 and cfg.optim.bf16 is False
    assert cfg.optim.warmup_steps == 2000 and cfg.run.out_dir == "runs/flow_matching"  # trainer defaults
    with pytest.raises(ValueError, match="needs data_dir"):
        FlowMatchingConfig()


def test_init_weights_start_the_run_from_a_folder(dataset, tmp_path) -> None:
    """init_weights: step 1 starts from the folder's weights (a fine-tune), not a fresh init; weights of
    another model raise before training."""
    from safetensors.torch import save_file

    from sana_world.generators.image.dit import SanaDiT

    cfg = _config(dataset, tmp_path / "fresh", steps=1, lr=1e-9, warmup_steps=1, ema_decay=0.0)
    torch.manual_seed(123)
    init = {k: v.contiguous() for k, v in SanaDiT(cfg.model).state_dict().items()}
    (tmp_path / "init").mkdir()
    save_file(init, str(tmp_path / "init" / "model.safetensors"))
    fresh = _weights(train(cfg).checkpoint, "model.safetensors")
    tuned = _weights(train(_config(dataset, tmp_path / "tuned", steps=1, lr=1e-9, warmup_steps=1, ema_decay=0.0,
                                   init_weights=str(tmp_path / "init"))).checkpoint, "model.safetensors")
    assert tuned.keys() == init.keys()
    assert all(torch.allclose(tuned[k], init[k], atol=1e-6) for k in init)  # one step at lr 1e-9
    assert max((fresh[k] - init[k]).abs().max() for k in init) > 0.01  # a fresh init is another model
    wrong = dict(init)
    wrong.pop(next(iter(wrong)))
    (tmp_path / "wrong").mkdir()
    save_file(wrong, str(tmp_path / "wrong" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        train(_config(dataset, tmp_path / "bad", steps=1, init_weights=str(tmp_path / "wrong")))


def test_supersampled_pool_trains_on_antialiased_frames(dataset, tmp_path, monkeypatch) -> None:
    """pool_supersample reaches the device pool (PoolConfig.supersample); bad values raise."""
    from helpers import spy_pool_supersample
    from sana_world.data import pool as pool_module

    seen = spy_pool_supersample(monkeypatch, pool_module)
    train(_config(None, tmp_path / "run", data="pool", data_dir=None, pool_trajectories=2, pool_workers=0,
                  stream_steps=3, batch_size=2, steps=1, pool_supersample=2))
    assert seen == [2]
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="pool_supersample"):
            _config(dataset, tmp_path / "x", pool_supersample=bad)


def test_dense_time_feeds_the_model_sigma(dataset, tmp_path) -> None:
    """dense_time: the run's model has timestep_scale 0.001 and fractional timesteps, and its loss calls the
    model at sigma itself (SANA-Sprint's dense time embedding); without it, 1000 sigma."""
    from sana_world.generators.image.dit import SanaDiT
    from sana_world.generators.train.flow_matching import flow_matching_loss

    result = train(_config(dataset, tmp_path / "dense", steps=1, dense_time=True))
    model = json.loads((result.checkpoint / "config.json").read_text())["model"]
    assert model["timestep_scale"] == 1e-3 and model["truncate_timesteps"] is False
    cfg = dataclasses.replace(_config(dataset, tmp_path / "x").model, truncate_timesteps=False)
    net = SanaDiT(cfg)
    seen = []
    net.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    x0, eps = torch.zeros(2, 3, RES, RES), torch.zeros(2, 3, RES, RES)
    emb = torch.zeros(2, 4, 256), torch.ones(2, 4, dtype=torch.bool)
    sigma = torch.tensor([0.25, 0.5])
    flow_matching_loss(net, x0, eps, sigma, *emb, timestep_scale=1e-3)
    flow_matching_loss(net, x0, eps, sigma, *emb)
    assert torch.allclose(seen[0], sigma) and torch.allclose(seen[1], 1000 * sigma)
