"""Build the models of a zoo entry (``sana_world.zoo``): autoencoder codec, SANA-WM world model, SanaDiT
scene-start model and the text encoder they were trained with.

    >>> from sana_world.generators import zoo
    >>> models = zoo.load("rooms-128")                      # verified, fp32 on the CPU
    >>> models.world_model, models.codec, models.image, models.text

Weights ship in bf16 (they are half the size) and load into fp32 modules by default; pass ``dtype`` to
keep another precision. ``add_component`` imports a trainer's ``export/`` folder into an entry, splitting
weights into safetensors shards of at most ``max_shard_bytes`` (the repository keeps files under 16 MiB).

    python -m sana_world.generators.zoo add rooms-128 world_model runs/wm/export
    python -m sana_world.generators.zoo derive rooms-128 /tmp/candidate --world-model runs/wm/export

``replace_component`` (the ``add`` command) swaps one component of an entry and rewrites its manifest.
``derive_entry`` copies an entry to a new folder with some components replaced by exports (a candidate to
score with ``benchmarks/fidelity.py --model /tmp/candidate`` before it replaces the shipped one).

Names and folders (:func:`entry`, used by :func:`load`): a bare name ("rooms-128") is always an entry of
the zoo, whatever folders the current directory holds; a folder is given as a path: a ``Path``, or a
string with a path separator or starting with "." or "~" ("runs/wm/cand", "./cand", "~/cand").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.zoo import ZOO_ROOT, ZooEntry, ZooError, entry, is_path

__all__ = ["ZooModels", "add_component", "derive_entry", "entry", "is_path", "load", "load_state_dict",
           "replace_component"]

MAX_SHARD_BYTES = 15 * 1024 * 1024
_CLASSES = {"world_model": "SanaWM", "image": "SanaDiT", "autoencoder": "AutoencoderDC"}


@dataclass
class ZooModels:
    """The models of one zoo entry, in eval mode without gradients."""

    entry: ZooEntry
    codec: nn.Module  # LatentCodec over the AutoencoderDC
    world_model: nn.Module  # SanaWM
    text: nn.Module  # ProceduralTextEncoder
    image: nn.Module | None  # SanaDiT (None if the entry has none)

    @property
    def resolution(self) -> int:
        return self.entry.resolution


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``folder`` (shards merged; duplicate keys raise)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ZooError(f"no .safetensors weights in {folder}")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        part = load_file(str(f))
        dup = set(out) & set(part)
        if dup:
            raise ZooError(f"{f} repeats tensors of another shard: {sorted(dup)[:3]}")
        out.update(part)
    return out


def _config(cls: type, raw: dict[str, Any]) -> Any:
    """A frozen config dataclass from JSON (lists back to tuples where the default is a tuple)."""
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            v = raw[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def _module(folder: Path, kind: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("_class_name") != _CLASSES[kind]:
        raise ZooError(f"{folder}/config.json describes {meta.get('_class_name')!r}, expected {_CLASSES[kind]!r}")
    if kind == "world_model":
        from sana_world.world_model import SanaWM, SanaWMConfig

        model: nn.Module = SanaWM(_config(SanaWMConfig, meta["config"]))
    else:
        from sana_world.generators.image.dit import SanaDiT, SanaDiTConfig

        model = SanaDiT(_config(SanaDiTConfig, meta["config"]))
    weights = load_state_dict(folder)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ZooError(f"{folder}: weights do not fit {_CLASSES[kind]} (missing {missing[:3]}, unexpected "
                       f"{unexpected[:3]})")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load(name: str | os.PathLike[str] = "rooms-128", device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, verify: bool = True) -> ZooModels:
    """The verified models of zoo entry ``name`` (a bare name or a folder path, :func:`entry`) on ``device``
    in ``dtype`` (module doc)."""
    from sana_world.generators.autoencoder import LatentCodec, load_autoencoder
    from sana_world.generators.text_encoders import ProceduralTextEncoder

    dev = torch.device(device)
    e = entry(name, verify=verify)
    ae = load_autoencoder(e.folder("autoencoder"), dtype=dtype, device=dev).requires_grad_(False)
    codec = LatentCodec(ae).eval()
    wm = _module(e.folder("world_model"), "world_model", dev, dtype)
    image = _module(e.folder("image"), "image", dev, dtype) if e.has("image") else None
    text = ProceduralTextEncoder().to(dev).eval()
    return ZooModels(entry=e, codec=codec, world_model=wm, text=text, image=image)


def _read_export(export: Path, component: str, dtype: torch.dtype, unchanged: str) -> dict[str, torch.Tensor]:
    """The weights of a trainer's ``export`` folder for ``component``, cast to ``dtype``, after checking the
    folder (a ``config.json`` of the component's class and safetensors weights); errors end with
    ``unchanged`` (what the failure left as it was)."""
    if component not in _CLASSES:
        raise ValueError(f"component must be one of {sorted(_CLASSES)}, got {component!r}")
    config = Path(export) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{export} is no export folder (no config.json); {unchanged}")
    try:
        cls = json.loads(config.read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise ZooError(f"{config} is not valid JSON ({e}); {unchanged}") from e
    if cls != _CLASSES[component]:
        raise ZooError(f"{export} exports a {cls!r}, but a {component} is a {_CLASSES[component]!r}; pass "
                       f"the export folder of a {component} trainer; {unchanged}")
    try:
        weights = load_state_dict(Path(export))
    except ZooError as e:
        raise ZooError(f"{e}; {unchanged}") from e
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in weights.items()}


def _write_component(dest: Path, component: str, export: Path, weights: dict[str, torch.Tensor],
                     max_shard_bytes: int) -> None:
    """(Re)create ``dest`` from ``export``'s non-weight files and ``weights`` in shards of at most
    ``max_shard_bytes``."""
    from safetensors.torch import save_file

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in Path(export).iterdir():
        if f.suffix != ".safetensors" and f.is_file():
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
    for i, shard in enumerate(shards):
        fname = f"{stem}.safetensors" if len(shards) == 1 else f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(dest / fname))


def add_component(name: str, component: str, export: Path, root: Path = ZOO_ROOT,
                  max_shard_bytes: int = MAX_SHARD_BYTES, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Copy a trainer's ``export`` folder into ``root/name/component`` (weights cast to ``dtype`` and
    sharded), keeping ``eval.json`` if present; the caller rewrites the manifest. The export is checked
    and read before anything is removed."""
    weights = _read_export(Path(export), component, dtype, f"{name}/{component} is unchanged")
    dest = root / name / component
    _write_component(dest, component, Path(export), weights, max_shard_bytes)
    return dest


def derive_entry(base: str | os.PathLike[str], dest: Path, exports: dict[str, Path]) -> Path:
    """A copy of zoo entry ``base`` at folder ``dest`` (which must not exist) whose components ``exports``
    (component -> a trainer's ``export/`` folder) are replaced, manifest rewritten; returns ``dest``.

    Every export is checked and read before anything is written; if writing fails, ``dest`` is removed
    (no partial candidate that would verify as a copy of ``base`` is left behind)."""
    src = entry(base)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; derive_entry writes a new folder")
    unknown = sorted(set(exports) - set(_CLASSES))
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {sorted(_CLASSES)}")
    weights = {c: _read_export(Path(e), c, torch.bfloat16, f"nothing was written to {dest}")
               for c, e in exports.items()}  # 1. every export checked before the copy starts
    folders = {c: src.manifest["components"].get(c, {}).get("folder", c) for c in exports}
    try:  # 2. copy, 3. replace components, 4. manifest
        shutil.copytree(src.root, dest)
        for component, export in exports.items():
            _write_component(dest / folders[component], component, Path(export), weights[component],
                             MAX_SHARD_BYTES)
        _rewrite_manifest(dest, src.manifest, exports)
    except BaseException:
        if dest.exists():  # a half-replaced copy must not pass for a candidate; the error propagates
            shutil.rmtree(dest)
        raise
    return dest


def replace_component(name: str, component: str, export: Path, root: Path = ZOO_ROOT) -> Path:
    """Replace one component of the existing zoo entry ``root/name`` by a trainer's ``export/`` folder and
    rewrite the entry's manifest (sizes and sha256), so the entry verifies again; returns the entry folder.
    Score a candidate first (:func:`derive_entry`)."""
    old = entry(name, root, verify=False)  # the manifest to keep (resolution, description, dream settings)
    add_component(old.root.name, component, Path(export), root=old.root.parent)
    _rewrite_manifest(old.root, old.manifest, [component])
    return old.root


def _rewrite_manifest(folder: Path, manifest: dict[str, Any], new_components: Iterable[str]) -> None:
    """The manifest of ``folder`` rewritten from ``manifest`` (a component folder was replaced or added)."""
    from sana_world.zoo import write_manifest

    comps = {k: {"folder": v["folder"], "class": v["class"]} for k, v in manifest["components"].items()}
    for component in new_components:
        comps.setdefault(component, {"folder": component, "class": _CLASSES[component]})
    write_manifest(folder, folder.name, manifest["resolution"], comps, manifest.get("description", ""),
                   manifest.get("dream"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sana_world.generators.zoo", description="zoo maintenance")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="replace a component of a zoo entry by a trainer export folder")
    a.add_argument("name")
    a.add_argument("component", choices=sorted(_CLASSES))
    a.add_argument("export", type=Path)
    d = sub.add_parser("derive", help="copy an entry to a new folder with components replaced by exports")
    d.add_argument("base")
    d.add_argument("dest", type=Path)
    for component in sorted(_CLASSES):
        d.add_argument(f"--{component.replace('_', '-')}", type=Path, default=None, help="an export/ folder")
    args = p.parse_args(argv)
    try:
        if args.cmd == "add":
            print(replace_component(args.name, args.component, args.export))
        else:
            exports = {c: getattr(args, c) for c in _CLASSES if getattr(args, c) is not None}
            print(derive_entry(args.base, args.dest, exports))
    except (ZooError, FileNotFoundError, FileExistsError) as e:  # bad input; bugs keep their tracebacks
        p.exit(1, f"{p.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
