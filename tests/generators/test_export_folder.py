"""export_folder: an autoencoder run exported from a checkpoint equals the trainer's own end-of-run export;
a stale export/ is replaced after further training; checkpoint files are verified when exported."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sana_world.generators.train import export_folder
from sana_world.generators.train.common import (
    EMA,
    CheckpointError,
    TrainState,
    save_checkpoint,
    warmup_constant,
)


def test_an_unfinished_autoencoder_run_exports_as_the_trainer_would(tmp_path: Path) -> None:
    """A run stopped after its last checkpoint (no export/, no eval.json): the export is the trainer's
    diffusers folder with the same fitted scaling factor and weights, and it loads strictly."""
    from sana_world.generators.autoencoder import load_autoencoder
    from sana_world.generators.train.autoencoder import AutoencoderTrainConfig, train

    run = tmp_path / "ae"
    cfg = AutoencoderTrainConfig.from_flat(pool_trajectories=2, pool_steps=3, pool_workers=0, resolution=32,
                                           batch_size=4, eval_trajectories=1, steps=2, ckpt_every=1,
                                           out_dir=str(run), progress=False, lr=3e-3, warmup_steps=1)
    res = train(cfg)
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    shutil.rmtree(killed / "export")
    (killed / "eval.json").unlink()
    export_folder.pack_run(killed, tmp_path / "killed.tar")
    ours, theirs = killed / "export", res.export
    assert sorted(p.name for p in ours.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert json.loads((ours / "config.json").read_text()) == json.loads((theirs / "config.json").read_text())
    a, b = (load_file(str(d / "diffusion_pytorch_model.safetensors")) for d in (ours, theirs))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report = json.loads((killed / "eval.json").read_text())
    assert report["scaling_factor"] == json.loads((run / "eval.json").read_text())["scaling_factor"]
    assert report["step"] == 2
    assert load_autoencoder(ours).config.scaling_factor == report["scaling_factor"] != 1.0
    with tarfile.open(tmp_path / "killed.tar") as tar:
        assert "export/diffusion_pytorch_model.safetensors" in tar.getnames()
    assert export_folder.export_is_current(run)  # the trainer's own export is the last checkpoint's


@pytest.mark.parametrize("world_size", [1, 2])
def test_the_scale_sample_renders_only_the_trajectories_it_uses(monkeypatch, world_size: int) -> None:
    """Rank 0's first trajectories, as the trainer's PoolSource.sample picks them, without the rest of the
    pool (the sample is 1,024 frames; 8 here, so 2 trajectories of 4 frames out of 12)."""
    from sana_world.data import pool as pool_module
    from sana_world.generators.train.autoencoder import AutoencoderTrainConfig, PoolSource
    from sana_world.generators.train.common import DistInfo

    cfg = AutoencoderTrainConfig.from_flat(pool_trajectories=12, pool_steps=3, pool_workers=0, resolution=16)
    info = DistInfo(rank=0, world_size=world_size)
    full = PoolSource(cfg, info).pool.rgb[:2].flatten(0, 1)
    rendered = []
    real = pool_module.ClipPool

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            rendered.append(len(self))

    monkeypatch.setattr(pool_module, "ClipPool", Spy)
    monkeypatch.setattr(export_folder, "_SAMPLE_FRAMES", 8)
    got = export_folder._pool_sample(cfg, info)
    assert rendered == [2] and torch.equal(got, full)


def test_a_failed_autoencoder_export_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    """The export is built aside and swapped in on success: a failing finish leaves export/ as it was."""
    from sana_world.generators.train import autoencoder as ae_train

    run = tmp_path / "ae"
    cfg = ae_train.AutoencoderTrainConfig.from_flat(pool_trajectories=2, pool_steps=1, pool_workers=0,
                                                    resolution=16, batch_size=2, eval_trajectories=1, steps=1,
                                                    out_dir=str(run), progress=False, warmup_steps=1)
    ae_train.train(cfg)
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir()}
    monkeypatch.setattr(ae_train, "finish", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        export_folder.export_checkpoint(run)
    assert {p.name: p.read_bytes() for p in (run / "export").iterdir()} == before
    monkeypatch.undo()
    assert export_folder.export_checkpoint(run) == run / "export" and (run / "eval.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # nothing left aside


def _run(tmp_path: Path) -> tuple[Path, TrainState, dict]:
    """A run folder with a checkpoint of a tiny model, in the layout the trainers write."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    state = TrainState(model, opt, warmup_constant(opt, 0), EMA(model, 0.5), step=2)
    config = {"_class_name": "SanaWM", "_trainer": "sana_world.generators.train.world_model",
              "model": {"plucker_stride": 1}, "resolution": 64}
    run = tmp_path / "wm"
    save_checkpoint(run / "checkpoints", state, config)
    return run, state, config


def _train_further(run: Path, state: TrainState, config: dict, step: int) -> None:
    with torch.no_grad():
        state.model.weight.add_(1.0)
    state.ema.update(state.model, step)
    state.step = step
    save_checkpoint(run / "checkpoints", state, config)


def test_a_second_export_after_training_further_is_not_stale(tmp_path: Path) -> None:
    run, state, config = _run(tmp_path)
    export_folder.pack_run(run, tmp_path / "a.tar")
    assert json.loads((run / "export" / "config.json").read_text())["step"] == 2
    _train_further(run, state, config, 4)  # a --resume that trained on
    export_folder.pack_run(run, tmp_path / "b.tar")
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported["step"] == 4 and exported["ema"] is True
    assert export_folder.export_is_current(run)
    ema = load_file(str(run / "checkpoints" / "step-00000004" / "ema.safetensors"))
    got = load_file(str(run / "export" / "model.safetensors"))
    assert all(torch.equal(got[k], ema[k]) for k in ema)
    export_folder.pack_run(run, tmp_path / "raw.tar", raw=True)  # then the EMA again, not the raw weights
    assert json.loads((run / "export" / "config.json").read_text())["ema"] is False
    export_folder.pack_run(run, tmp_path / "c.tar")
    assert json.loads((run / "export" / "config.json").read_text())["ema"] is True


def test_exported_checkpoint_files_are_verified(tmp_path: Path, monkeypatch) -> None:
    run, _, _ = _run(tmp_path)
    real_copy = shutil.copyfile

    def corrupting_copy(src, dst, *args, **kwargs):
        out = real_copy(src, dst, *args, **kwargs)
        data = bytearray(Path(dst).read_bytes())
        data[-1] ^= 0xFF
        Path(dst).write_bytes(bytes(data))
        return out

    monkeypatch.setattr(shutil, "copyfile", corrupting_copy)
    with pytest.raises(CheckpointError, match="sha256"):
        export_folder.export_checkpoint(run)
    assert not (run / "export").exists()
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    ema = run / "checkpoints" / "step-00000002" / "ema.safetensors"
    data = bytearray(ema.read_bytes())
    data[-1] ^= 0xFF
    ema.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="ema.safetensors: sha256 mismatch"):
        export_folder.pack_run(run, tmp_path / "x.tar")
