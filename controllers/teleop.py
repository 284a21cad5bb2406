"""Terminal teleop: drive a camera with the keyboard (raw-mode stdin, no curses) and record the keys.

Keys (one key press = one step of the camera; a terminal sends repeats while a key is held):

==========  =========================  ==========  =========================
 w / s       forward / back             j / l       turn left / right
 d / a       right / left               i / k       look up / down
 r / f       up / down                  u / o       roll left / right
 space, .    a still frame              q, Ctrl-C   quit (Ctrl-D, end of input too)
==========  =========================  ==========  =========================

wasdijkl mean what they mean in the SANA-WM key DSL, so ``TeleopRecord.action_string()`` replays a session
with :func:`~sana_world.controllers.keys.action_string_to_c2w`. The DSL moves 0.05 units or 1.2° per frame
and a camera step is larger (the env's default :class:`~sana_world.camera.TwistLimits`: 0.1 m, 6° yaw, 4°
pitch), so one press of a DSL key moves a whole number of DSL frames, the most that fit in one step
(:func:`dsl_frames_per_press`: 2 for w/a/s/d, 5 for j/l and 3 for i/k at the default limits, where a pitch
press turns 3.6°, not 4°), and is recorded as that many frames; still keys and r/f/u/o are one frame.
The replay is exact (to float rounding) while the camera starts level (as the envs reset), never collides,
uses only DSL keys and has a pitch limit of at least the DSL's 85°: pitch presses drop the frames the DSL
would drop at its limit. :func:`run_teleop` takes any iterator of characters, which keeps it testable
without a terminal; :func:`terminal_keys` is the stdin source.
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

from sana_world.camera import TwistLimits
from sana_world.controllers.keys import (DSL_PITCH_LIMIT_DEG, DSL_ROTATION_SPEED_DEG, DSL_TRANSLATION_SPEED,
                                         KEY_ORDER, keys_to_action_string)

ENV_ID = "SanaWorld/Rooms-v0"
Stepper = Callable[[np.ndarray], None]  # drives the camera one step with a normalised twist (6,)

# key -> (twist component, sign); twist = [forward, right, up, yaw, pitch, roll], yaw > 0 turns left
TELEOP_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, 1.0), "s": (0, -1.0), "d": (1, 1.0), "a": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0),
    "j": (3, 1.0), "l": (3, -1.0), "i": (4, 1.0), "k": (4, -1.0), "o": (5, 1.0), "u": (5, -1.0),
}


# DSL key -> (TwistLimits field of its axis, the DSL's size of one frame on that axis in the field's unit)
_DSL_AXES: dict[str, tuple[str, float]] = {
    "w": ("forward", DSL_TRANSLATION_SPEED), "s": ("forward", DSL_TRANSLATION_SPEED),
    "d": ("right", DSL_TRANSLATION_SPEED), "a": ("right", DSL_TRANSLATION_SPEED),
    "j": ("yaw_deg", DSL_ROTATION_SPEED_DEG), "l": ("yaw_deg", DSL_ROTATION_SPEED_DEG),
    "i": ("pitch_deg", DSL_ROTATION_SPEED_DEG), "k": ("pitch_deg", DSL_ROTATION_SPEED_DEG),
}

QUIT_KEYS = "q\x03\x04"  # q, Ctrl-C, Ctrl-D (raw mode delivers them as characters)
STILL_KEYS = " ."


def dsl_frames_per_press(limits: TwistLimits) -> dict[str, int]:
    """DSL frames that one press of each DSL key moves: the whole frames (0.05 units, 1.2°) that fit in one
    step of a camera with these per-step ``limits``. ``ValueError`` when a step is shorter than one frame."""
    out: dict[str, int] = {}
    for key, (name, frame) in _DSL_AXES.items():
        per_step = float(getattr(limits, name))
        n = math.floor(per_step / frame + 1e-9)  # 6° / 1.2° is 5 frames, not 4.999...
        if n < 1:
            raise ValueError(f"limits.{name}={per_step} is less than one DSL frame ({frame}): key {key!r} could not "
                             f"be recorded; raise limits.{name} to at least {frame}")
        out[key] = n
    return out


@dataclass(frozen=True)
class TeleopConfig:
    """Which characters quit, which make a still frame, an optional step budget, and the per-step ``limits``
    of the camera that ``step`` drives (the env's; a press is scaled to whole DSL frames within them)."""

    quit_keys: str = QUIT_KEYS
    still_keys: str = STILL_KEYS
    max_steps: int | None = None
    limits: TwistLimits = TwistLimits()

    def __post_init__(self) -> None:
        clash = (set(self.quit_keys) | set(self.still_keys)) & set(TELEOP_KEYS)
        if clash:
            raise ValueError(f"quit/still keys {sorted(clash)} clash with motion keys {''.join(TELEOP_KEYS)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        dsl_frames_per_press(self.limits)  # raises when a step is shorter than one DSL frame


def key_to_twist(key: str) -> np.ndarray:
    """Unit twist (6,) float32 of one teleop key, its direction (a still key gives zeros); ``ValueError`` for
    other keys. :func:`run_teleop` scales DSL keys to whole DSL frames."""
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
    """What a session did: per step one key (" " for a still frame), the twist sent and its DSL frames."""

    keys: list[str] = field(default_factory=list)
    twists: list[np.ndarray] = field(default_factory=list)  # each (6,) float64
    frames: list[int] = field(default_factory=list)  # DSL frames of each step (dsl_frames_per_press; else 1)
    quit_key: str | None = None  # the key that ended the session (None: input ran out or max_steps)

    def action_string(self, strict: bool = True) -> str:
        """The session as a DSL string, each step as its ``frames`` DSL frames, so that
        :func:`~sana_world.controllers.keys.action_string_to_c2w` replays its poses (see the module doc).
        Keys the DSL lacks (r, f, u, o) raise ``ValueError`` when ``strict``; otherwise those steps become
        still frames (which the replay then misses)."""
        extra = sorted({k for k in self.keys if k.strip() and k not in KEY_ORDER})
        if strict and extra:
            raise ValueError(f"the DSL cannot express keys {extra}; pass strict=False to record them as still frames")
        return keys_to_action_string([k if k in KEY_ORDER else "" for k, n in zip(self.keys, self.frames)
                                      for _ in range(n)])


def run_teleop(step: Stepper, keys: Iterable[str],
               config: TeleopConfig = TeleopConfig()) -> TeleopRecord:
    """Call ``step(twist)`` for every motion or still key from ``keys`` until a quit key or the end.

    A DSL key's twist moves :func:`dsl_frames_per_press` whole DSL frames at ``config.limits``; a pitch key
    moves only the frames the DSL keeps within its pitch limit, counted from a level start. Other keys get
    their unit twist. Upper-case letters count as lower-case; other characters and escape sequences
    (arrows, function keys) are skipped.
    """
    record = TeleopRecord()
    per_press = dsl_frames_per_press(config.limits)
    scale = config.limits.scale()  # (6,) metres / radians per unit twist
    pitch = 0.0  # the DSL's pitch (radians) so far
    for ch in _without_escapes(keys):
        key = ch.lower()
        # 1. stop
        if key in config.quit_keys:
            record.quit_key = key
            break
        if config.max_steps is not None and len(record.keys) >= config.max_steps:
            break
        # 2. map, skipping keys we do not know
        frames = 1
        if key in config.still_keys:
            twist, key = np.zeros(6), " "
        elif key in TELEOP_KEYS:
            twist = key_to_twist(key).astype(np.float64)
            if key in per_press:  # whole DSL frames: scale the unit twist to them
                frames = moved = per_press[key]
                if key in "ik":
                    moved, pitch = _dsl_pitch_frames(pitch, float(twist[4]), frames)
                axis = TELEOP_KEYS[key][0]
                twist[axis] = min(1.0, moved * _dsl_frame(key) / scale[axis]) * np.sign(twist[axis])
        else:
            continue
        # 3. drive and record
        step(twist)
        record.keys.append(key)
        record.twists.append(twist)
        record.frames.append(frames)
    return record


def _dsl_frame(key: str) -> float:
    """One DSL frame of a DSL key's axis in twist-scale units (metres or radians)."""
    name, frame = _DSL_AXES[key]
    return math.radians(frame) if name.endswith("_deg") else frame


def _dsl_pitch_frames(pitch: float, sign: float, frames: int) -> tuple[int, float]:
    """How many of ``frames`` pitch frames (direction ``sign``) the DSL applies from ``pitch`` (radians),
    dropping each one that would cross its limit, and the pitch after them."""
    step, limit = sign * math.radians(DSL_ROTATION_SPEED_DEG), math.radians(DSL_PITCH_LIMIT_DEG)
    moved = 0
    for _ in range(frames):
        if -limit <= pitch + step <= limit:
            pitch, moved = pitch + step, moved + 1
    return moved, pitch


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


def _env_stepper(env_id: str, seed: int, out: Callable[[str], None]) -> tuple[Stepper, TwistLimits] | None:
    """A step callback on the GT env ``env_id`` and the env's per-step limits, or None when that id is not
    registered (yet). Prints the start pose as step 0."""
    import gymnasium
    import torch

    import sana_world  # noqa: F401  (importing the package registers its env ids)

    if env_id not in gymnasium.registry:
        return None
    from sana_world.camera import rotation_to_euler

    env = gymnasium.make(env_id)
    cfg = getattr(env.unwrapped, "cfg", None)
    if not hasattr(cfg, "step_limits") or getattr(cfg, "action_mode", None) != "twist":
        raise ValueError(f"{env_id} is not a sana-world env in twist mode (env.unwrapped.cfg.step_limits() and "
                         "action_mode='twist'); teleop drives those: pass one of them with --env-id")
    limits: TwistLimits = cfg.step_limits()
    _, info = env.reset(seed=seed)
    counter = [0]

    def show(c2w_raw: np.ndarray, tail: str) -> None:
        c2w = torch.as_tensor(np.asarray(c2w_raw, dtype=np.float64).reshape(4, 4))
        yaw, pitch, roll = (float(a) for a in rotation_to_euler(c2w[:3, :3]))
        out(_pose_line(counter[0], c2w[:3, 3].numpy(), yaw, pitch, roll) + tail)

    def step(twist: np.ndarray) -> None:
        _, reward, terminated, truncated, info = env.step(twist)
        counter[0] += 1
        if "c2w" in info:
            hit = "  collision" if bool(np.any(info.get("collision", False))) else ""
            show(info["c2w"], f"  reward {float(reward):+.3f}{hit}")
        else:
            out(f"step {counter[0]:5d}  reward {float(reward):+.3f}  (no c2w in info: {sorted(info)})")
        if terminated or truncated:
            out("episode ended; resetting")
            env.reset()

    if "c2w" in info:
        show(info["c2w"], "  start")
    return step, limits


def _free_camera_stepper(out: Callable[[str], None], limits: TwistLimits) -> Stepper:
    """A step callback that integrates a bare camera (no world, no collisions) and prints its pose."""
    from sana_world.camera import CameraState, integrate_twist

    state = [CameraState(np.array([0.0, -1.5, 0.0])), 0]  # [camera, steps]
    out(_pose_line(0, state[0].position, 0.0, 0.0, 0.0) + "  start")

    def step(twist: np.ndarray) -> None:
        cam = integrate_twist(state[0], twist, limits)
        state[0], state[1] = cam, state[1] + 1
        out(_pose_line(state[1], cam.position, cam.yaw, cam.pitch, cam.roll))

    return step


def main(argv: list[str] | None = None) -> int:
    """Teleop the GT env (or a free camera when the env id is not registered) from this terminal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default=ENV_ID, help=f"a sana-world env id to drive (default {ENV_ID})")
    parser.add_argument("--seed", type=int, default=0, help="the env's reset seed (default 0)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: no limit)")
    args = parser.parse_args(argv)

    def out(line: str) -> None:  # raw mode needs explicit carriage returns
        sys.stdout.write(line + "\r\n")
        sys.stdout.flush()

    stepper = _env_stepper(args.env_id, args.seed, out)
    if stepper is None:
        out(f"{args.env_id} is not registered: driving a free camera without a world")
        limits = TwistLimits()
        stepper = _free_camera_stepper(out, limits), limits
    step, limits = stepper
    out("wasd move, r/f up/down, ijkl look, u/o roll, space still, q quit")
    record = run_teleop(step, terminal_keys(), TeleopConfig(max_steps=args.max_steps, limits=limits))
    out(f"{len(record.keys)} steps")
    if record.keys:
        out("action string (r/f/u/o as still frames): " + record.action_string(strict=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
