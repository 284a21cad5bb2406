"""Terminal teleop: drive a camera with the keyboard (raw-mode stdin, no curses) and record the keys.

Keys (one key press = one step; a terminal sends repeats while a key is held):

==========  =========================  ==========  =========================
 w / s       forward / back             j / l       turn left / right
 d / a       right / left               i / k       look up / down
 r / f       up / down                  u / o       roll left / right
 space, .    a still frame              q, Ctrl-C   quit (Ctrl-D, end of input too)
==========  =========================  ==========  =========================

wasdijkl mean what they mean in the SANA-WM key DSL, so ``TeleopRecord.action_string()`` replays a session
with :func:`~sana_world.controllers.keys.action_string_to_c2w`. :func:`run_teleop` takes any iterator of
characters, which keeps it testable without a terminal; :func:`terminal_keys` is the stdin source.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from sana_world.controllers.keys import KEY_ORDER, keys_to_action_string

ENV_ID = "SanaWorld/Rooms-v0"

# key -> (twist component, sign); twist = [forward, right, up, yaw, pitch, roll], yaw > 0 turns left
TELEOP_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0), "s": (0, -1.0), "d": (1, 1.0), "a": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0),
    "j": (3, 1.0), "l": (3, -1.0), "i": (4, 1.0), "k": (4, -1.0), "o": (5, 1.0), "u": (5, -1.0),
}


QUIT_KEYS = "q\x03\x04"  # q, Ctrl-C, Ctrl-D (raw mode delivers them as characters)
STILL_KEYS = " ."


@dataclass(frozen=True)
class TeleopConfig:
    """Which characters quit, which make a still frame, and an optional step budget."""

    quit_keys: str = QUIT_KEYS
    still_keys: str = STILL_KEYS
    max_steps: int | None = None

    def __post_init__(self) -> None:
        clash = (set(self.quit_keys) | set(self.still_keys)) & set(TELEOP_KEYS)
        if clash:
            raise ValueError(f"quit/still keys {sorted(clash)} clash with motion keys {''.join(TELEOP_KEYS)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")


def key_to_twist(key: str) -> np.ndarray:
    """Twist (6,) float32 of one teleop key (a still key gives zeros); ``ValueError`` for other keys."""
    twist = np.zeros(6, dtype=np.float32)
    if key in STILL_KEYS:
        return twist
    if key not in TELEOP_KEYS:
        raise ValueError(f"{key!r} is not a teleop key; motion keys are {''.join(TELEOP_KEYS)!r}")
    axis, sign = TELEOP_KEYS[key]
    twist[axis] = sign
    return twist


@dataclass
class TeleopRecord:
    """What a session did: one key (" " for a still frame) and one twist per step."""

    keys: list[str] = field(default_factory=list)
    twists: list[np.ndarray] = field(default_factory=list)  # each (6,) float32
    quit_key: str | None = None  # the key that ended the session (None: input ran out or max_steps)

    def action_string(self, strict: bool = True) -> str:
        """The session as a DSL string. Keys the DSL lacks (r, f, u, o) raise ``ValueError`` when
        ``strict``; otherwise those steps become still frames, so frame counts still line up."""
        extra = sorted({k for k in self.keys if k.strip() and k not in KEY_ORDER})
        if strict and extra:
            raise ValueError(f"the DSL cannot express keys {extra}; pass strict=False to record them as still frames")
        return keys_to_action_string([k if k in KEY_ORDER else "" for k in self.keys])


def run_teleop(step: Callable[[np.ndarray], None], keys: Iterable[str],
               config: TeleopConfig = TeleopConfig()) -> TeleopRecord:
    """Call ``step(twist)`` for every motion or still key from ``keys`` until a quit key or the end.

    Upper-case letters count as lower-case; other characters and escape sequences (arrows, function
    keys) are skipped.
    """
    record = TeleopRecord()
    for ch in _without_escapes(keys):
        key = ch.lower()
        # 1. stop
        if key in config.quit_keys:
            record.quit_key = key
            break
        if config.max_steps is not None and len(record.keys) >= config.max_steps:
            break
        # 2. map, skipping keys we do not know
        if key in config.still_keys:
            twist, key = np.zeros(6, dtype=np.float32), " "
        elif key in TELEOP_KEYS:
            twist = key_to_twist(key)
        else:
            continue
        # 3. drive and record
        step(twist)
        record.keys.append(key)
        record.twists.append(twist)
    return record


def _without_escapes(chars: Iterable[str]) -> Iterator[str]:
    """``chars`` less terminal escape sequences: ESC [ ... final byte (CSI) and ESC O x (SS3)."""
    state = ""  # "", "esc", "csi", "ss3"
    for ch in chars:
        if state == "esc" and ch in "[O":
            state = "csi" if ch == "[" else "ss3"
            continue
        if state == "csi":
            state = "" if "@" <= ch <= "~" else "csi"
            continue
        if state == "ss3":
            state = ""
            continue
        state = "esc" if ch == "\x1b" else ""
        if ch != "\x1b":
            yield ch


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode (no echo, no line buffering) and restore it afterwards."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # keep keys typed before the switch
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_keys(fd: int | None = None) -> Iterator[str]:
    """Characters typed on ``fd`` (default stdin), unbuffered; raw mode while it is a terminal."""
    fd = sys.stdin.fileno() if fd is None else fd

    def read() -> Iterator[str]:
        while chunk := os.read(fd, 1):
            yield chunk.decode("latin-1")

    if os.isatty(fd):
        with raw_mode(fd):
            yield from read()
    else:
        yield from read()


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def _pose_line(n: int, position: np.ndarray, yaw: float, pitch: float, roll: float) -> str:
    x, y, z = (float(v) for v in position)
    return (f"step {n:5d}  x {x:+7.2f}  height {-y:5.2f}  z {z:+7.2f}  yaw {math.degrees(yaw):+7.1f}  "
            f"pitch {math.degrees(pitch):+6.1f}  roll {math.degrees(roll):+6.1f}")


def _env_stepper(env_id: str, seed: int, out: Callable[[str], None]) -> Callable[[np.ndarray], None] | None:
    """A step callback on the GT env ``env_id``, or None when that id is not registered (yet)."""
    import gymnasium
    import torch

    import sana_world  # noqa: F401  (importing the package registers its env ids)

    if env_id not in gymnasium.registry:
        return None
    from sana_world.camera import rotation_to_euler

    env = gymnasium.make(env_id)
    env.reset(seed=seed)
    counter = [0]

    def step(twist: np.ndarray) -> None:
        _, reward, terminated, truncated, info = env.step(twist)
        counter[0] += 1
        if "c2w" in info:
            c2w = torch.as_tensor(np.asarray(info["c2w"], dtype=np.float64).reshape(4, 4))
            yaw, pitch, roll = (float(a) for a in rotation_to_euler(c2w[:3, :3]))
            hit = "  collision" if bool(np.any(info.get("collision", False))) else ""
            out(_pose_line(counter[0], c2w[:3, 3].numpy(), yaw, pitch, roll) + f"  reward {float(reward):+.3f}{hit}")
        else:
            out(f"step {counter[0]:5d}  reward {float(reward):+.3f}  (no c2w in info: {sorted(info)})")
        if terminated or truncated:
            out("episode ended; resetting")
            env.reset()

    return step


def _free_camera_stepper(out: Callable[[str], None]) -> Callable[[np.ndarray], None]:
    """A step callback that integrates a bare camera (no world, no collisions) and prints its pose."""
    from sana_world.camera import CameraState, TwistLimits, integrate_twist

    limits = TwistLimits()
    state = [CameraState(np.array([0.0, -1.5, 0.0])), 0]  # [camera, steps]

    def step(twist: np.ndarray) -> None:
        cam = integrate_twist(state[0], twist, limits)
        state[0], state[1] = cam, state[1] + 1
        out(_pose_line(state[1], cam.position, cam.yaw, cam.pitch, cam.roll))

    return step


def main(argv: list[str] | None = None) -> int:
    """Teleop the GT env (or a free camera when the env id is not registered) from this terminal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default=ENV_ID)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)

    def out(line: str) -> None:  # raw mode needs explicit carriage returns
        sys.stdout.write(line + "\r\n")
        sys.stdout.flush()

    step = _env_stepper(args.env_id, args.seed, out)
    if step is None:
        out(f"{args.env_id} is not registered: driving a free camera without a world")
        step = _free_camera_stepper(out)
    out("wasd move, r/f up/down, ijkl look, u/o roll, space still, q quit")
    record = run_teleop(step, terminal_keys(), TeleopConfig(max_steps=args.max_steps))
    out(f"{len(record.keys)} steps")
    if record.keys:
        out("action string (r/f/u/o as still frames): " + record.action_string(strict=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
