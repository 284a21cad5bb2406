"""Writing zoo entries from trainer exports: ``derive_entry`` (copy an entry with components replaced),
``replace_component`` / ``add_component`` (swap one in place), the checks they run before writing
anything, and the ``python -m sana_world.generators.zoo`` command line. The rules are in
:mod:`sana_world.generators.zoo`'s module doc; :func:`sana_world.generators.zoo.load` reads what these write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sana_world.generators.autoencoder import LatentCodec, autoencoder_folder, latent_drift, load_autoencoder
from sana_world.generators.zoo import (
    _AE_ENCODER_KEYS, _CLASSES, _DROPPABLE, _LABELS, _LATENT_USERS, MAX_SHARD_BYTES, _fit_problem, _build,
    _read_json, compatibility_problems, load_state_dict,
)
from sana_world.zoo import ZOO_ROOT, ZooEntry, ZooError, entry

# --- Reading exports, comparing latent spaces ------------------------------------------------------------


def _read_export(export: Path, component: str, dtype: torch.dtype,
                 unchanged: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``config.json`` and the weights (cast to ``dtype``) of a trainer's ``export`` folder for
    ``component``, after checking the folder: a config of the component's class, weights that fill exactly
    the model it describes (an autoencoder must load with diffusers, strictly); errors end with
    ``unchanged`` (what the failure left as it was). An autoencoder's weights are read once, by its strict
    load."""
    if component not in _CLASSES:
        raise ValueError(f"component must be one of {sorted(_CLASSES)}, got {component!r}")
    export = Path(export)
    if not (export / "config.json").is_file():
        raise FileNotFoundError(f"{export} is no export folder (no config.json); {unchanged}")
    config = _read_json(export / "config.json", unchanged)
    cls = config.get("_class_name")
    if cls != _CLASSES[component]:
        raise ZooError(f"{export} exports a {cls!r}, but a {component} is a {_CLASSES[component]!r}; pass "
                       f"the export folder of a {component} trainer; {unchanged}")
    if component == "autoencoder":
        try:
            weights = load_autoencoder(export).state_dict()
        except (ValueError, OSError) as e:
            raise ZooError(f"{e}; {unchanged}") from e
    else:
        if not isinstance(config.get("config"), dict):
            raise ZooError(f"{export}/config.json has no model config under 'config' (write the folder with "
                           f"`python -m sana_world.generators.train.export_folder`); {unchanged}")
        try:
            weights = load_state_dict(export)
        except ZooError as e:
            raise ZooError(f"{e}; {unchanged}") from e
        with torch.device("meta"):
            problem = _fit_problem(_build(component, config), weights)
        if problem:
            raise ZooError(f"{export}: weights do not fit the {cls} its config.json describes ({problem}); "
                           f"{unchanged}")
    return config, {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}


def _trained_on(training: dict[str, Any]) -> tuple[str | None, Path | None]:
    """The autoencoder a world / image model's training config names, and its folder if it is still there
    (the resolved path the trainer recorded under ``inputs``, else the path as given, from here)."""
    rec = training.get("autoencoder")
    if not isinstance(rec, str) or rec == "pixels":
        return rec, None
    resolved = ((training.get("inputs") or {}).get("autoencoder") or {}).get("path")
    for cand in ([resolved] if isinstance(resolved, str) else []) + [rec]:
        folder = Path(cand).expanduser()
        if (autoencoder_folder(folder) / "config.json").is_file():
            return rec, folder
    return rec, None


