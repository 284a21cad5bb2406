"""The model zoo: models trained here, shipped in the repository, found by name and checked before use.

A zoo entry is a folder ``sana_world/zoo/<name>/`` with a ``manifest.json``::

    {"name": "rooms-128", "resolution": 128, "description": "...",
     "components": {"autoencoder": {"folder": "autoencoder", "class": "AutoencoderDC",
                                     "files": {"config.json": {"bytes": 1102, "sha256": "..."}, ...}},
                    "world_model": {...}, "image": {...}},
     "dream": {...sampler defaults...},
     "frames": {"supersample": 2},   # optional: the GT frames its models were trained on (GTConfig.supersample)
     "derived_from": {...}}   # only in entries built by `zoo derive` / `zoo add`: the base and the exports

This module (core) only locates and verifies files; building the models is
:func:`sana_world.generators.zoo.load`. A missing file, a size or a sha256 that differs from the manifest
raises :class:`ZooError` naming the file, before any weight is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sana_world.checkpoints import file_sha256

__all__ = ["ZOO_ROOT", "ZooEntry", "ZooError", "available", "entry", "is_path", "write_manifest"]

ZOO_ROOT = Path(__file__).resolve().parent
MANIFEST = "manifest.json"


class ZooError(RuntimeError):
    """A zoo entry is unknown, incomplete or corrupted."""


@dataclass(frozen=True)
class ZooEntry:
    """A verified zoo folder: ``root`` and its parsed manifest."""

    name: str
    root: Path
    manifest: dict[str, Any]

    def folder(self, component: str) -> Path:
        """The folder of ``component`` ("autoencoder", "world_model", "image")."""
        comps = self.manifest["components"]
        if component not in comps:
            raise ZooError(f"zoo entry {self.name!r} has no component {component!r} (has {sorted(comps)})")
        return self.root / comps[component]["folder"]

    def has(self, component: str) -> bool:
        return component in self.manifest["components"]

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def dream_defaults(self) -> dict[str, Any]:
        return dict(self.manifest.get("dream", {}))

    @property
    def supersample(self) -> int:
        """Rays a side per pixel of the GT frames the entry's models were trained on (box-filtered down:
        ``GTConfig.supersample``); 1 (one ray a pixel) when the manifest does not say."""
        value = self.manifest.get("frames", {}).get("supersample", 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ZooError(f"zoo entry {self.name!r}: frames.supersample must be an int >= 1, got {value!r}")
        return value


def available(root: Path = ZOO_ROOT) -> list[str]:
    """Names of the zoo entries under ``root``."""
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))


def is_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` names a folder rather than a zoo entry: a ``Path`` (any ``os.PathLike``), or a string
    with a path separator or starting with "." or "~". A bare name ("rooms-128") is always an entry under
    the zoo root, whatever folders the current directory holds."""
    if isinstance(name, os.PathLike):
        return True
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(s in name for s in seps) or name.startswith((".", "~"))


def entry(name: str | os.PathLike[str], root: Path = ZOO_ROOT, verify: bool = True) -> ZooEntry:
    """The zoo entry ``name``: a bare name is looked up under ``root`` only, a path (:func:`is_path`) is a
    folder holding a manifest. Every listed file is checked for presence, size and (``verify``) sha256."""
    if is_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ZooError(f"no zoo entry at {folder}: not a folder (entries by bare name: {available(root)})")
    else:
        folder = Path(root) / name
        if not (folder / MANIFEST).is_file():
            hint = f"; to use the folder {name!r} of the current directory pass './{name}'" if Path(name).is_dir() \
                else ""  # fmt: skip
            raise ZooError(f"no zoo entry {name!r} in {root} (available: {available(root)}){hint}")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ZooError(f"no zoo entry at {folder}: {manifest_path} does not exist")
    name = str(name)
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{manifest_path} is not valid JSON: {e}") from e
    for comp, spec in manifest.get("components", {}).items():
        for fname, meta in spec["files"].items():
            path = folder / spec["folder"] / fname
            if not path.is_file():
                raise ZooError(f"zoo entry {manifest.get('name', name)!r}: {comp} file {path} is missing")
            size = path.stat().st_size
            if size != meta["bytes"]:
                raise ZooError(f"zoo entry {manifest.get('name', name)!r}: {path} has {size} bytes, the manifest "
                               f"says {meta['bytes']} (truncated or replaced file)")
            if verify and file_sha256(path) != meta["sha256"]:
                raise ZooError(f"zoo entry {manifest.get('name', name)!r}: {path} fails its sha256 check "
                               "(corrupted file)")
    return ZooEntry(str(manifest.get("name", name)), folder, manifest)


def write_manifest(folder: Path, name: str, resolution: int, components: dict[str, dict[str, str]],
                   description: str = "", dream: dict[str, Any] | None = None,
                   derived_from: dict[str, Any] | None = None, frames: dict[str, Any] | None = None) -> Path:
    """(Re)write ``folder/manifest.json`` listing every file of each component folder with its size and
    sha256. ``components`` maps a component to ``{"folder": ..., "class": ...}``; ``derived_from`` (the base
    entry and the exports an entry was built from) and ``frames`` (how its GT frames are rendered) are kept
    as given."""
    comps: dict[str, Any] = {}
    for comp, spec in components.items():
        sub = folder / spec["folder"]
        files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
                 for p in sorted(sub.iterdir()) if p.is_file()}
        if not files:
            raise ZooError(f"component {comp!r} folder {sub} is empty")
        comps[comp] = {**spec, "files": files}
    out = {"name": name, "resolution": resolution, "description": description, "components": comps,
           "dream": dream or {}}
    if derived_from is not None:
        out["derived_from"] = derived_from
    if frames:
        out["frames"] = frames
    path = folder / MANIFEST
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return path
