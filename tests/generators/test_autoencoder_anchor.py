"""Anchored joint fine-tune (anchor_weight): the encoder trains while a frozen copy of the init's encoder holds
its latents near the init's; the export keeps the init's scale and reports the latents' drift."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sana_world.generators.autoencoder import latent_drift
from sana_world.generators.train import run as train_run
from sana_world.generators.train.autoencoder import AutoencoderTrainConfig, train


def config(out: Path, **kw) -> AutoencoderTrainConfig:
    base = dict(pool_trajectories=4, pool_steps=3, pool_workers=0, resolution=32, batch_size=8,
                eval_trajectories=2, steps=4, out_dir=str(out), progress=False, lr=3e-3, warmup_steps=5)
    base.update(kw)
    return AutoencoderTrainConfig.from_flat(**base)


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained autoencoder's export folder: the init (and anchor) of the runs below."""
    return train(config(tmp_path_factory.mktemp("init") / "ae", steps=3)).export


def record_extras(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float] | None]:
    """The ``extra`` scalars every ``RunLoop.end_step`` call logs, in order."""
    seen: list[dict[str, float] | None] = []
    end_step = train_run.RunLoop.end_step

    def recording(self, step, loss, lr, grad_norm, items, extra=None):
        seen.append(extra)
        return end_step(self, step, loss, lr, grad_norm, items, extra)

    monkeypatch.setattr(train_run.RunLoop, "end_step", recording)
    return seen


def test_anchor_weight_is_validated(tmp_path: Path, init: Path) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="anchor_weight must be finite and >= 0"):
            config(tmp_path, anchor_weight=bad, init_weights=str(init))
    for kw in ({}, {"init_weights": str(init), "freeze_encoder": True},
               {"init_weights": str(init), "freeze_encoder": True, "init_encoder_only": True}):
        with pytest.raises(ValueError, match="anchor_weight > 0 .* needs init_weights and refuses freeze_encoder "
                                             "and init_encoder_only"):
            config(tmp_path, anchor_weight=1.0, **kw)
    assert config(tmp_path, anchor_weight=0.5, init_weights=str(init)).anchor_weight == 0.5


def test_anchor_holds_the_latents_near_the_init(tmp_path: Path, init: Path, monkeypatch) -> None:
    """At a high LR a plain fine-tune moves the latents far; a huge anchor weight keeps them much nearer. The
    anchor term is exactly 0 on the first step (E == E0), the export keeps the init's scale, eval.json
    reports the drift."""
    from sana_world.data.pool import ClipPool, PoolConfig
    from sana_world.generators.autoencoder import load_autoencoder
    from sana_world.generators.train.autoencoder import HELDOUT_SEED

    extras = record_extras(monkeypatch)
    e0 = load_autoencoder(init)
    frames = ClipPool(PoolConfig(trajectories=2, steps=3, size=32, workers=0, seed=HELDOUT_SEED),
                      torch.device("cpu"), progress=False).rgb.flatten(0, 1)  # (8, 32, 32, 3) uint8
    drift = {}
    for w in (0.0, 1e4):
        res = train(config(tmp_path / f"w{w}", steps=6, lr=1e-2, warmup_steps=0, init_weights=str(init),
                           anchor_weight=w))
        tuned = load_autoencoder(res.export)
        drift[w] = latent_drift(lambda x, ae=tuned: ae.encode(x).latent, e0.encoder, frames)
    plain, anchored = extras[:6], extras[6:]
    assert plain == [None] * 6 and len(anchored) == 6
    assert anchored[0] == {"anchor_mse": 0.0} and all(e["anchor_mse"] > 0 for e in anchored[1:])
    assert drift[1e4] < 0.2 * drift[0.0], drift
    tuned = load_autoencoder(res.export)
    report = json.loads((tmp_path / "w10000.0" / "eval.json").read_text())
    assert tuned.config.scaling_factor == e0.config.scaling_factor == report["scaling_factor"]
    assert report["anchor_weight"] == 1e4 and 0 < report["anchor_drift"] and math.isfinite(report["anchor_drift"])
    assert "anchor_drift" not in json.loads((tmp_path / "w0.0" / "eval.json").read_text())
    assert any(not torch.equal(a, b) for a, b in zip(e0.encoder.state_dict().values(),
                                                     tuned.encoder.state_dict().values()))  # E trained


def test_resume_anchors_to_the_init_not_the_checkpoint(tmp_path: Path, init: Path, monkeypatch) -> None:
    """E0 comes from init_weights on a resume too: 2 steps + 1 resumed step == 3 steps, exactly."""
    extras = record_extras(monkeypatch)
    whole = train(config(tmp_path / "whole", steps=3, init_weights=str(init), anchor_weight=1.0))
    train(config(tmp_path / "split", steps=2, init_weights=str(init), anchor_weight=1.0))
    resumed = train(config(tmp_path / "split", steps=3, init_weights=str(init), anchor_weight=1.0, resume=True))
    assert resumed.step == 3 and resumed.losses == whole.losses[2:]
    assert extras[-1] == extras[2] and extras[2]["anchor_mse"] > 0


def test_latent_drift_is_the_relative_rms_of_the_latent_change() -> None:
    """Equal encoders drift 0; an encoder that doubles the latents drifts exactly 1; bad frames raise."""
    rgb = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    assert latent_drift(conv, conv, rgb, batch_size=2) == 0.0
    assert latent_drift(lambda x: 2 * conv(x), conv, rgb, batch_size=2) == pytest.approx(1.0, rel=1e-12)
    assert latent_drift(lambda x: conv(x) + 0.1 * conv(x).square().mean().sqrt(), conv, rgb) > 0.05
    with pytest.raises(ValueError, match="uint8"):
        latent_drift(conv, conv, rgb.float())
    with pytest.raises(ValueError, match="all zero"):
        latent_drift(conv, lambda x: 0 * conv(x), rgb)
