"""Resuming a run exactly: which checkpoint to continue from, and whether the run is still the saved one.

A run's config (the ``config.json`` beside each checkpoint) has three kinds of keys:

- *run fields* (length, output, logging, worker counts, data verification, ...): free to change on a resume;
  each trainer lists them (``RESUMABLE_FIELDS`` and its own);
- *inputs* (model folders such as an autoencoder export, a shard dataset): compared by content, not by the
  string given. The config records each one's resolved path and a fingerprint under ``"inputs"``
  (:func:`input_records`): a dataset by its manifest's shard checksums (a moved copy resumes), a model folder
  by the sha256 of the files loading it reads (an export overwritten by further training is refused; of a
  SANA pipeline folder, only the subfolder used). Fingerprints are computed on the main process when a
  checkpoint's config is written or a resume compares them, never at a fresh start. For a checkpoint
  written before fingerprints existed, the saved path must resolve to the current one, or hold the same
  content now;
- everything else (the objective, sizes, the schedule, the model): must be equal.

The newest checkpoint that verifies is the one resumed (:func:`newest_verified_checkpoint`); a damaged newer
one is set aside (renamed ``<name>.damaged``, out of the rotation) with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sana_world.generators.train.common import (
    CheckpointError,
    DistInfo,
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_config,
    read_checkpoint_state,
)
from sana_world.generators.train.errors import usage_error
from sana_world.checkpoints import file_sha256

if TYPE_CHECKING:
    from sana_world.generators.train.run import RunConfig

log = logging.getLogger(__name__)

BUILTIN_INPUTS = ("pixels", "procedural")  # input values that name built-in components, not folders


# --- Fingerprints of inputs ------------------------------------------------------------------------------


# The subfolders a loader reads from a SANA pipeline folder given as each input (generators.autoencoder,
# generators.text_encoders), and the files of a model folder that loading reads.
_PIPELINE_PARTS = {"autoencoder": ("vae",), "text_encoder": ("text_encoder", "tokenizer")}
_MODEL_FILES = (".json", ".safetensors", ".bin", ".pt", ".model", ".txt", ".tiktoken")


def _model_files(path: Path, field: str | None) -> list[Path]:
    """The files loading ``path`` as ``field`` reads: for a model folder its config and weight files (not its
    subfolders); for a pipeline folder, those of the subfolders ``field`` uses (the VAE's, not the
    transformer's); every file of any other folder."""
    parts = _PIPELINE_PARTS.get(field or "")
    if parts is None:
        return [p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    own_config = (path / "config.json").is_file()
    if field == "text_encoder":
        own_config = own_config and not (path / "text_encoder" / "config.json").is_file()
    folders = [path] if own_config else [path / d for d in parts if (path / d).is_dir()]
    return [p for d in folders for p in d.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix in _MODEL_FILES]


def fingerprint(path: Path, field: str | None = None) -> str | None:
    """A sha256 naming the content at ``path``: a shard dataset by its manifest (shapes and every shard's
    sha256, so a moved copy has the same fingerprint), a file by its sha256, a folder by the sha256 of each
    file loading it as ``field`` reads (:func:`_model_files`, names relative to it); None if nothing is
    there."""
    from sana_world.data.shards import MANIFEST, load_manifest

    if (path / MANIFEST).is_file():
        m = load_manifest(path)
        shards = [{k: s[k] for k in ("file", "sha256", "bytes", "count")} for s in m["shards"]]
        key = {"steps": m["steps"], "height": m["height"], "width": m["width"], "shards": shards}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    if path.is_file():
        base, files = path.parent, [path]
    elif path.is_dir():
        base, files = path, sorted(_model_files(path, field))
    else:
        return None
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(base).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def input_paths(config: dict[str, Any], fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{field: {"path": resolved path}}`` of each of ``fields`` that names a path in the flat ``config``
    (None and :data:`BUILTIN_INPUTS` are left to the plain comparison); :func:`add_fingerprints` completes
    them when they are needed (a resume, a checkpoint's config), so a fresh run hashes nothing at start."""
    return {name: {"path": str(Path(value).resolve())} for name in fields
            if isinstance(value := config.get(name), str) and value not in BUILTIN_INPUTS}


def add_fingerprints(config: dict[str, Any]) -> None:
    """Add the ``"sha256"`` fingerprint to each record of ``config["inputs"]`` that lacks one (in place)."""
    for name, record in config.get("inputs", {}).items():
        if "sha256" not in record:
            record["sha256"] = fingerprint(Path(record["path"]), name)


def input_records(config: dict[str, Any], fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{field: {"path": resolved path, "sha256": fingerprint}}`` (:func:`input_paths`, fingerprinted)."""
    out = {"inputs": input_paths(config, fields)}
    add_fingerprints(out)
    return out["inputs"]


# --- Is this the saved run? ------------------------------------------------------------------------------


def _differences(key: str, saved: Any, now: Any, flags: set[str]) -> list[str]:
    """``key (saved X, now Y)`` per difference; dicts (the resolved model config) sub-key by sub-key."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)
                for d in _differences(f"{key}.{k}", saved.get(k), now.get(k), set())]
    name = f"<{key}>" if key in flags else key
    return [f"{name} (saved {saved!r}, now {now!r})"]


def _input_problems(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Inputs whose content (or, for a checkpoint without fingerprints, resolved path) changed."""
    add_fingerprints(current)
    was, now = saved.get("inputs", {}), current.get("inputs", {})
    problems = []
    for name in sorted(set(was) | set(now)):
        s, c = was.get(name), now.get(name)
        if s is not None and c is not None:
            if s["sha256"] is not None and c["sha256"] is not None:
                if s["sha256"] != c["sha256"]:
                    problems.append(f"<{name}> {c['path']} is not the input the run was trained with: its "
                                    f"content changed since the checkpoint (fingerprint {s['sha256'][:12]} "
                                    f"then, {c['sha256'][:12]} now)")
            elif s["path"] != c["path"] or s["sha256"] != c["sha256"]:
                problems.append(f"<{name}> differs (saved {s['path']}, now {c['path']})")
        elif c is not None and "inputs" not in saved and isinstance(saved.get(name), str) \
                and saved[name] not in BUILTIN_INPUTS:  # a checkpoint from before fingerprints
            if not _same_legacy_input(Path(saved[name]), c, name):
                problems.append(f"<{name}> differs (saved {saved[name]!r}, now {c['path']!r}; this "
                                "checkpoint records no fingerprint, and the saved path does not hold the same "
                                "content)")
        else:
            problems.append(f"<{name}> differs (saved {saved.get(name)!r}, now {current.get(name)!r})")
    return problems


def _same_legacy_input(saved: Path, now: dict[str, Any], field: str) -> bool:
    """A checkpoint without fingerprints names the same input if its path resolves to the current one, or if
    what is at its path now has the current input's content (a copy of a dataset)."""
    if saved.resolve() == Path(now["path"]):
        return True
    was = fingerprint(saved, field)
    return was is not None and was == now["sha256"]


def check_resume(saved: dict[str, Any], current: dict[str, Any], path: Path,
                 run_fields: Iterable[str], defaults: dict[str, Any] | None = None) -> None:
    """ValueError (a usage error) naming every difference between the saved run config and ``current``
    outside ``run_fields`` (module doc). A key the saved config lacks (a field added after it was written)
    counts as its value in ``defaults``; the keys of ``defaults`` are the config's fields."""
    defaults = defaults or {}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    inputs = set(saved.get("inputs", {})) | set(current.get("inputs", {}))
    skip = set(run_fields) | inputs | {"inputs"}
    problems = [d for k in sorted(set(saved) | set(current))
                if k not in skip and saved.get(k) != current.get(k)
                for d in _differences(k, saved.get(k), current.get(k), set(defaults))]
    problems += _input_problems(saved, current)
    if problems:
        raise usage_error(ValueError, f"cannot resume exactly from {path}: " + "; ".join(problems)
                          + ". Rerun with the saved settings, or start a new run in another <out_dir>")


# --- Which checkpoint ------------------------------------------------------------------------------------


def newest_verified_checkpoint(root: Path, warn: bool = True) -> Path | None:
    """The newest complete checkpoint under ``root`` whose files match their recorded sizes and hashes. Each
    damaged newer one is set aside as ``<name>.damaged`` with a warning (``warn``: the main process, which
    alone renames), so it leaves the rotation: it neither counts toward ``keep_last`` (pruning would remove
    the checkpoint resumed from) nor is silently overwritten when the run reaches its step again. None if
    there is none; CheckpointError if there are checkpoints but none verifies (nothing is renamed)."""
    bad: list[tuple[Path, CheckpointError]] = []
    for ckpt in reversed(list_checkpoints(root)):
        try:
            read_checkpoint_state(ckpt, verify=True)
        except CheckpointError as e:
            bad.append((ckpt, e))
            continue
        for damaged, e in bad if warn else ():
            aside = _set_aside(damaged)
            log.warning("skipping the damaged checkpoint %s (%s); resuming from %s instead. The damaged one "
                        "was moved to %s, out of the rotation; it can be deleted (rm -r %s).", damaged.name, e,
                        ckpt.name, aside.name, aside)
        return ckpt
    if bad:
        raise CheckpointError(f"no checkpoint in {root} verifies: " + "; ".join(str(e) for _, e in bad))
    return None


def _set_aside(damaged: Path) -> Path:
    """Rename ``damaged`` to ``<name>.damaged`` (``.damaged-2``, ... if taken); returns the new path."""
    aside, n = damaged.with_name(f"{damaged.name}.damaged"), 1
    while aside.exists():
        n += 1
        aside = damaged.with_name(f"{damaged.name}.damaged-{n}")
    damaged.rename(aside)
    return aside


def _share_fingerprints(resolved: dict[str, Any], info: DistInfo) -> None:
    """Fingerprint the inputs once, on the main process, and give the records to every rank."""
    if info.is_main:
        add_fingerprints(resolved)
    if info.distributed:
        import torch.distributed as dist

        box = [resolved.get("inputs", {})]
        dist.broadcast_object_list(box, src=0)
        resolved["inputs"] = box[0]


def resume_or_start(state: TrainState, run: RunConfig, resolved: dict[str, Any], info: DistInfo,
                    run_fields: Iterable[str], defaults: dict[str, Any] | None = None) -> None:
    """Restore ``state`` from the newest checkpoint that verifies when ``run.resume``; refuse to mix a fresh
    run into an old one, and a resume with nothing left to do."""
    ckpt_root = Path(run.out_dir) / "checkpoints"
    if run.resume:
        ckpt = newest_verified_checkpoint(ckpt_root, warn=info.is_main)
        if ckpt is None:
            raise usage_error(FileNotFoundError,
                              f"<resume=True> but {ckpt_root} holds no complete checkpoint")
        _share_fingerprints(resolved, info)
        check_resume(load_config(ckpt), resolved, ckpt, run_fields, defaults)
        load_checkpoint(ckpt, state, info, verify=False)  # hashed just now
    elif (latest := latest_checkpoint(ckpt_root)) is not None:
        raise usage_error(FileExistsError, f"{ckpt_root} already holds checkpoints ({latest.name}); pass "
                          "<resume=True> to continue that run, or choose a new <out_dir>")
    if state.step >= run.steps:
        raise usage_error(ValueError, f"checkpoint is at step {state.step}, nothing to do for "
                          f"<steps={run.steps}>; pass a larger <steps> to train on")
