"""Pack a run for the trip home: ``export/`` (weights cast to bf16), ``eval.json``, the TensorBoard events
and the last checkpoint's ``config.json``, in one tar (small enough for a device machine's $OUT).

    python -m sana_world.generators.train.export_folder RUN_DIR OUT.tar [--fp32] [--raw]

``RUN_DIR/export`` is the folder ``python -m sana_world.generators.zoo derive`` / ``add`` read. It is
(re)written from the run's latest complete checkpoint unless it already holds that checkpoint's weights (the
world-model and image trainers write checkpoints only; an export made before a ``--resume`` that trained
further is stale and is replaced). Every file of the checkpoint is checked against the size and sha256 its
``trainer_state.json`` records before it is used, and the copied weights again after copying.

* SanaWM / SanaDiT runs: ``export/model.safetensors`` (the EMA weights; ``--raw``: the raw ones) and
  ``export/config.json`` (``_class_name``, the model config under ``config``, ``step``, ``ema`` and the
  training config under ``training``).
* AutoencoderDC runs: what the autoencoder trainer itself writes when a run finishes (its ``finish``: a
  diffusers ``AutoencoderDC`` folder with the latent scale fitted on the run's training pool, and
  ``eval.json`` with the held-out PSNR), so a run stopped early exports as a finished one would. This
  renders again only the trajectories of the run's pool that the scale is fitted on (about 1,024 frames of
  rank 0's share), or reads its shards (on CUDA if there is one); a run that froze the encoder of
  ``--init-weights`` needs that folder (its scaling factor is kept).

An export is built in a hidden sibling folder and swapped in only once complete: a failed export leaves the
previous ``export/`` (and ``eval.json``) as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import torch

from sana_world.generators.train.common import (
    CheckpointError,
    DistInfo,
    latest_checkpoint,
    load_config,
    read_checkpoint_state,
)
from sana_world.checkpoints import file_sha256

_AE_TRAINER = "sana_world.generators.train.autoencoder"
_SAMPLE_FRAMES = 1024  # the training frames the autoencoder's scale is fitted on (PoolSource.sample)


def _bf16_bytes(path: Path) -> bytes:
    """A safetensors file with every floating tensor cast to bf16 (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cast = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    return save(cast, metadata=meta)


def _latest(run: Path, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """The run's newest complete checkpoint and its state (``verify``: file sizes and sha256 checked)."""
    last = latest_checkpoint(run / "checkpoints")
    if last is None:
        raise FileNotFoundError(f"{run} has no complete checkpoint ({run / 'checkpoints'}/step-* with a "
                                "trainer_state.json)")
    return last, read_checkpoint_state(last, verify=verify)


def _weights(last: Path, state: dict[str, Any], raw: bool) -> tuple[str, bool]:
    """The checkpoint file to export (EMA unless ``raw`` or the run kept none) and whether it is the EMA."""
    use_ema = bool(state.get("has_ema", True)) and "ema.safetensors" in state["files"] and not raw
    return ("ema.safetensors" if use_ema else "model.safetensors"), use_ema


def export_is_current(run: str | Path, raw: bool = False) -> bool:
    """Whether ``run/export`` holds the weights of the run's latest checkpoint (EMA unless ``raw``) in the
    export format: a diffusers folder with equal tensors for an autoencoder, else the same step, kind of
    weights and sha256 as the checkpoint file."""
    run = Path(run)
    export = run / "export"
    try:
        cfg = json.loads((export / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    # unverified: the export is compared with the checkpoint's record, and a stale or damaged one is
    # exported again by export_checkpoint, which verifies (hashing the optimizer state once, not twice)
    last, state = _latest(run, verify=False)
    fname, use_ema = _weights(last, state, raw)
    if cfg.get("_class_name") == "AutoencoderDC":
        if "latent_channels" not in cfg:  # the in-house format of an older export: not what derive reads
            return False
        from safetensors.torch import load_file

        from sana_world.generators.zoo import load_state_dict

        try:
            have = load_state_dict(export)
        except Exception:  # no or unreadable weights: export again
            return False
        want = load_file(str(last / fname))
        return set(have) == set(want) and all(torch.equal(have[k], want[k]) for k in want)
    model = export / "model.safetensors"
    return (cfg.get("step") == state["step"] and cfg.get("ema") == use_ema and model.is_file()
            and file_sha256(model) == state["files"][fname]["sha256"])


def export_checkpoint(run: Path, raw: bool = False) -> Path:
    """(Re)write ``run/export`` from the run's latest complete checkpoint (module doc), after verifying the
    checkpoint's files against their recorded sizes and sha256; returns the folder."""
    run = Path(run)
    last, state = _latest(run)
    config = load_config(last)
    fname, use_ema = _weights(last, state, raw)
    if config.get("_class_name") == "AutoencoderDC":
        return _export_autoencoder(run, last, state, config, fname)
    # 1. the weights, copied into a fresh folder and checked against the checkpoint's record
    tmp = _fresh(run / ".export-tmp")
    shutil.copyfile(last / fname, tmp / "model.safetensors")
    rec = state["files"][fname]
    copy = tmp / "model.safetensors"
    if copy.stat().st_size != rec["bytes"] or file_sha256(copy) != rec["sha256"]:
        shutil.rmtree(tmp)
        raise CheckpointError(f"copying {last / fname} to {copy} gave a file that differs from the size and "
                              "sha256 the checkpoint recorded; nothing was exported")
    # 2. the config, then the folder replaces any older export
    out = {"_class_name": config["_class_name"], "config": config["model"], "step": state["step"],
           "ema": use_ema, "training": config}
    (tmp / "config.json").write_text(json.dumps(out, indent=2, sort_keys=True))
    return _swap_in(tmp, run / "export")


def _fresh(folder: Path) -> Path:
    """``folder``, emptied (made if missing)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


def _swap_in(new: Path, export: Path) -> Path:
    """Replace ``export`` by the complete folder ``new`` (the old one is removed only after the swap)."""
    old = export.with_name(f".{export.name}-old")
    if old.exists():
        shutil.rmtree(old)
    if export.exists():
        os.replace(export, old)
    os.replace(new, export)
    if old.exists():
        shutil.rmtree(old)
    return export


def _export_autoencoder(run: Path, last: Path, state: dict[str, Any], config: dict[str, Any],
                        fname: str) -> Path:
    """The autoencoder trainer's end-of-run export (its ``finish``) of checkpoint ``last``'s ``fname``
    weights: the run's config and training frames rebuilt from the checkpoint, ``run/export`` and
    ``run/eval.json`` written."""
    from safetensors.torch import load_file

    from sana_world.generators.train import autoencoder as ae_train
    from sana_world.generators.train import run as train_run

    if config.get("_trainer") != _AE_TRAINER:
        raise CheckpointError(f"{last}: an AutoencoderDC checkpoint of trainer {config.get('_trainer')!r}; "
                              f"only {_AE_TRAINER} runs can be exported")
    # 1. the run's config and its autoencoder (the init's scale kept when the encoder was frozen)
    known = train_run.field_defaults(ae_train.AutoencoderTrainConfig)
    flat = {k: v for k, v in config.items() if k in known and k != "model"}
    cfg = ae_train.AutoencoderTrainConfig.from_flat(model=config["preset"], **flat)
    if cfg.freeze_encoder:
        init = Path(str(cfg.init_weights))
        if not (init / "config.json").is_file():
            raise FileNotFoundError(f"{run} froze the encoder of init_weights {cfg.init_weights}, whose "
                                    f"scaling_factor its export keeps, but {init.resolve()} does not exist: "
                                    "run the export from the directory the run was started in")
        ae = ae_train.build_initial(cfg)
    else:  # the checkpoint's weights replace any init; the scale is fitted below
        ae = ae_train.build_initial(dataclasses.replace(cfg, init_weights=None))
    try:
        ae.load_state_dict(load_file(str(last / fname)), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{last / fname}: does not fit the {cfg.model!r} AutoencoderDC ({e})") from e
    # 2. the trainer's finish on the run's training frames (rank 0's share, as the trainer fits the scale
    #    on): scale fitted, held-out PSNR, export/ and eval.json
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ae = ae.to(dev)
    info = DistInfo(rank=0, world_size=int(state.get("world_size", 1)), device=dev)
    frames = ae_train.ShardSource(cfg, info).sample() if cfg.data_dir else _pool_sample(cfg, info)
    tmp = _fresh(run / ".export-tmp")  # finish writes tmp/export and tmp/eval.json
    ae_train.finish(ae, frames, cfg, tmp, dev)
    report = json.loads((tmp / "eval.json").read_text())
    report.update({"step": state["step"], "exported_from": f"checkpoints/{last.name}/{fname}"})
    (tmp / "eval.json").write_text(json.dumps(report, indent=2))
    export = _swap_in(tmp / "export", run / "export")
    os.replace(tmp / "eval.json", run / "eval.json")
    shutil.rmtree(tmp)
    return export


def _pool_sample(cfg: Any, info: DistInfo) -> torch.Tensor:
    """The training frames ``PoolSource(cfg, info).sample()`` gives (rank 0's first trajectories of the
    run's pool), rendering only those trajectories: rank 0 of ``W`` ranks holds the explore trajectories of
    scene seeds ``seed, seed + W, ...`` first, which a pool of ``k W`` explore-only trajectories repeats."""
    from sana_world.data.pool import ClipPool, PoolConfig

    pool = PoolConfig(trajectories=cfg.pool_trajectories, steps=cfg.pool_steps, size=cfg.resolution,
                      workers=cfg.pool_workers, seed=cfg.run.seed)  # as PoolSource builds it
    k = max(1, _SAMPLE_FRAMES // (pool.steps + 1))
    w = info.world_size
    explore = pool.trajectories - round(pool.trajectories * pool.keys_fraction)
    if k <= len(range(0, explore, w)):  # else the sample takes keys trajectories too: the whole share
        pool = dataclasses.replace(pool, trajectories=k * w, keys_fraction=0.0)
    rgb = ClipPool(pool, info.device, 0, w, progress=False).rgb
    return rgb[:k].flatten(0, 1)  # (N, R, R, 3)


def pack_run(run_dir: str | Path, tar_path: str | Path, bf16: bool = True, raw: bool = False) -> Path:
    """Write ``tar_path`` from ``run_dir`` (module doc), exporting the latest checkpoint first unless
    ``export/`` already holds it; a run without checkpoints is packed with the ``export/`` it has."""
    run, tar_path = Path(run_dir), Path(tar_path)
    export = run / "export"
    if latest_checkpoint(run / "checkpoints") is None:
        if not export.is_dir():
            raise FileNotFoundError(f"{run} has neither export/ nor a complete checkpoint in checkpoints/")
    elif not export_is_current(run, raw=raw):
        export_checkpoint(run, raw=raw)
    with tarfile.open(tar_path, "w") as tar:
        # 1. the export folder, weights optionally in bf16
        for f in sorted(export.rglob("*")):
            if not f.is_file():
                continue
            arc = f"export/{f.relative_to(export)}"
            if bf16 and f.suffix == ".safetensors":
                data = _bf16_bytes(f)
                info = tarfile.TarInfo(arc)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(f, arcname=arc)
        # 2. eval report, TensorBoard events, the run config
        for f in [run / "eval.json", *sorted((run / "tb").rglob("*"))]:
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(run)))
        last = latest_checkpoint(run / "checkpoints")
        if last is not None and (last / "config.json").is_file():
            tar.add(last / "config.json", arcname="train_config.json")
    return tar_path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("tar")
    p.add_argument("--fp32", action="store_true", help="keep the weights' own dtype")
    p.add_argument("--raw", action="store_true", help="export the raw (non-EMA) weights of the last checkpoint")
    a = p.parse_args(argv)
    try:
        out = pack_run(a.run_dir, a.tar, bf16=not a.fp32, raw=a.raw)
    except (CheckpointError, FileNotFoundError) as e:  # a bad run folder; bugs keep their tracebacks
        p.exit(1, f"{p.prog}: error: {e}\n")
    print(json.dumps({"tar": str(out), "bytes": out.stat().st_size}))


if __name__ == "__main__":
    main()
