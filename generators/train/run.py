"""What the trainers share around their objective: the optimisation and run-control configs, the train
state they build, resume / checkpoint / TensorBoard / progress plumbing, the data order and the CLI.

A trainer config nests an :class:`OptimConfig` (``optim``) and a :class:`RunConfig` (``run``); their
fields stay flat everywhere a user sees them: one CLI flag each (``--lr``, ``--steps``), one key each in
the ``config.json`` beside a checkpoint, and :func:`config_from_flat` builds a nested config from flat
keyword arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from sana_world.generators.train.common import (
    EMA,
    DistInfo,
    TensorBoard,
    TrainState,
    all_reduce_mean,
    cleanup_distributed,
    grad_clip,
    is_main_process,
    lr_factor,
    rank_seed,
    save_checkpoint,
    seed_everything,
    set_gradient_checkpointing,
    warmup_cosine,
)
from sana_world.generators.train.errors import RunInterrupted, cli_message
from sana_world.generators.train.resume import (  # noqa: F401  (check_resume, resume_or_start re-exported)
    add_fingerprints,
    check_resume,
    input_paths,
    resume_or_start,
)

C = TypeVar("C")
R = TypeVar("R")


def config_field(default: Any, help: str) -> Any:
    """A dataclass field with CLI help text."""
    return field(default=default, metadata={"help": help})


def nested_field(factory: Callable[[], Any], help: str) -> Any:
    """A nested config field (its own fields become flat CLI flags)."""
    return field(default_factory=factory, metadata={"help": help, "nested": True})


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer (AdamW stands in for CAME), LR schedule, EMA and numerics; all of it is part of an exact
    resume."""

    lr: float = config_field(1e-4, "peak learning rate")
    warmup_steps: int = config_field(2000, "linear warm-up steps, constant after (or decayed: decay_steps)")
    decay_steps: int = config_field(0, "cosine decay from the peak lr, ending at this optimizer step "
                                       "(0: constant after warm-up; set it to the run's expected length)")
    min_lr_ratio: float = config_field(0.1, "lr at and after decay_steps, as a fraction of the peak")
    weight_decay: float = config_field(0.0, "AdamW weight decay")
    adam_betas: tuple[float, float] = config_field((0.9, 0.999), "AdamW betas")
    ema_decay: float = config_field(0.9999, "EMA decay per step")
    grad_clip: float = config_field(0.1, "global gradient-norm clip (<= 0: off)")
    bf16: bool = config_field(False, "bf16 autocast (CUDA only)")
    grad_checkpointing: bool = config_field(False, "recompute blocks in the backward pass")

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        lr_factor(0, self.warmup_steps, self.decay_steps, self.min_lr_ratio)  # raises on a bad schedule
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas must be two numbers, got {self.adam_betas}")


@dataclass(frozen=True)
class RunConfig:
    """Length, seed, output, logging and checkpointing of a run. All but ``seed`` may change between a
    run and its resume (:data:`RESUMABLE_FIELDS`)."""

    steps: int = config_field(1000, "total optimizer steps")
    seed: int = config_field(0, "seed of the init, the data order and every step's noise")
    out_dir: str = config_field("runs/train", "checkpoints/ and tb/ (and samples/) go here")
    device: str | None = config_field(None, "None: cuda:<local rank> if available, else cpu")
    resume: bool = config_field(False, "continue from the latest checkpoint in out_dir/checkpoints "
                                "(must exist)")
    log_every: int = config_field(10, "TensorBoard scalars (and, without progress, a log line) every N steps")
    ckpt_every: int = config_field(1000, "checkpoint every N steps (and at the end)")
    keep_last: int = config_field(3, "checkpoints kept")
    progress: bool = config_field(True, "tqdm progress bar on the main process (off: a line every log_every "
                                        "steps)")
    time_limit_s: float | None = config_field(None, "stop (and checkpoint) at the first step after this many "
                                              "seconds of training; None: run all steps")

    def __post_init__(self) -> None:
        for name in ("steps", "log_every", "ckpt_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be None or > 0, got {self.time_limit_s}")


# Fields that may change between a run and its resume without breaking exactness: RunConfig's but the seed,
# and the trainers' worker counts and data verification (a pool is the same whoever plans it)
RESUMABLE_FIELDS = (*(f.name for f in dataclasses.fields(RunConfig) if f.name != "seed"), "pool_workers",
                    "verify_data")


# --- Flat views of nested configs: config.json, CLI, keyword arguments -----------------------------------


def _is_nested(fld: dataclasses.Field) -> bool:
    return bool(fld.metadata.get("nested"))


