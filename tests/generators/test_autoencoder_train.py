"""Autoencoder trainer on a tiny pool: learns, exports a loadable diffusers folder, time limit, EMA warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sana_world.generators.train.autoencoder import HELDOUT_SEED, AutoencoderTrainConfig, train
from sana_world.generators.train.common import EMA, DistInfo, read_checkpoint_state


def config(out: Path, **kw) -> AutoencoderTrainConfig:
    base = dict(pool_trajectories=4, pool_steps=3, pool_workers=0, resolution=32, batch_size=8,
                eval_trajectories=2, steps=40, out_dir=str(out), progress=False, lr=3e-3, warmup_steps=5)
    base.update(kw)
    return AutoencoderTrainConfig.from_flat(**base)


def test_autoencoder_learns_and_exports(tmp_path: Path) -> None:
    from sana_world.generators.autoencoder import LatentCodec, load_autoencoder

    res = train(config(tmp_path / "ae"))
    assert res.step == 40 and sum(res.losses[-5:]) / 5 < 0.6 * sum(res.losses[:5]) / 5
    report = json.loads((tmp_path / "ae" / "eval.json").read_text())
    assert report["heldout_psnr_db"] == pytest.approx(res.heldout_psnr_db) and report["scaling_factor"] > 0
    ae = load_autoencoder(res.export)
    codec = LatentCodec(ae)
    z = codec.encode(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
    assert z.shape == (1, 16, 4, 4) and abs(codec.scaling_factor - report["scaling_factor"]) < 1e-6


def test_time_limit_stops_early_with_a_checkpoint(tmp_path: Path) -> None:
    res = train(config(tmp_path / "ae", steps=10_000, time_limit_s=1e-3))
    assert res.step == 1 and res.checkpoint.name == "step-00000001"
    with pytest.raises(ValueError, match="time_limit_s"):
        config(tmp_path / "x", time_limit_s=0.0)


def test_supersampled_pool_trains_on_antialiased_frames(tmp_path: Path, monkeypatch) -> None:
    """pool_supersample reaches the training pool and the held-out pool (PoolConfig.supersample)."""
    from helpers import spy_pool_supersample
    from sana_world.generators.train import autoencoder as trainer

    seen = spy_pool_supersample(monkeypatch, trainer)
    train(config(tmp_path / "ae", steps=2, pool_supersample=2))
    assert seen == [2, 2]  # the training pool, then the held-out frames of the score
    assert json.loads((tmp_path / "ae" / "eval.json").read_text())["supersample"] == 2
    with pytest.raises(ValueError, match="pool_supersample"):
        config(tmp_path / "x", pool_supersample=0)


def test_ema_warm_up_forgets_the_init() -> None:
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.999)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(10**7) == 0.999 and ema.decay_at(None) == 0.999
    with torch.no_grad():
        net.weight.fill_(1.0)
    for step in range(1, 101):
        ema.update(net, step)
    assert torch.allclose(ema.model.weight, torch.ones(2, 2), atol=1e-3)  # constant 0.999 would keep ~90% init


def test_decoder_only_fine_tune_keeps_the_latent_space(tmp_path: Path) -> None:
    """freeze_encoder: the export's encoder and scaling factor are exactly the init's, the decoder moved."""
    from safetensors.torch import load_file

    from sana_world.generators.autoencoder import load_autoencoder

    zoo_ae = Path(__file__).resolve().parents[2] / "sana_world" / "zoo" / "rooms-128" / "autoencoder"
    init = load_autoencoder(zoo_ae)
    res = train(config(tmp_path / "ae", steps=3, init_weights=str(zoo_ae), freeze_encoder=True, lr=1e-3))
    tuned = load_autoencoder(res.export)
    assert tuned.config.scaling_factor == init.config.scaling_factor
    before, after = init.state_dict(), tuned.state_dict()
    enc = [k for k in before if k.startswith("encoder.")]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and dec
    assert all(torch.equal(before[k].float(), after[k].float()) for k in enc)
    assert any(not torch.equal(before[k].float(), after[k].float()) for k in dec)
    assert load_file(str(next(res.export.glob("*.safetensors"))))  # a real weights file
    with pytest.raises(ValueError, match="init_weights"):
        config(tmp_path / "x", freeze_encoder=True)
    with pytest.raises(RuntimeError, match="size mismatch|Missing|Unexpected"):
        train(config(tmp_path / "y", steps=1, init_weights=str(zoo_ae), model="f8c16"))


def test_a_larger_decoder_for_the_same_latents(tmp_path: Path) -> None:
    """init_encoder_only: the wide-decoder preset takes the zoo encoder exactly (same latents, same scale)
    and trains a fresh, larger decoder; an encoder of another architecture is refused by name."""
    from sana_world.generators.autoencoder import LatentCodec, load_autoencoder

    zoo_ae = Path(__file__).resolve().parents[2] / "sana_world" / "zoo" / "rooms-128" / "autoencoder"
    init = load_autoencoder(zoo_ae)
    res = train(config(tmp_path / "ae", steps=2, init_weights=str(zoo_ae), freeze_encoder=True,
                       init_encoder_only=True, model="f8c16_lite_wide"))
    wide = load_autoencoder(res.export)
    assert wide.config.scaling_factor == init.config.scaling_factor
    assert tuple(wide.config.decoder_block_out_channels) == (32, 64, 128, 256)
    n_dec = sum(p.numel() for p in wide.decoder.parameters())
    assert n_dec > 3 * sum(p.numel() for p in init.decoder.parameters())
    rgb = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    z_init, z_wide = LatentCodec(init).encode(rgb), LatentCodec(wide).encode(rgb)
    assert torch.allclose(z_init, z_wide, atol=1e-5)  # the same encoder: the same latents
    with pytest.raises(ValueError, match="freeze_encoder"):
        config(tmp_path / "x", init_weights=str(zoo_ae), init_encoder_only=True)
    with pytest.raises(ValueError, match="encoder is not this preset's"):
        train(config(tmp_path / "y", steps=1, init_weights=str(zoo_ae), freeze_encoder=True,
                     init_encoder_only=True, model="f8c16"))


def test_sizes_the_codec_cannot_take_are_refused_before_any_work(tmp_path: Path, capsys) -> None:
    from sana_world.generators.train.autoencoder import main

    with pytest.raises(ValueError, match="resolution=60 is not divisible by the f8c16_lite autoencoder's "
                                         "downsampling factor 8"):
        config(tmp_path / "x", resolution=60)
    with pytest.raises(SystemExit) as e:
        main(["--resolution", "60", "--out-dir", str(tmp_path / "aebad")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: --resolution 60 is not divisible" in err and "Traceback" not in err
    assert not (tmp_path / "aebad").exists()


def test_trains_on_generated_shards_without_held_out_scenes(tmp_path: Path) -> None:
    """data_dir: frames of ``data generate`` shards (resized to the training resolution); a trajectory of a
    held-out scene seed is never trained on; the checkpoint fingerprints the dataset."""
    from sana_world.data import generate
    from sana_world.generators.train.autoencoder import ShardSource

    data = tmp_path / "ds"
    generate(data, num_trajectories=2, steps=1, height=48, width=48, seed=HELDOUT_SEED - 1,
             allow_heldout=True, progress=False)  # scene seeds HELDOUT_SEED - 1 (training), HELDOUT_SEED
    cfg = config(tmp_path / "ae", data_dir=str(data), verify_data=False, steps=2, batch_size=4,
                 eval_trajectories=1, pool_steps=1)
    source = ShardSource(cfg, DistInfo())
    assert source.frames.where == [(0, 0)] and source.frames.num_frames == 2
    assert source.batch_at(1).shape == (4, 3, 32, 32) and source.sample().shape == (2, 32, 32, 3)
    res = train(cfg)
    assert res.step == 2 and (res.export / "config.json").is_file()
    assert read_checkpoint_state(res.checkpoint)["data"]["source"] == "shards"
    assert json.loads((res.checkpoint / "config.json").read_text())["inputs"]["data_dir"]["sha256"]
