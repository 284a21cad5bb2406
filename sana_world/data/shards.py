"""Trajectory shards on disk: a checksummed manifest over single-file safetensors shards; torch datasets.

Layout of a dataset directory::

    manifest.json             format, version, resolution, generation config, one entry per shard
    shard-00000.safetensors   N trajectories of T steps (T + 1 frames) at H x W
    shard-00001.safetensors   ...

Tensors of one shard (safetensors, uncompressed, so a trajectory is read without loading the shard)::

    rgb      uint8   (N, T+1, H, W, 3)
    depth    float16 (N, T+1, H, W)     z-depth, inf on miss
    c2w      float32 (N, T+1, 4, 4)     OpenCV camera-to-world
    K        float32 (N, 3, 3)
    actions  float32 (N, T, 6)          normalised twist [forward, right, up, yaw, pitch, roll]
    seed     int64   (N,)               scene seed

and in the safetensors metadata (JSON strings): ``captions`` (N,) and ``specs`` (N,) SceneSpec JSON.

Integrity: the manifest records every shard's sha256 and byte size. :func:`verify` and
``TrajectoryDataset(verify=True)`` hash every shard; with ``verify=False`` only sizes and headers are
checked. Any problem raises :class:`ShardError` naming the file; nothing is silently skipped. Files are
written to a temporary name and renamed, so a crash never leaves a half-written shard or manifest.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from sana_world.checkpoints import file_sha256

FORMAT = "sana-world-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_NAME = "shard-{:05d}.safetensors"
_SHARD_RE = re.compile(r"^shard-\d{5}\.safetensors$")
TENSOR_KEYS = ("rgb", "depth", "c2w", "K", "actions", "seed")


class ShardError(RuntimeError):
    """A missing, truncated, corrupted or inconsistent shard or manifest; the message names the file."""


@dataclass
class Trajectory:
    """One rendered trajectory of ``steps`` actions and ``steps + 1`` frames (numpy arrays)."""

    rgb: np.ndarray  # (T+1, H, W, 3) uint8
    depth: np.ndarray  # (T+1, H, W) float16 / float32
    c2w: np.ndarray  # (T+1, 4, 4) float32
    K: np.ndarray  # (3, 3) float32
    actions: np.ndarray  # (T, 6) float32
    caption: str
    spec_json: str
    seed: int

    @property
    def steps(self) -> int:
        return int(self.actions.shape[0])

    def checked(self) -> Trajectory:
        """A copy with storage dtypes, raising ValueError naming the first array with a wrong shape."""
        rgb, depth = np.asarray(self.rgb), np.asarray(self.depth)
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 (T+1, H, W, 3), got {rgb.dtype} {rgb.shape}")
        F, H, W = rgb.shape[:3]
        shapes = {"depth": (depth, (F, H, W)), "c2w": (np.asarray(self.c2w), (F, 4, 4)),
                  "K": (np.asarray(self.K), (3, 3)), "actions": (np.asarray(self.actions), (F - 1, 6))}
        for name, (arr, want) in shapes.items():
            if arr.shape != want:
                raise ValueError(f"{name} must have shape {want} for {F} frames of {H}x{W}, got {arr.shape}")
        return Trajectory(
            rgb=np.ascontiguousarray(rgb), depth=np.asarray(depth, dtype=np.float16),
            c2w=np.asarray(self.c2w, dtype=np.float32), K=np.asarray(self.K, dtype=np.float32),
            actions=np.asarray(self.actions, dtype=np.float32), caption=str(self.caption),
            spec_json=str(self.spec_json), seed=int(self.seed),
        )


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_DTYPES = {np.dtype(np.uint8): "U8", np.dtype(np.float16): "F16", np.dtype(np.float32): "F32",
           np.dtype(np.int64): "I64"}


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a safetensors file deterministically (the library orders metadata keys at random, so equal
    shards would hash differently); tensors go largest element size first, which keeps each aligned."""
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for k in order:
        a = tensors[k]
        if a.dtype not in _DTYPES:
            raise ValueError(f"tensor {k!r}: unsupported dtype {a.dtype}")
        header[k] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape),
                     "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for k in order:  # 1. raw little-endian, C-contiguous bytes of each tensor
            a = np.ascontiguousarray(tensors[k])
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).data)
        f.flush()
        os.fsync(f.fileno())