def _latents_differ(a: Path, b: Path) -> str | None:
    """Why autoencoders ``a`` and ``b`` encode into different latent spaces (encoder architecture, scaling
    factor, encoder weights compared in bf16, the zoo's precision), or None if they encode alike (e.g. a
    decoder-only fine-tune)."""
    a, b = autoencoder_folder(a), autoencoder_folder(b)
    ca, cb = _read_json(a / "config.json"), _read_json(b / "config.json")
    diff = [k for k in _AE_ENCODER_KEYS if ca.get(k) != cb.get(k)]
    if diff:
        return f"encoder configs differ in {diff}"
    sa, sb = float(ca.get("scaling_factor", 1.0)), float(cb.get("scaling_factor", 1.0))
    if abs(sa - sb) > 1e-6 * max(abs(sa), abs(sb)):
        return f"scaling_factor {sa:.6g} vs {sb:.6g}"
    wa, wb = load_state_dict(a), load_state_dict(b)
    enc = sorted(k for k in set(wa) | set(wb) if k.startswith("encoder."))
    for k in enc:
        if k not in wa or k not in wb or wa[k].shape != wb[k].shape or not torch.equal(
                wa[k].to(torch.bfloat16), wb[k].to(torch.bfloat16)):
            return f"encoder weights differ ({k})"
    return None


DRIFT_TRAJECTORIES = 8  # held-out trajectories (16 frames each) that --max-latent-drift measures on


def measure_latent_drift(new: Path, old: Path, resolution: int, supersample: int,
                         trajectories: int = DRIFT_TRAJECTORIES) -> tuple[float, int]:
    """How far autoencoder ``new``'s scaled latents lie from ``old``'s (:func:`latent_drift`, fp32 on the
    CPU) on GT frames of held-out scenes rendered at ``resolution`` with ``supersample``; returns (drift,
    frames)."""
    from sana_world.data.pool import ClipPool, PoolConfig
    from sana_world.worlds.sampler import HELDOUT_START

    pool = ClipPool(PoolConfig(trajectories=trajectories, steps=15, size=resolution, workers=0,
                               supersample=supersample, seed=HELDOUT_START), "cpu", progress=False)
    rgb = pool.rgb.flatten(0, 1)  # (N, H, W, 3) uint8
    a, b = LatentCodec(load_autoencoder(new).eval()), LatentCodec(load_autoencoder(old).eval())
    return latent_drift(a.encode, b.encode, rgb), int(rgb.shape[0])


# --- Writing components and manifests --------------------------------------------------------------------


