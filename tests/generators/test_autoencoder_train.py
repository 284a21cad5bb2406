"""Autoencoder trainer on a tiny pool: learns, exports a loadable diffusers folder, time limit, EMA warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sana_world.generators.train.autoencoder import AutoencoderTrainConfig, train
from sana_world.generators.train.common import EMA


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


def test_ema_warm_up_forgets_the_init() -> None:
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.999)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(10**7) == 0.999 and ema.decay_at(None) == 0.999
    with torch.no_grad():
        net.weight.fill_(1.0)
    for step in range(1, 101):
        ema.update(net, step)
    assert torch.allclose(ema.model.weight, torch.ones(2, 2), atol=1e-3)  # constant 0.999 would keep ~90% init
