"""How a trainer run ends early and what its user sees: usage errors and interrupts.

- A *usage error* is a run that cannot start as configured (sizes the codec cannot take, a resume that is
  not exact, a used ``out_dir``). :func:`usage_error` builds it from a template naming config fields as
  ``<name>`` or ``<name=value>``: its message reads ``name`` / ``name=value`` (the Python API's words) and
  its ``cli_message`` ``--name`` / ``--name VALUE`` (the CLI's), which the CLI prints as one ``error:`` line
  (:func:`~sana_world.generators.train.run.run_cli`). Any other exception is a bug and keeps its traceback.
- :class:`RunInterrupted` is raised after SIGINT / SIGTERM, once the step in flight is done and its
  checkpoint is written (:class:`~sana_world.generators.train.run.RunLoop`).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import TypeVar

E = TypeVar("E", bound=BaseException)

_FIELD = re.compile(r"<(\w+)(?:=([^<>]*))?>")
_FLAG_NAMES = {"model": "preset"}  # config fields whose flag has another name


def _api_words(m: re.Match[str]) -> str:
    name, value = m.group(1), m.group(2)
    return name if value is None else f"{name}={value}"


def flag(name: str, value: str | None = None) -> str:
    """The CLI spelling of a config field (and value): ``--out-dir X``, ``--resume``, ``--no-progress``."""
    dashed = _FLAG_NAMES.get(name, name).replace("_", "-")
    if value == "False":
        return f"--no-{dashed}"
    return f"--{dashed}" if value in (None, "True") else f"--{dashed} {value}"


def _cli_words(m: re.Match[str]) -> str:
    return flag(m.group(1), m.group(2))


def usage_error(cls: type[E], template: str) -> E:
    """``cls`` with ``template``'s message in API words and a ``cli_message`` in flags (module doc)."""
    err = cls(_FIELD.sub(_api_words, template))
    err.cli_message = _FIELD.sub(_cli_words, template)  # type: ignore[attr-defined]
    return err


def cli_message(err: BaseException) -> str | None:
    """The one-line CLI message of a usage error, or of a shard / checkpoint error (their messages name the
    bad file); None for anything else."""
    from sana_world.data.shards import ShardError
    from sana_world.generators.train.common import CheckpointError

    if hasattr(err, "cli_message"):
        return str(err.cli_message)
    if isinstance(err, (ShardError, CheckpointError)):
        return str(err)
    return None


class RunInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM ended the run after ``step``, whose checkpoint ``checkpoint`` was written."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} after step {step}; checkpoint {checkpoint}")

    def __reduce__(self) -> tuple[type[RunInterrupted], tuple[int, int, Path]]:
        """Pickle by the constructor's arguments (the default passes the message alone)."""
        return type(self), (self.signum, self.step, self.checkpoint)

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum

    def resume_hint(self) -> str:
        """One line for the CLI: where the checkpoint is and how to go on."""
        return (f"{signal.Signals(self.signum).name}: stopped after step {self.step}, checkpoint written to "
                f"{self.checkpoint}; to continue, rerun the same command with --resume")