def write_shard(path: str | os.PathLike[str], trajectories: list[Trajectory]) -> dict[str, Any]:
    """Write one shard atomically; returns its manifest entry (file, sha256, bytes, count)."""
    if not trajectories:
        raise ValueError("a shard needs at least one trajectory")
    trajs = [t.checked() for t in trajectories]
    shape0 = trajs[0].rgb.shape
    for i, t in enumerate(trajs):
        if t.rgb.shape != shape0:
            raise ValueError(f"trajectory {i} has frames {t.rgb.shape}, the shard's first has {shape0}")
    tensors = {
        "rgb": np.stack([t.rgb for t in trajs]),  # (N, T+1, H, W, 3)
        "depth": np.stack([t.depth for t in trajs]),  # (N, T+1, H, W)
        "c2w": np.stack([t.c2w for t in trajs]),  # (N, T+1, 4, 4)
        "K": np.stack([t.K for t in trajs]),  # (N, 3, 3)
        "actions": np.stack([t.actions for t in trajs]),  # (N, T, 6)
        "seed": np.array([t.seed for t in trajs], dtype=np.int64),  # (N,)
    }
    metadata = {
        "format": FORMAT, "version": str(FORMAT_VERSION), "count": str(len(trajs)),
        "captions": json.dumps([t.caption for t in trajs]), "specs": json.dumps([t.spec_json for t in trajs]),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_safetensors(tmp, tensors, metadata)
        entry = {"file": path.name, "sha256": file_sha256(tmp), "bytes": tmp.stat().st_size, "count": len(trajs)}
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return entry


class ShardWriter:
    """Buffers trajectories and writes ``shard_size`` of them per shard, keeping ``manifest.json`` current.

    The manifest is rewritten (atomically) after every shard with ``complete: false`` and finalised by
    :meth:`close` (or leaving the ``with`` block without an exception). An existing dataset in ``out_dir``
    raises FileExistsError unless ``overwrite=True``, which deletes its manifest and shard files only.
    """

    def __init__(self, out_dir: str | os.PathLike[str], shard_size: int = 32,
                 config: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self.config = dict(config or {})
        json.dumps(self.config)  # fail now, not after hours of rendering, if the config is not JSON
        self.out_dir.mkdir(parents=True, exist_ok=True)
        old = [p for p in self.out_dir.iterdir() if p.name == MANIFEST or _SHARD_RE.match(p.name)]
        if old and not overwrite:
            raise FileExistsError(f"{self.out_dir} already holds a dataset ({old[0].name}); "
                                  "pass overwrite=True to replace it")
        for p in old:
            p.unlink()
        self._buffer: list[Trajectory] = []
        self._shards: list[dict[str, Any]] = []
        self._shape: tuple[int, ...] | None = None  # (T+1, H, W, 3)
        self._closed = False

    @property
    def count(self) -> int:
        """Trajectories added so far."""
        return sum(s["count"] for s in self._shards) + len(self._buffer)

    def add(self, trajectory: Trajectory) -> None:
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        t = trajectory.checked()
        if self._shape is None:
            self._shape = t.rgb.shape
        elif t.rgb.shape != self._shape:
            raise ValueError(f"trajectory frames {t.rgb.shape} differ from the dataset's {self._shape}")
        self._buffer.append(t)
        if len(self._buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write buffered trajectories as a shard (even a short one) and update the manifest."""
        if not self._buffer:
            return
        name = SHARD_NAME.format(len(self._shards))
        entry = write_shard(self.out_dir / name, self._buffer)
        entry["first_index"] = sum(s["count"] for s in self._shards)
        self._shards.append(entry)
        self._buffer = []
        self._write_manifest(complete=False)

    def close(self) -> dict[str, Any]:
        """Flush the last shard and mark the manifest complete; returns the manifest."""
        if self._closed:
            return self.manifest(complete=True)
        self.flush()
        if not self._shards:
            raise ValueError(f"no trajectories were added to {self.out_dir}")
        self._closed = True
        return self._write_manifest(complete=True)

    def manifest(self, complete: bool) -> dict[str, Any]:
        assert self._shape is not None
        frames, height, width = self._shape[:3]
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "complete": complete,
            "num_trajectories": sum(s["count"] for s in self._shards),
            "steps": frames - 1, "frames": frames, "height": height, "width": width,
            "tensors": {"rgb": "uint8", "depth": "float16", "c2w": "float32", "K": "float32",
                        "actions": "float32", "seed": "int64"},
            "config": self.config, "shards": list(self._shards),
        }

    def _write_manifest(self, complete: bool) -> dict[str, Any]:
        m = self.manifest(complete)
        _atomic_write_text(self.out_dir / MANIFEST, json.dumps(m, indent=2, sort_keys=True))
        return m

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()


# ---------------------------------------------------------------------------------------------------------
# Reading and verifying
# ---------------------------------------------------------------------------------------------------------


def load_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and sanity-check ``root/manifest.json`` (no shard access); raises ShardError."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{path}: manifest missing (is {root} a sana-world dataset?)")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: bad manifest, not valid JSON ({e})") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ShardError(f"{path}: bad manifest, format is not {FORMAT!r}")
    if m.get("version") != FORMAT_VERSION:
        raise ShardError(f"{path}: bad manifest, version {m.get('version')!r} "
                         f"(this reader knows {FORMAT_VERSION})")
    for key in ("num_trajectories", "steps", "height", "width", "shards", "complete"):
        if key not in m:
            raise ShardError(f"{path}: bad manifest, missing field {key!r}")
    if not m["complete"]:
        raise ShardError(f"{path}: dataset is incomplete (the writer was interrupted before close())")
    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise ShardError(f"{path}: bad manifest, 'shards' must be a non-empty list")
    for i, s in enumerate(shards):
        if not isinstance(s, dict) or any(k not in s for k in ("file", "sha256", "bytes", "count")):
            raise ShardError(f"{path}: bad manifest, shards[{i}] needs file, sha256, bytes and count")
        if not _SHARD_RE.match(str(s["file"])):
            raise ShardError(f"{path}: bad manifest, shards[{i}].file {s['file']!r} is not a shard name")
    if sum(int(s["count"]) for s in shards) != m["num_trajectories"]:
        raise ShardError(f"{path}: bad manifest, shard counts do not add up to num_trajectories")
    return m


class ShardFile:
    """An open shard: size, header and shapes checked against its manifest entry; reads slices lazily."""

    def __init__(self, root: Path, entry: dict[str, Any], manifest: dict[str, Any], checksum: bool) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = root / entry["file"]
        if not self.path.is_file():
            raise ShardError(f"{self.path}: shard file missing")
        size = self.path.stat().st_size
        if size != entry["bytes"]:
            raise ShardError(f"{self.path}: truncated or resized shard "
                             f"({size} bytes, manifest says {entry['bytes']})")
        if checksum and file_sha256(self.path) != entry["sha256"]:
            raise ShardError(f"{self.path}: sha256 mismatch, the shard is corrupted")
        try:
            self._f = safe_open(str(self.path), framework="pt")
            meta = self._f.metadata() or {}
            self.captions: list[str] = json.loads(meta["captions"])
            self.specs: list[str] = json.loads(meta["specs"])
            shapes = {k: tuple(self._f.get_slice(k).get_shape()) for k in TENSOR_KEYS}
        except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
            raise ShardError(f"{self.path}: unreadable shard header ({type(e).__name__}: {e})") from e
        n, F, H, W = entry["count"], manifest["steps"] + 1, manifest["height"], manifest["width"]
        want = {"rgb": (n, F, H, W, 3), "depth": (n, F, H, W), "c2w": (n, F, 4, 4), "K": (n, 3, 3),
                "actions": (n, F - 1, 6), "seed": (n,)}
        for k, shape in want.items():
            if shapes[k] != shape:
                raise ShardError(f"{self.path}: tensor {k!r} has shape {shapes[k]}, manifest implies {shape}")
        if len(self.captions) != n or len(self.specs) != n:
            raise ShardError(f"{self.path}: {len(self.captions)} captions / {len(self.specs)} specs "
                             f"for {n} trajectories")

    def read(self, key: str, index: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """``key`` of trajectory ``index``, frames ``start:stop`` for per-frame tensors."""
        sl = self._f.get_slice(key)
        if key in ("K", "seed"):
            return sl[index]
        return sl[index, start:stop]

    def load(self) -> dict[str, Any]:
        """Every tensor of the shard as numpy arrays plus ``captions`` and ``specs`` lists."""
        out: dict[str, Any] = {k: self._f.get_tensor(k).numpy() for k in TENSOR_KEYS}
        out["captions"], out["specs"] = list(self.captions), list(self.specs)
        return out


def verify(root: str | os.PathLike[str], checksums: bool = True) -> dict[str, Any]:
    """Check the manifest and every shard (existence, size, sha256, header, shapes); returns the manifest.

    Raises :class:`ShardError` naming the first bad file.
    """
    root = Path(root)
    m = load_manifest(root)
    for entry in m["shards"]:
        ShardFile(root, entry, m, checksum=checksums)
    return m


def read_shard(path: str | os.PathLike[str], checksum: bool = True) -> dict[str, Any]:
    """Load one whole shard (numpy arrays, captions, specs), checked against its dataset's manifest."""
    path = Path(path)
    m = load_manifest(path.parent)
    entries = [s for s in m["shards"] if s["file"] == path.name]
    if not entries:
        raise ShardError(f"{path}: not listed in {path.parent / MANIFEST}")
    return ShardFile(path.parent, entries[0], m, checksum=checksum).load()


class TrajectoryDataset(Dataset):
    """Map-style dataset over a shard directory; shuffle and workers come from the DataLoader.

    Items are whole trajectories (``clip_len=None``) or windows of ``clip_len`` frames starting every
    ``clip_stride`` frames (default ``clip_len``). Each item is a dict::

        rgb      uint8   (L, H, W, 3)       depth  float32 (L, H, W)     c2w  float32 (L, 4, 4)
        K        float32 (3, 3)             actions float32 (L-1, 6)     seed int64 ()
        index    int64 () trajectory index  start  int64 () first frame  caption str   spec str (JSON)

    ``verify=True`` hashes every shard once at construction (reads the whole dataset); ``verify=False``
    checks sizes and headers only. Shards are opened lazily in each worker process.
    """

    def __init__(self, root: str | os.PathLike[str], clip_len: int | None = None,
                 clip_stride: int | None = None, verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        frames = self.manifest["steps"] + 1
        if clip_len is not None and not (2 <= clip_len <= frames):
            raise ValueError(f"clip_len must lie in [2, {frames}] (frames per trajectory), got {clip_len}")
        self.clip_len = clip_len
        stride = clip_stride if clip_stride is not None else (clip_len or frames)
        if stride < 1:
            raise ValueError(f"clip_stride must be >= 1, got {clip_stride}")
        starts = list(range(0, frames - (clip_len or frames) + 1, stride))
        # 1. check every shard now (hash or size + header) so a bad file fails before training starts
        for entry in self.manifest["shards"]:
            ShardFile(self.root, entry, self.manifest, checksum=verify)
        # 2. flat index of (shard, trajectory within shard, first frame)
        self._items = [(si, j, s) for si, e in enumerate(self.manifest["shards"]) for j in range(e["count"])
                       for s in starts]
        counts = [int(e["count"]) for e in self.manifest["shards"]]
        self._first = [sum(counts[:si]) for si in range(len(counts))]  # global index of each shard's first
        self._open: dict[int, ShardFile] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # safetensors handles do not pickle; workers reopen lazily
        return state

    def _shard(self, si: int) -> ShardFile:
        if self._pid != os.getpid():  # forked worker: never share file handles across processes
            self._open, self._pid = {}, os.getpid()
        if si not in self._open:
            self._open[si] = ShardFile(self.root, self.manifest["shards"][si], self.manifest, checksum=False)
        return self._open[si]

    def item_key(self, i: int) -> tuple[int, int, int]:
        """(shard index, trajectory within shard, first frame) of item ``i``."""
        return self._items[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        si, j, start = self._items[i]
        f = self._shard(si)
        stop = None if self.clip_len is None else start + self.clip_len
        return {
            "rgb": f.read("rgb", j, start, stop),  # (L, H, W, 3) uint8
            "depth": f.read("depth", j, start, stop).float(),  # (L, H, W)
            "c2w": f.read("c2w", j, start, stop),  # (L, 4, 4)
            "K": f.read("K", j),  # (3, 3)
            "actions": f.read("actions", j, start, None if stop is None else stop - 1),  # (L-1, 6)
            "seed": f.read("seed", j),
            "index": torch.tensor(self._first[si] + j, dtype=torch.int64),
            "start": torch.tensor(start, dtype=torch.int64),
            "caption": f.captions[j],
            "spec": f.specs[j],
        }


class ShardIterable(IterableDataset):
    """Streaming view of a shard directory: shuffled shard order, a shuffle buffer and worker sharding.

    Each epoch visits every item once across all DataLoader workers (worker ``w`` of ``n`` takes every
    ``n``-th item of the epoch's order). Call :meth:`set_epoch` between epochs for a new order.
    ``shuffle_buffer=0`` streams in stored order.
    """

    def __init__(self, root: str | os.PathLike[str], clip_len: int | None = None,
                 clip_stride: int | None = None, shuffle_buffer: int = 256, seed: int = 0,
                 verify: bool = True) -> None:
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.dataset = TrajectoryDataset(root, clip_len=clip_len, clip_stride=clip_stride, verify=verify)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _order(self) -> list[int]:
        """Item indices of this epoch: shards in shuffled order, items in stored order within a shard."""
        by_shard: dict[int, list[int]] = {}
        for i in range(len(self.dataset)):
            by_shard.setdefault(self.dataset.item_key(i)[0], []).append(i)
        shards = sorted(by_shard)
        if self.shuffle_buffer:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
            shards = [shards[k] for k in perm]
        return [i for s in shards for i in by_shard[s]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        mine = self._order()[wid::nw]
        if not self.shuffle_buffer:
            for i in mine:
                yield self.dataset[i]
            return
        rng = np.random.default_rng([self.seed, self.epoch, wid])
        buf: list[int] = []
        for i in mine:  # 1. fill the buffer, then swap a random element out for every new one
            if len(buf) < self.shuffle_buffer:
                buf.append(i)
                continue
            k = int(rng.integers(len(buf)))
            yield self.dataset[buf[k]]
            buf[k] = i
        for k in rng.permutation(len(buf)):  # 2. drain what is left in random order
            yield self.dataset[buf[k]]