def _write_component(dest: Path, component: str, export: Path, weights: dict[str, torch.Tensor],
                     max_shard_bytes: int) -> None:
    """(Re)create ``dest`` from ``export``'s non-weight files and ``weights`` in shards of at most
    ``max_shard_bytes`` (an autoencoder's shards get the index diffusers reads them by)."""
    from safetensors.torch import save_file

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in Path(export).iterdir():
        if f.suffix != ".safetensors" and not f.name.endswith(".safetensors.index.json") and f.is_file():
            shutil.copyfile(f, dest / f.name)
    # 1. greedy shards in key order, each at most max_shard_bytes
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(weights):
        n = weights[k].numel() * weights[k].element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = weights[k]
        size += n
    stem = "diffusion_pytorch_model" if component == "autoencoder" else "model"
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"{stem}.safetensors" if len(shards) == 1 else \
            f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors"  # fmt: skip
        save_file(shard, str(dest / fname))
        weight_map.update({k: fname for k in shard})
    if component == "autoencoder" and len(shards) > 1:  # diffusers finds shards through their index
        total = sum(v.numel() * v.element_size() for v in weights.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dest / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def add_component(name: str, component: str, export: Path, root: Path = ZOO_ROOT,
                  max_shard_bytes: int = MAX_SHARD_BYTES, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Copy a trainer's ``export`` folder into ``root/name/component`` (weights cast to ``dtype`` and
    sharded), keeping ``eval.json`` if present; the caller rewrites the manifest. The export is checked
    and read before anything is removed (its own checks only: :func:`replace_component` checks the entry)."""
    _, weights = _read_export(Path(export), component, dtype, f"{name}/{component} is unchanged")
    dest = root / name / component
    _write_component(dest, component, Path(export), weights, max_shard_bytes)
    return dest


@dataclass
class _Plan:
    """An entry to write: its components' configs and sources, the exports' weights, the new manifest."""

    components: dict[str, dict[str, str]]  # component -> {"folder", "class"}
    weights: dict[str, dict[str, torch.Tensor]]  # of the exports (bf16)
    resolution: int
    description: str
    dream: dict[str, Any]
    derived_from: dict[str, Any]
    frames: dict[str, Any]  # the manifest's "frames" (ZooEntry.supersample)


def _dream_from_training(t: dict[str, Any], base: dict[str, Any],
                         base_name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The Dreamer defaults for a world model with training config ``t``, and where each came from: its
    training's flow shift; the context level and steps a frame it trained on (``context_sigma_prob`` /
    self-forcing), if it did; else the base entry's values (sampler choices tuned by benchmarks, which
    training does not fix), else the Dreamer's defaults."""
    dream, source = dict(base), {k: f"kept from {base_name!r}" for k in base}
    dream["shift"], source["shift"] = float(t["shift"]), "the world model's training shift"
    if float(t.get("self_forcing_prob") or 0.0) > 0:
        dream["num_steps"] = int(t.get("self_forcing_steps", 1))
        dream["context_sigma"] = float(t.get("self_forcing_context_sigma", 0.0))
        source["num_steps"] = source["context_sigma"] = "the world model's self-forcing rollout"
    elif float(t.get("context_sigma_prob") or 0.0) > 0:
        dream["context_sigma"] = float(t.get("context_sigma_value", 0.0))
        source["context_sigma"] = "the world model's training context_sigma_value"
    return dream, source


def _plan(src: ZooEntry, exports: dict[str, Path], drop: Iterable[str], unchanged: str,
          supersample: int | None = None, max_latent_drift: float | None = None) -> _Plan:
    """Check ``src`` with ``exports`` replacing components and ``drop`` removing them (module doc) and read
    every export; ZooError listing every problem, ending with ``unchanged``. ``supersample``: the GT frames'
    rays a side per pixel the new entry's models were trained on (None: the base's). ``max_latent_drift``:
    a new latent space may keep the base's world and image models if the new encoder's latents lie within
    this relative RMS of the old one's (measured here)."""
    drop = set(drop)
    unknown = sorted(set(exports) - set(_CLASSES))
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {sorted(_CLASSES)}")
    if drop - set(_DROPPABLE) or drop & set(exports):
        raise ValueError(f"only {list(_DROPPABLE)} may be dropped, and not replaced at once; got "
                         f"drop={sorted(drop)}")
    if max_latent_drift is not None and not 0 <= max_latent_drift < 1:
        raise ValueError(f"max_latent_drift must lie in [0, 1) (a relative RMS), got {max_latent_drift}")
    frames = dict(src.manifest.get("frames") or {})  # the GT frames: the entry's, unless given
    if supersample is not None:
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
        frames["supersample"] = supersample
    # 1. every export read and checked on its own
    read = {c: _read_export(Path(e), c, torch.bfloat16, unchanged) for c, e in exports.items()}
    manifest_comps = src.manifest["components"]
    final = [c for c in _CLASSES if (c in manifest_comps or c in exports) and c not in drop]
    configs = {c: read[c][0] if c in exports else _read_json(src.folder(c) / "config.json") for c in final}
    where = {c: f"export {exports[c]}" if c in exports else f"{src.name}/{manifest_comps[c]['folder']}"
             for c in final}
    ae_folder = Path(exports["autoencoder"]) if "autoencoder" in exports else src.folder("autoencoder")
    problems: list[str] = []
    # 2. an autoencoder with another latent space takes every latent-space component with it
    new_latents = _latents_differ(ae_folder, src.folder("autoencoder")) if "autoencoder" in exports else None
    kept_users = [d for d in _LATENT_USERS if d in final and d not in exports]
    drift: dict[str, Any] | None = None
    if new_latents and kept_users and max_latent_drift is not None:  # 2a. near enough to keep them?
        value, n = measure_latent_drift(ae_folder, src.folder("autoencoder"), src.resolution,
                                        frames.get("supersample", 1), DRIFT_TRAJECTORIES)
        drift = {"rms_relative": value, "max": max_latent_drift, "heldout_frames": n,
                 "supersample": frames.get("supersample", 1)}
    flagged = set()
    if new_latents and (drift is None or drift["rms_relative"] > max_latent_drift):
        how_far = "" if drift is None else \
            (f"; its latents lie {100 * drift['rms_relative']:.2f} % from the old one's on "
             f"{drift['heldout_frames']} held-out frames, above --max-latent-drift "
             f"{100 * max_latent_drift:.2f} %")  # fmt: skip
        for dep in kept_users:
            flagged.add(dep)
            alt = f" or --drop-{dep.replace('_', '-')}" if dep in _DROPPABLE else ""
            problems.append(f"the new autoencoder changes the latent space ({new_latents}{how_far}), but "
                            f"the {_LABELS[dep]} kept from {src.name!r} was trained on the old one: pass "
                            f"--{dep.replace('_', '-')} EXPORT trained on the new autoencoder{alt}")
    # 3. one resolution: the world model's training resolution
    wm_t = configs["world_model"].get("training") or {} if "world_model" in configs else {}
    resolution = src.resolution
    if "world_model" in exports and "resolution" in wm_t:
        resolution = int(wm_t["resolution"])
    for c in final:
        t = configs[c].get("training") or {}
        if c not in flagged and "resolution" in t and int(t["resolution"]) != resolution:
            alt = f" (pass --{c.replace('_', '-')} EXPORT trained at {resolution}" + \
                (f" or --drop-{c}" if c in _DROPPABLE else "") + ")"  # fmt: skip
            side = t["resolution"]
            problems.append(f"{_LABELS[c]} {where[c]} was trained at {side}x{side}, but the entry's world "
                            f"model dreams {resolution}x{resolution} frames{alt}")
    # 4. what the Dream envs need, channels and sizes
    problems += compatibility_problems(configs, resolution, where)
    # 5. world / image models trained on the entry's latents (when their autoencoder folder is still there)
    provenance: dict[str, dict[str, Any]] = {}
    for c in _LATENT_USERS:
        if c not in exports:
            continue
        rec, path = _trained_on(configs[c].get("training") or {})
        checked = path is not None
        if path is not None:
            why = _latents_differ(path, ae_folder)
            if why:
                problems.append(f"{_LABELS[c]} {where[c]} was trained on the latents of autoencoder {path}, "
                                f"not on those of the entry's autoencoder {where['autoencoder']} ({why})")
        provenance[c] = {"trained_on_autoencoder": rec, "autoencoder_checked": checked}
    # 6. an autoencoder export's eval.json (beside it, written by the trainer) must have scored the entry's
    # GT frames
    if "autoencoder" in exports:
        report = Path(exports["autoencoder"]).parent / "eval.json"
        trained = _read_json(report).get("supersample", 1) if report.is_file() else None
        if trained is not None and trained != frames.get("supersample", 1):
            problems.append(f"autoencoder {exports['autoencoder']} was trained on GT frames of supersample "
                            f"{trained} ({report}), the entry's frames have {frames.get('supersample', 1)}: "
                            f"pass --supersample {trained}")
    if problems:
        given = ", ".join(f"{c}={e}" for c, e in exports.items())
        dropped = " and dropping " + ", ".join(sorted(drop)) if drop else ""
        raise ZooError(f"cannot build an entry from {src.name!r} with {given}{dropped}: "
                       + "; ".join(problems) + f"; {unchanged}")
    # 7. the new manifest: resolution, dream defaults and description from the exports, and their origin
    base_dream = dict(src.manifest.get("dream") or {})
    if "world_model" in exports and "shift" in wm_t:
        dream, dream_note = _dream_from_training(wm_t, base_dream, src.name)
    else:
        dream, dream_note = base_dream, {k: f"kept from {src.name!r}" for k in base_dream}
    parts, origin = [], {}
    for c in _CLASSES:
        if c in exports:
            cfg, t = configs[c], configs[c].get("training") or {}
            info: dict[str, Any] = {"from": "export", "export": str(Path(exports[c]).resolve()),
                                    "class": _CLASSES[c]}
            if c == "autoencoder":
                info["scaling_factor"] = cfg.get("scaling_factor")
                info["same_latents_as_base"] = new_latents is None
                what = f"scaling_factor {float(cfg.get('scaling_factor', 1.0)):.4g}"
                if new_latents and drift is not None:
                    info["latent_drift"] = drift
                    what += (f"; latents {100 * drift['rms_relative']:.2f} % from the base's, "
                             f"{' and '.join(_LABELS[d] for d in kept_users)} kept")
            else:
                info.update({"step": cfg.get("step"), "preset": t.get("preset"), "ema": cfg.get("ema"),
                             "training_resolution": t.get("resolution"), "shift": t.get("shift"),
                             **provenance.get(c, {})})
                what = f"preset {t.get('preset')!r}, step {cfg.get('step')}"
            parts.append(f"{_LABELS[c]} from {exports[c]} ({_CLASSES[c]}, {what})")
            origin[c] = info
        elif c in drop:
            parts.append(f"no {_LABELS[c]} (dropped)")
            origin[c] = {"from": "dropped"}
        elif c in manifest_comps:
            parts.append(f"{_LABELS[c]} kept from {src.name!r}")
            origin[c] = {"from": "base"}
    derived = {"base": src.name, "base_folder": str(src.root.resolve()),
               "base_description": src.manifest.get("description", ""), "components": origin,
               "dream": dream_note}
    if "derived_from" in src.manifest:
        derived["base_derived_from"] = src.manifest["derived_from"]
    description = (f"{resolution}x{resolution} procedural rooms, derived from zoo entry {src.name!r}: "
                   + "; ".join(parts))
    comps = {c: {"folder": manifest_comps.get(c, {}).get("folder", c), "class": _CLASSES[c]} for c in final}
    return _Plan(comps, {c: read[c][1] for c in exports}, resolution, description, dream, derived, frames)


def _write_plan(folder: Path, name: str, plan: _Plan, exports: dict[str, Path]) -> None:
    """Write the exports' components into entry ``folder``, check an autoencoder loads from there, and
    rewrite the manifest."""
    from sana_world.zoo import write_manifest

    for component, export in exports.items():
        _write_component(folder / plan.components[component]["folder"], component, Path(export),
                         plan.weights[component], MAX_SHARD_BYTES)
    if "autoencoder" in exports:
        try:
            load_autoencoder(folder / plan.components["autoencoder"]["folder"])
        except ValueError as e:
            raise ZooError(f"the written autoencoder does not load: {e}") from e
    write_manifest(folder, name, plan.resolution, plan.components, plan.description, plan.dream,
                   plan.derived_from, plan.frames)


def derive_entry(base: str | os.PathLike[str], dest: Path, exports: dict[str, Path],
                 drop: Iterable[str] = (), supersample: int | None = None,
                 max_latent_drift: float | None = None) -> Path:
    """A copy of zoo entry ``base`` at folder ``dest`` (which must not exist) whose components ``exports``
    (component -> a trainer's ``export/`` folder) are replaced and ``drop`` (only "image") removed, manifest
    rewritten from the exports (module doc); returns ``dest``.

    Every export is checked and read, and the resulting entry checked, before anything is written; if
    writing fails, ``dest`` is removed (no partial candidate that would verify as a copy of ``base`` is left
    behind)."""
    src = entry(base)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; derive_entry writes a new folder")
    drop = tuple(drop)
    plan = _plan(src, exports, drop, f"nothing was written to {dest}", supersample,  # 1. every export checked
                 max_latent_drift)
    try:  # 2. copy, 3. replace / drop components, 4. manifest
        shutil.copytree(src.root, dest)
        for c in drop:
            if src.has(c):
                shutil.rmtree(dest / src.manifest["components"][c]["folder"])
        _write_plan(dest, dest.name, plan, exports)
    except BaseException:
        if dest.exists():  # a half-replaced copy must not pass for a candidate; the error propagates
            shutil.rmtree(dest)
        raise
    return dest


def replace_component(name: str, component: str, export: Path, root: Path = ZOO_ROOT,
                      overwrite: bool = False, supersample: int | None = None,
                      max_latent_drift: float | None = None) -> Path:
    """Replace one component of the existing zoo entry ``root/name`` by a trainer's ``export/`` folder and
    rewrite the entry's manifest (sizes and sha256, and resolution, dream defaults and description from the
    export as in :func:`derive_entry`), so the entry verifies again; returns the entry folder. An entry that
    already has ``component`` is only overwritten with ``overwrite`` (there is no backup): score a candidate
    from :func:`derive_entry` first."""
    old = entry(name, root, verify=False)
    unchanged = f"{old.root} is unchanged"
    if old.has(component) and not overwrite:
        where = " (the shipped entry inside the package)" if old.root.resolve().parent == ZOO_ROOT else ""
        raise FileExistsError(f"zoo entry {old.name!r} at {old.root}{where} already has a {component}; "
                              "`add` would overwrite it in place, with no backup: write a candidate to a new "
                              "folder with `derive`, or pass --overwrite (overwrite=True); " + unchanged)
    plan = _plan(old, {component: Path(export)}, (), unchanged, supersample, max_latent_drift)
    _write_plan(old.root, old.root.name, plan, {component: Path(export)})
    return old.root


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (0.03 is 3 %), got {value}")
    return value


DRIFT_HELP = ("an autoencoder with new latents may keep the entry's world and image models if its scaled latents "
              "lie within this relative RMS of the old encoder's on held-out GT frames (measured: about 20 s on "
              "a CPU), e.g. 0.03 for an --anchor-weight fine-tune")
SUPERSAMPLE_HELP = ("rays a side per pixel of the GT frames the entry's models were trained on (the manifest's "
                    "frames.supersample, GTConfig.supersample; default: the base entry's)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sana_world.generators.zoo", description="zoo maintenance")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="replace a component of a zoo entry, in place, by a trainer export folder")
    a.add_argument("name")
    a.add_argument("component", choices=sorted(_CLASSES))
    a.add_argument("export", type=Path)
    a.add_argument("--overwrite", action="store_true",
                   help="replace a component the entry already has (no backup is kept)")
    a.add_argument("--supersample", type=_positive_int, default=None, help=SUPERSAMPLE_HELP)
    a.add_argument("--max-latent-drift", type=_fraction, default=None, help=DRIFT_HELP)
    d = sub.add_parser("derive", help="copy an entry to a new folder with components replaced by exports")
    d.add_argument("base")
    d.add_argument("dest", type=Path)
    for component in sorted(_CLASSES):
        d.add_argument(f"--{component.replace('_', '-')}", type=Path, default=None, help="an export/ folder")
    for component in _DROPPABLE:
        d.add_argument(f"--drop-{component.replace('_', '-')}", action="store_true",
                       help=f"leave the {_LABELS[component]} out of the new entry")
    d.add_argument("--supersample", type=_positive_int, default=None, help=SUPERSAMPLE_HELP)
    d.add_argument("--max-latent-drift", type=_fraction, default=None, help=DRIFT_HELP)
    args = p.parse_args(argv)
    try:
        if args.cmd == "add":
            print(replace_component(args.name, args.component, args.export, root=ZOO_ROOT,
                                    overwrite=args.overwrite, supersample=args.supersample,
                                    max_latent_drift=args.max_latent_drift))
        else:
            exports = {c: getattr(args, c) for c in _CLASSES if getattr(args, c) is not None}
            drop = [c for c in _DROPPABLE if getattr(args, f"drop_{c}")]
            print(derive_entry(args.base, args.dest, exports, drop, args.supersample, args.max_latent_drift))
    except (ZooError, FileNotFoundError, FileExistsError) as e:  # bad input; bugs keep their tracebacks
        p.exit(1, f"{p.prog}: error: {e}\n")