def flat_dict(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` with the fields of nested configs lifted to the top level."""
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(config):
        value = getattr(config, fld.name)
        if _is_nested(fld):
            out.update(dataclasses.asdict(value))
        else:
            out[fld.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def config_from_flat(cls: type[C], **kwargs: Any) -> C:
    """``cls`` from flat keyword arguments: those naming a field of a nested config go into it (on top of
    that field's default); lists become tuples where the default is a tuple (``adam_betas``)."""
    top: dict[str, Any] = {}
    taken: set[str] = set()
    for fld in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not _is_nested(fld):
            continue
        base = fld.default_factory()  # type: ignore[misc]
        sub = {f.name: kwargs[f.name] for f in dataclasses.fields(base) if f.name in kwargs}
        sub = {k: tuple(v) if isinstance(getattr(base, k), tuple) else v for k, v in sub.items()}
        if fld.name in kwargs and sub:
            raise TypeError(f"pass either {fld.name}= or its fields {sorted(sub)}, not both")
        top[fld.name] = kwargs[fld.name] if fld.name in kwargs else dataclasses.replace(base, **sub)
        taken |= set(sub)
    top.update({k: v for k, v in kwargs.items() if k not in taken and k not in top})
    return cls(**top)


def build_parser(cls: type, description: str, presets: Iterable[str],
                 optional_int: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """One flag per (flat) config field, ``--preset`` for ``model``; help text from the field metadata.
    Fields in ``optional_int`` take an int or "none"."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    def add(fld: dataclasses.Field, default: Any) -> None:
        help_, flag = fld.metadata["help"], f"--{fld.name.replace('_', '-')}"
        if fld.name == "model":
            p.add_argument("--preset", dest="model", default=default, choices=sorted(presets), help=help_)
        elif fld.name in optional_int:
            p.add_argument(flag, default=default, type=_optional_int, help=help_ + ' ("none" for None)')
        elif fld.name in _OPTIONAL_FLOAT:
            p.add_argument(flag, default=default, type=_optional_float, help=help_ + ' ("none" for None)')
        elif isinstance(default, bool):
            p.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_)
        elif isinstance(default, tuple):
            p.add_argument(flag, default=default, type=float, nargs=len(default), help=help_)
        else:
            p.add_argument(flag, default=default, type=str if default is None else type(default), help=help_)

    for fld in dataclasses.fields(cls):
        if _is_nested(fld):
            base = fld.default_factory()  # type: ignore[misc]
            for sub in dataclasses.fields(base):
                add(sub, getattr(base, sub.name))
        else:
            add(fld, fld.default)
    return p


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


_OPTIONAL_FLOAT = ("time_limit_s",)  # RunConfig fields that take a float or "none"


def cli_config(parser: argparse.ArgumentParser, cls: type[C], argv: list[str] | None) -> C:
    """``cls`` from the command line; a config the class refuses exits as one ``error:`` line (status 2)."""
    args = vars(parser.parse_args(argv))
    try:
        return config_from_flat(cls, **args)
    except ValueError as e:
        parser.exit(2, f"{parser.prog}: error: {cli_message(e) or e}\n")


def run_cli(train: Callable[[C], R], config: C, prog: str = "train") -> tuple[R, bool]:
    """Train, always leave the process group; returns the result and whether this is the main process.

    A usage error (errors.usage_error: bad sizes, a resume that is not exact, a used out_dir) exits as one
    ``prog: error: ...`` line naming flags (status 2); an interrupted run as one line saying where its
    checkpoint is and how to resume (status 128 + the signal); a Ctrl-C outside the loop (or a second one)
    as one line (130). Only the main process prints. Anything else keeps its traceback."""
    try:
        result = train(config)
        return result, is_main_process()
    except RunInterrupted as e:
        _say(e.resume_hint())
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted; steps since the last checkpoint were not saved")
        raise SystemExit(130) from None
    except Exception as e:
        message = cli_message(e)
        if message is None:
            raise
        _say(f"{prog}: error: {message}")
        raise SystemExit(2) from None
    finally:
        cleanup_distributed()


def cli_main(parser: argparse.ArgumentParser, cls: type[C], train: Callable[[C], R], argv: list[str] | None) -> R:
    """A trainer's ``main``: its config from the command line, :func:`run_cli`, and one closing line (step and
    checkpoint) from the main process."""
    result, main_rank = run_cli(train, cli_config(parser, cls, argv), parser.prog)
    if main_rank:
        print(f"trained to step {result.step}; checkpoint {result.checkpoint}")
    return result


def _say(line: str) -> None:
    if is_main_process():
        print(line, file=sys.stderr, flush=True)


def resolved_config(config: Any, model_cfg: Any, class_name: str, trainer: str, inputs: Iterable[str] = (),
                    **extra: Any) -> dict[str, Any]:
    """The JSON written beside every checkpoint (diffusers-like ``config.json``): the flat run config, the
    resolved model config, the preset name (or None), the resolved paths of the ``inputs`` fields (model
    folders, datasets; :func:`~.resume.input_paths`; their fingerprints are added when a resume or a
    checkpoint needs them) and ``extra``; JSON types, as :func:`load_config` gives them back."""
    d = flat_dict(config)
    d["preset"] = config.model if isinstance(getattr(config, "model", None), str) else None
    d["model"] = dataclasses.asdict(model_cfg)
    d["inputs"] = input_paths(d, inputs)
    d.update(extra)
    return json.loads(json.dumps({"_class_name": class_name, "_trainer": trainer, **d}))


# --- Train state, resume, the optimizer step -------------------------------------------------------------


def initialised(build_model: Callable[[], nn.Module], init_weights: str | None) -> Callable[[], nn.Module]:
    """``build_model`` followed, with ``init_weights``, by a strict load of that folder's ``.safetensors``
    shards (a zoo component folder or a run's ``export/``): a fine-tune instead of a fresh init."""
    if not init_weights:
        return build_model

    def build() -> nn.Module:
        from sana_world.generators.zoo import load_state_dict

        model = build_model()
        model.load_state_dict(load_state_dict(Path(init_weights)))
        return model

    return build


def init_train_state(build_model: Callable[[], nn.Module], optim: OptimConfig, seed: int,
                     info: DistInfo) -> TrainState:
    """The model (same init on every rank), gradient checkpointing, per-rank seeds, EMA, AdamW and the
    warm-up schedule, in that order."""
    torch.manual_seed(rank_seed(seed, 0, 0))
    model = build_model().to(info.device)
    set_gradient_checkpointing(model, optim.grad_checkpointing)
    seed_everything(seed, info.rank)
    ema = EMA(model, optim.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=optim.adam_betas,
                            weight_decay=optim.weight_decay)
    sched = warmup_cosine(opt, optim.warmup_steps, optim.decay_steps, optim.min_lr_ratio)
    return TrainState(model=model, optimizer=opt, scheduler=sched, ema=ema)


def field_defaults(cls: type) -> dict[str, Any]:
    """The flat defaults of a config class (its nested configs' fields lifted), as JSON gives them back;
    fields without a default are left out."""
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):
        if _is_nested(fld):
            out.update(dataclasses.asdict(fld.default_factory()))  # type: ignore[misc]
        elif fld.default is not dataclasses.MISSING:
            out[fld.name] = fld.default
    return json.loads(json.dumps(out))


def optimizer_step(state: TrainState, loss: torch.Tensor | None, max_norm: float) -> tuple[float, float]:
    """Backward, clip, optimizer and LR step, EMA; returns (gradient norm before clipping, LR used).
    ``loss=None``: the gradients are already in place (a replayed CUDA graph wrote them)."""
    opt = state.optimizer
    if loss is not None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    grad_norm = grad_clip(state.model.parameters(), max_norm)
    lr = opt.param_groups[0]["lr"]
    opt.step()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model, state.step + 1)  # state.step is the step before this one
    return grad_norm, lr


# --- The loop's bookkeeping ------------------------------------------------------------------------------


class StopSignals:
    """While installed (main thread only), SIGINT and SIGTERM set ``signum`` instead of ending the process,
    so the loop finishes its step and checkpoints; a second signal acts as usual (the handlers are back).
    The handler only records the signal: printing there could re-enter a stream tqdm is writing to, so the
    loop announces it (:meth:`RunLoop.end_step`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.restore()


class RunLoop:
    """Per-step losses, the progress bar (or, without it, a log line every ``log_every`` steps), TensorBoard
    window averages and periodic checkpoints of a run. Use as a context manager: it closes the bar and
    TensorBoard, and while inside, SIGINT / SIGTERM end the run after the step in flight with a checkpoint
    (:meth:`end_step` raises :class:`~.errors.RunInterrupted`)."""

    def __init__(self, run: RunConfig, state: TrainState, resolved: dict[str, Any], info: DistInfo,
                 desc: str, rate_name: str) -> None:
        from tqdm import tqdm

        self.run, self.state, self.resolved, self.info, self.rate_name = run, state, resolved, info, rate_name
        self.out = Path(run.out_dir)
        self.tb = TensorBoard(self.out / "tb", enabled=info.is_main)
        self.bar = tqdm(total=run.steps, initial=state.step, desc=desc, unit="step",
                        disable=not (info.is_main and run.progress))
        self.losses: list[float] = []
        self.final: Path | None = None
        self.stopped = False  # True once the time limit ended the run early (every rank agrees)
        self.signals = StopSignals()
        self.started = time.perf_counter()
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_start, self.window_steps, self.window_loss = time.perf_counter(), 0, 0.0
        self.window_extra: dict[str, float] = {}

    def end_step(self, step: int, loss: torch.Tensor, lr: float, grad_norm: float, items: int,
                 extra: dict[str, float] | None = None) -> float:
        """Record step ``step`` (its state already saved in ``state``): the mean loss over ranks (must be
        finite), the bar, TensorBoard every ``log_every`` steps (window means of the loss and of ``extra``;
        the rate of ``items`` per rank per step), a checkpoint every ``ckpt_every`` steps and at the end.
        After a signal (on any rank) it checkpoints and raises RunInterrupted, after the last step too (so no
        post-loop work, such as the autoencoder's export, runs after a signal)."""
        limit = self.run.time_limit_s
        late = float(limit is not None and time.perf_counter() - self.started >= limit)
        signalled = float(self.signals.signum is not None)
        flags = all_reduce_mean(torch.stack([loss.detach().float().reshape(()),
                                             torch.tensor(late, device=loss.device),
                                             torch.tensor(signalled, device=loss.device)]), self.info)
        loss_value, self.stopped = float(flags[0]), float(flags[1]) > 0  # any rank late: all stop
        interrupted = float(flags[2]) > 0  # any rank signalled: all stop
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step}")
        self.losses.append(loss_value)
        self.window_steps, self.window_loss = self.window_steps + 1, self.window_loss + loss_value
        for k, v in (extra or {}).items():
            self.window_extra[k] = self.window_extra.get(k, 0.0) + v
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss_value:.4f}")
        last = step == self.run.steps or self.stopped or interrupted
        if step % self.run.log_every == 0 or last:
            self._log(step, lr, grad_norm, items)
        if interrupted and self.info.is_main:
            self._announce(step)
        if step % self.run.ckpt_every == 0 or last:
            if self.info.is_main:  # only the main process writes the config
                add_fingerprints(self.resolved)
            self.final = save_checkpoint(self.out / "checkpoints", self.state, self.resolved, self.info,
                                         keep_last=self.run.keep_last)
        if interrupted:
            raise RunInterrupted(self.signals.signum or signal.SIGTERM, step, self.checkpoint())
        return loss_value

    def _announce(self, step: int) -> None:
        """The signal's notice, from the loop (never from the handler: :class:`StopSignals`)."""
        from tqdm import tqdm

        name = "a signal" if self.signals.signum is None else signal.Signals(self.signals.signum).name
        tqdm.write(f"{name}: writing a checkpoint after step {step}, then stopping (send it again to stop at "
                   "once, without one)", file=sys.stderr)

    def _log(self, step: int, lr: float, grad_norm: float, items: int) -> None:
        """TensorBoard window means; without a progress bar, one line on the main process."""
        elapsed = time.perf_counter() - self.window_start
        rate = self.window_steps * items * self.info.world_size / elapsed
        loss = self.window_loss / self.window_steps
        self.tb.scalars({"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                         f"train/{self.rate_name}": rate,
                         **{f"train/{k}": v / self.window_steps for k, v in self.window_extra.items()}}, step)
        if self.info.is_main and not self.run.progress:
            print(f"step {step}/{self.run.steps}: loss {loss:.4f}, lr {lr:.3g}, {rate:.3g} {self.rate_name}, "
                  f"{time.perf_counter() - self.started:.0f} s", flush=True)
        self._reset_window()

    def checkpoint(self) -> Path:
        """The final checkpoint (the last step always writes one)."""
        if self.final is None:
            raise RuntimeError("the run wrote no checkpoint")
        return self.final

    def close(self) -> None:
        self.signals.restore()
        self.bar.close()
        self.tb.close()

    def __enter__(self) -> RunLoop:
        self.signals.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Data order ------------------------------------------------------------------------------------------


class EpochOrder:
    """Step ``n`` of ``W`` ranks reads positions ``[(n - 1) W B, n W B)`` of an endless sequence of
    per-epoch permutations of ``size`` items (seeded by ``(seed, epoch)``), rank ``r`` its ``r``-th slice
    of ``B``: a pure function of ``(seed, step, rank)``, so a resumed run reads the same items."""

    def __init__(self, size: int, seed: int, batch_size: int, info: DistInfo) -> None:
        if size < 1:
            raise ValueError(f"nothing to order: the dataset has {size} items")
        self.size, self.seed, self.batch, self.info = size, seed, batch_size, info
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size))
        return self._perm[1]

    def indices(self, step: int) -> list[int]:
        """Item ids of this rank's part of step ``step`` (1-based)."""
        first = (step - 1) * self.info.world_size * self.batch + self.info.rank * self.batch
        out = []
        for p in range(first, first + self.batch):
            epoch, i = divmod(p, self.size)
            out.append(int(self._permutation(epoch)[i]))
        return out
