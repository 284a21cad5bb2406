"""Reading diffusers-format model folders and the state-dict plumbing the interop modules share.

A diffusers model folder holds ``config.json`` and its weights as safetensors: one ``*.safetensors`` file,
or shards listed by a ``*.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``). A
pipeline root holds the model in a subfolder (``transformer/``). Only safetensors is needed to read one;
diffusers is imported lazily, and only to check a model instance's class.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "CheckpointFormatError",
    "assert_materialized",
    "build_on_meta",
    "diffusers_source",
    "load_safetensors_weights",
    "model_dir",
    "read_diffusers_dir",
    "resolve_model_dir",
    "take",
]

CONFIG_FILE = "config.json"
INDEX_SUFFIX = ".safetensors.index.json"
M = TypeVar("M", bound=nn.Module)


class CheckpointFormatError(ValueError):
    """A model folder whose files are unreadable or disagree (bad JSON, corrupted or incomplete shards)."""


def model_dir(path: str | os.PathLike[str], subfolder: str = "transformer") -> Path:
    """``path`` if it holds a ``config.json``, else ``path/subfolder`` if that does (a pipeline root), else
    ``path`` unchecked (:func:`resolve_model_dir` raises for that)."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() and (path / subfolder / CONFIG_FILE).is_file():
        return path / subfolder  # a pipeline directory
    return path


def resolve_model_dir(path: str | os.PathLike[str], subfolder: str = "transformer") -> Path:
    """The folder holding ``config.json``: ``path`` itself, or ``path/subfolder`` for a pipeline root."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    path = model_dir(path, subfolder)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {path}")
    return path


def read_json_object(path: Path, error: type[Exception], note: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` (a message naming ``path``, then ``note``) when it is not valid
    JSON or not an object. A missing file is ``FileNotFoundError``."""
    tail = f"; {note}" if note else ""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing{tail}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e}){tail}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}{tail}")
    return data


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, CheckpointFormatError)


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 4 MiB blocks (the checksum every manifest here records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointFormatError(f"{path}: unreadable safetensors ({e})") from e


def load_safetensors_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All weights of a model folder: the shards of its one index, else its one ``.safetensors`` file."""
    path = Path(path)
    # 1. Pick the weight files: a sharded index if there is one, else a single .safetensors file.
    indices = sorted(path.glob(f"*{INDEX_SUFFIX}"))
    if len(indices) > 1:
        raise ValueError(f"several safetensors indices in {path}: {[p.name for p in indices]}")
    weight_map: dict[str, str] | None = None
    if indices:
        weight_map = _read_json(indices[0]).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointFormatError(f"{indices[0]}: no weight_map")
        files = sorted({path / name for name in weight_map.values()})
    else:
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise ValueError(f"expected one .safetensors file (or an index) in {path}, found {len(files)}")
    # 2. Merge the shards; with an index, every listed tensor must be in the shard it names.
    sd: dict[str, torch.Tensor] = {}
    for file in files:
        sd.update(_load_file(file))
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(sd))
        if missing:
            raise CheckpointFormatError(f"{indices[0]}: {len(missing)} listed tensors are in no shard "
                                        f"(first: {missing[:5]})")
    return sd


def read_diffusers_dir(path: str | os.PathLike[str], class_name: str,
                       subfolder: str = "transformer") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and all safetensors weights of a diffusers model (or pipeline) folder; a config
    naming another ``_class_name`` than ``class_name`` raises ValueError."""
    path = resolve_model_dir(path, subfolder)
    config = _read_json(path / CONFIG_FILE)
    if config.get("_class_name", class_name) != class_name:
        raise ValueError(f"_class_name={config['_class_name']!r} in {path}, expected {class_name!r}")
    return config, load_safetensors_weights(path)


def diffusers_source(obj_or_dir: Any,
                     class_name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], bool]:
    """(config, state dict, whether to copy tensors) of a diffusers model instance of ``class_name`` or
    a diffusers-format folder (whose freshly read tensors need no copy)."""
    if isinstance(obj_or_dir, (str, os.PathLike)):
        config, sd = read_diffusers_dir(obj_or_dir, class_name)
        return config, sd, False
    import diffusers

    if not isinstance(obj_or_dir, getattr(diffusers, class_name)):
        raise TypeError(f"expected a {class_name} or a directory, got {type(obj_or_dir).__name__}")
    return dict(obj_or_dir.config), obj_or_dir.state_dict(), True


def take(sd: dict[str, torch.Tensor], key: str, side: str) -> torch.Tensor:
    """Pop ``key`` from ``sd``; KeyError naming the ``side`` ("diffusers", the model class) if absent."""
    if key not in sd:
        raise KeyError(f"{side} state dict lacks {key!r}")
    return sd.pop(key)


def build_on_meta(factory: Callable[[], M], state_dict: dict[str, torch.Tensor]) -> M:
    """Build a module on the meta device and assign ``state_dict`` (strict) as its tensors."""
    with torch.device("meta"):
        module = factory()
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module


def assert_materialized(module: nn.Module) -> None:
    """RuntimeError naming the parameters / buffers still on the meta device after a conversion."""
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left unset after conversion: {left[:10]}")
