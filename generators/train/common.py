"""Shared trainer parts: distributed setup, EMA, exact-resume checkpoints, TensorBoard, clipping, autocast.

Checkpoint layout (one directory per step, written to ``.tmp-step-XXXXXXXX`` and renamed when complete)::

    <root>/step-00001000/
        model.safetensors            model weights (safetensors, pickle-free)
        ema.safetensors              EMA weights
        optimizer.safetensors        optimizer state tensors; param_groups and scalars as JSON metadata
        rng-rank00000.safetensors    torch CPU / CUDA RNG states of each rank; python / numpy as metadata
        config.json                  the resolved run config (diffusers-like, beside the weights)
        trainer_state.json           step, LR scheduler, data iterator state, size + sha256 of every file

``trainer_state.json`` is written last, so a directory without it is incomplete; :func:`load_checkpoint`
re-hashes every file and raises :class:`CheckpointError` naming the bad one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from sana_world.checkpoints import file_sha256

CHECKPOINT_FORMAT = "sana-world-train-checkpoint"
CHECKPOINT_VERSION = 1
STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.json"
_STEP_RE = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A missing, incomplete, corrupted or incompatible checkpoint; the message names the file."""


# --- Distributed -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank / world size (1 without torchrun) and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if launched by torchrun (WORLD_SIZE > 1), else a single process.

    ``device``: None picks ``cuda:<local rank>`` when CUDA is available, else CPU. Multi-process runs use
    NCCL on CUDA and gloo on CPU. Idempotent: a group that is already initialised is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # fixed training shapes: let cuDNN pick its fastest kernels
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized() and (dist.get_world_size() != world or dist.get_rank() != rank):
        raise RuntimeError(f"process group has rank {dist.get_rank()}/{dist.get_world_size()}, "
                           f"torchrun says {rank}/{world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group (end of a torchrun script)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``x`` over ranks (a copy; ``x`` itself on a single process)."""
    if not info.distributed:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / info.world_size


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` when running multi-process; ``model`` itself otherwise."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or ``torch.compile``) wrapper."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # torch.compile
        else:
            return model


def rank_seed(seed: int, *words: int) -> int:
    """A 63-bit seed mixed from ``seed`` and further words (rank, step, ...): independent streams."""
    return int(np.random.SeedSequence([seed, *words]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (CPU and CUDA) differently on every rank."""
    s = rank_seed(seed, rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


# --- EMA, clipping, autocast, gradient checkpointing -----------------------------------------------------


class EMA:
    """Exponential moving average of a model's parameters: ``ema = decay * ema + (1 - decay) * param``.

    Keeps a frozen eval-mode copy (``.model``) of the unwrapped model; buffers are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def decay_at(self, step: int | None) -> float:
        """The decay used at optimizer step ``step`` (1-based): ``min(decay, (1 + step) / (10 + step))``, so a
        short run's average is not dominated by the initial weights; ``None``: the constant ``decay``."""
        return self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        decay = self.decay_at(step)
        src = unwrap(model)
        ema_p, src_p = list(self.model.parameters()), list(src.parameters())
        if len(ema_p) != len(src_p):
            raise ValueError(f"EMA holds {len(ema_p)} parameters, the model has {len(src_p)}")
        src_t = [p.detach().to(e.dtype) for e, p in zip(ema_p, src_p)]
        torch._foreach_lerp_(ema_p, src_t, 1.0 - decay)  # one fused launch, not one per tensor
        for e, b in zip(self.model.buffers(), src.buffers()):
            e.copy_(b)


def grad_clip(parameters: Any, max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (<= 0: no clipping); returns the norm before clipping."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        raise RuntimeError("grad_clip: no parameter has a gradient (was backward called?)")
    limit = max_norm if max_norm > 0 else float("inf")
    return float(torch.nn.utils.clip_grad_norm_(params, limit))


def autocast(device: torch.device, bf16: bool, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``bf16``; a no-op (fp32) otherwise. bf16 on a non-CUDA device raises.
    ``cache=False`` turns off autocast's weight-cast cache, as CUDA-graph capture requires."""
    if not bf16:
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ValueError(f"bf16 autocast is only supported on CUDA, not {device}; train in fp32 there")
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)


def set_gradient_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Turn activation checkpointing on or off through the model's own switch (diffusers-style
    ``enable_/disable_gradient_checkpointing`` or a ``gradient_checkpointing`` attribute)."""
    m = unwrap(model)
    if enabled and hasattr(m, "enable_gradient_checkpointing"):
        m.enable_gradient_checkpointing()
    elif not enabled and hasattr(m, "disable_gradient_checkpointing"):
        m.disable_gradient_checkpointing()
    elif hasattr(m, "gradient_checkpointing"):
        m.gradient_checkpointing = enabled
    elif enabled:
        raise TypeError(f"{type(m).__name__} has no gradient checkpointing switch")


def warmup_constant(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` optimizer steps, then constant (SANA's schedule)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    w = warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 if w == 0 else min(1.0, (s + 1) / w))


def lr_factor(step: int, warmup_steps: int, decay_steps: int = 0, min_lr_ratio: float = 0.1) -> float:
    """The learning-rate multiplier after ``step`` scheduler steps (0-based): a linear warm-up to 1 over
    ``warmup_steps``, then constant (``decay_steps == 0``), or a cosine from 1 down to ``min_lr_ratio``
    reached at step ``decay_steps`` and held after it (the anneal that ends a run of known length)."""
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"warmup_steps and decay_steps must be >= 0, got {warmup_steps}, {decay_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")
    if decay_steps and decay_steps <= warmup_steps:
        raise ValueError(f"decay_steps ({decay_steps}) must exceed warmup_steps ({warmup_steps})")
    if warmup_steps and step + 1 < warmup_steps:
        return (step + 1) / warmup_steps
    if decay_steps == 0:
        return 1.0
    frac = min(1.0, max(0.0, (step + 1 - warmup_steps) / (decay_steps - warmup_steps)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int,
                  min_lr_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` as a scheduler (``decay_steps == 0``: the same as :func:`warmup_constant`)."""
    lr_factor(0, warmup_steps, decay_steps, min_lr_ratio)  # validate now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps, decay_steps, min_lr_ratio))


# --- TensorBoard -----------------------------------------------------------------------------------------


class TensorBoard:
    """SummaryWriter on the main process; every call is a no-op elsewhere (or when ``enabled=False``)."""

    def __init__(self, log_dir: str | os.PathLike[str], enabled: bool = True) -> None:
        self.writer = None
        if enabled and is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """``images`` (N, 3, H, W) float in [0, 1]."""
        if self.writer is not None:
            self.writer.add_images(tag, images.detach().float().cpu().clamp(0, 1), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


# --- Train state and checkpoints -------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything an exact resume needs. ``model`` is the unwrapped module (never the DDP wrapper).

    ``data_state`` is the JSON state of the data iterator; RNG states are captured by
    :func:`save_checkpoint` and restored by :func:`load_checkpoint`.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: EMA | None = None
    step: int = 0
    data_state: dict[str, Any] = field(default_factory=dict)


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Optimizer state as flat tensors ``state.<param>.<name>`` plus JSON metadata (groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = v
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    return tensors, meta


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in json.loads(meta["scalars"]).items():
        state.setdefault(int(pid), {}).update(st)
    groups = json.loads(meta["param_groups"])
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in groups]  # JSON turned tuples (betas) into lists
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    meta = {"python": json.dumps(random.getstate()),
            "numpy": json.dumps([np_state[0], np_state[1].tolist(), *map(float, np_state[2:])])}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    v, s, g = json.loads(meta["python"])
    random.setstate((v, tuple(s), g))
    name, keys, pos, has_gauss, cached = json.loads(meta["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint directories under ``root`` (those with a state file), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_RE.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def save_checkpoint(root: str | os.PathLike[str], state: TrainState, config: dict[str, Any],
                    info: DistInfo = DistInfo(), keep_last: int = 3) -> Path:
    """Write ``root/step-XXXXXXXX`` atomically and delete all but the newest ``keep_last``; returns it.

    Call on every rank (each writes its own RNG file; the main process writes the rest).
    """
    from safetensors.torch import save_file

    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = Path(root)
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-{final.name}"
    meta = {"format": CHECKPOINT_FORMAT, "step": str(state.step)}
    # 1. a fresh temporary directory (a stale one from a crash is replaced)
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier(info)
    # 2. every rank: its RNG states
    rng_t, rng_m = _rng_tensors()
    save_file(rng_t, str(tmp / f"rng-rank{info.rank:05d}.safetensors"), metadata={**meta, **rng_m})
    barrier(info)
    if info.is_main:
        # 3. weights, EMA, optimizer, config
        save_file(_state_dict(state.model), str(tmp / "model.safetensors"), metadata=meta)
        if state.ema is not None:
            save_file(_state_dict(state.ema.model), str(tmp / "ema.safetensors"), metadata=meta)
        opt_t, opt_m = _optimizer_tensors(state.optimizer)
        save_file(opt_t, str(tmp / "optimizer.safetensors"), metadata={**meta, **opt_m})
        _fsync_write(tmp / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True))
        # 4. the state file last, with the size and hash of every other file
        files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(tmp.iterdir())}
        sched = {k: v for k, v in state.scheduler.state_dict().items() if k != "lr_lambdas"}
        trainer = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": state.step,
                   "world_size": info.world_size, "has_ema": state.ema is not None, "scheduler": sched,
                   "data": state.data_state, "files": files}
        _fsync_write(tmp / STATE_FILE, json.dumps(trainer, indent=2, sort_keys=True))
        # 5. publish by rename (an older copy of the same step is replaced), then prune
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    barrier(info)
    return final


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types; re-raise naming the file
        raise CheckpointError(f"{path}: unreadable safetensors file ({type(e).__name__}: {e})") from e


def read_checkpoint_state(path: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Parse and check ``trainer_state.json`` of a checkpoint directory (and, with ``verify``, re-hash
    every file it lists); raises :class:`CheckpointError` naming the problem."""
    path = Path(path)
    sf = path / STATE_FILE
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory does not exist")
    if not sf.is_file():
        raise CheckpointError(f"{sf}: missing (incomplete checkpoint: the writer did not finish)")
    try:
        st = json.loads(sf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{sf}: not valid JSON ({e})") from e
    if not isinstance(st, dict) or st.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{sf}: not a {CHECKPOINT_FORMAT} state file")
    if st.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{sf}: version {st.get('version')!r}, this reader knows {CHECKPOINT_VERSION}")
    for name, rec in st["files"].items():
        p = path / name
        if not p.is_file():
            raise CheckpointError(f"{p}: missing from the checkpoint")
        if p.stat().st_size != rec["bytes"]:
            raise CheckpointError(f"{p}: {p.stat().st_size} bytes, the checkpoint recorded {rec['bytes']} "
                                  "(truncated or overwritten)")
        if verify and file_sha256(p) != rec["sha256"]:
            raise CheckpointError(f"{p}: sha256 mismatch (corrupted)")
    return st


def load_checkpoint(path: str | os.PathLike[str], state: TrainState, info: DistInfo = DistInfo(),
                    verify: bool = True, restore_rng: bool = True) -> TrainState:
    """Restore ``state`` in place from a checkpoint directory for an exact resume; returns it.

    Weights, EMA, optimizer, scheduler, step, data state and (``restore_rng``) this rank's RNG states.
    The world size must match the one that wrote the checkpoint when restoring RNG states.
    """
    path = Path(path)
    st = read_checkpoint_state(path, verify=verify)
    # 1. weights (strict: every key, every shape)
    weights, _ = _load_safetensors(path / "model.safetensors")
    _load_module(state.model, weights, path / "model.safetensors")
    if state.ema is not None:
        if not st["has_ema"]:
            raise CheckpointError(f"{path}: no ema.safetensors, but the run keeps an EMA")
        ema_w, _ = _load_safetensors(path / "ema.safetensors")
        _load_module(state.ema.model, ema_w, path / "ema.safetensors")
    # 2. optimizer and scheduler
    opt_t, opt_m = _load_safetensors(path / "optimizer.safetensors")
    try:
        state.optimizer.load_state_dict(_optimizer_state(opt_t, opt_m))
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path / 'optimizer.safetensors'}: does not fit this optimizer ({e})") from e
    lambdas = [None] * len(state.optimizer.param_groups)
    state.scheduler.load_state_dict({**st["scheduler"], "lr_lambdas": lambdas})
    state.step = int(st["step"])
    state.data_state = dict(st["data"])
    # 3. this rank's RNG states
    if restore_rng:
        if st["world_size"] != info.world_size:
            raise CheckpointError(f"{path}: written by {st['world_size']} ranks, resuming on "
                                  f"{info.world_size}; an exact resume needs the same world size")
        rng_t, rng_m = _load_safetensors(path / f"rng-rank{info.rank:05d}.safetensors")
        _restore_rng(rng_t, rng_m)
    return state


def _load_module(module: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:  # missing / unexpected keys or shape mismatches, all listed by torch
        raise CheckpointError(f"{path}: does not fit {type(module).__name__}: {e}") from e


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The resolved run config saved beside a checkpoint."""
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        raise CheckpointError(f"{p}: missing")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: not valid JSON ({e})") from e

