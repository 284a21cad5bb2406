"""SANA-WM's key DSL: action strings such as ``"w-80,jw-40,none-10"`` and their camera trajectories.

The DSL (as read by ``diffusers.pipelines.sana_wm.cam_utils.action_string_to_c2w``):

- An action string is comma separated segments ``<keys>-<frames>``; whitespace anywhere is ignored and a
  full-width comma "，" counts as a comma. ``<keys>`` is any mix of "wasdijkl" (case-insensitive,
  repeats and order do not matter), ``none`` or nothing for a still frame; ``<frames>`` is a positive
  decimal count. Anything else is a ``ValueError``.
- Per frame, with speed ``v`` (0.05 units) and step ``r`` (1.2°): i/k pitch up/down by ``r`` (a step
  that would leave [-limit, +limit] is dropped for that frame), j/l turn left/right by ``r`` about world
  up, then w/s move ±v along and d/a ±v across the level heading *after* this frame's turn.
- F frames give F + 1 camera-to-world poses (OpenCV axes, +y down), the first being the identity.

Mapping onto the 6-DoF twist of :mod:`sana_world.camera` (``[forward, right, up, yaw, pitch, roll]``,
yaw > 0 turns left, pitch > 0 looks up), one key frame = one step with :func:`dsl_limits`:

=====  ===================  =====  ====================
 key    twist component      key    twist component
=====  ===================  =====  ====================
  w     forward  +1           i     pitch +1 (look up)
  s     forward  -1           k     pitch -1
  d     right    +1           j     yaw   +1 (turn left)
  a     right    -1           l     yaw   -1
=====  ===================  =====  ====================

That plain mapping reproduces the DSL exactly except in two cases, which :func:`keys_to_twist` handles
when given the camera ``state`` and ``limits``: (1) the DSL translates along the heading after the turn
while :func:`~sana_world.camera.integrate_twist` uses the heading before it, so a frame with both
translation and yaw keys lags by one turn step (at most 2v of drift per run of such frames); (2) the
DSL drops a pitch step beyond the limit where ``integrate_twist`` clamps it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from sana_world.camera import CameraState, TwistLimits

KEY_ORDER = "wasdijkl"
DSL_TRANSLATION_SPEED = 0.05  # units per frame
DSL_ROTATION_SPEED_DEG = 1.2  # degrees per frame
DSL_PITCH_LIMIT_DEG = 85.0
_FULLWIDTH_COMMA = "\uff0c"


def dsl_limits(translation_speed: float = DSL_TRANSLATION_SPEED, rotation_speed_deg: float = DSL_ROTATION_SPEED_DEG,
               pitch_limit_deg: float = DSL_PITCH_LIMIT_DEG) -> TwistLimits:
    """Twist limits under which one twist step with unit components is one DSL frame."""
    v, r = translation_speed, rotation_speed_deg
    return TwistLimits(forward=v, right=v, up=v, yaw_deg=r, pitch_deg=r, roll_deg=r, pitch_limit_deg=pitch_limit_deg)


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def parse_action_string(action: str) -> list[tuple[str, int]]:
    """Segments ``[(keys, frames), ...]`` of a DSL string; ``keys`` lists pressed keys in KEY_ORDER ("" = none).

    Raises ``ValueError`` (the DSL's error type) naming the bad segment; ``TypeError`` for a non-string.
    """
    if not isinstance(action, str):
        raise TypeError(f"action must be a str, got {type(action).__name__}")
    cleaned = "".join(ch for ch in action.replace(_FULLWIDTH_COMMA, ",") if not ch.isspace())
    if not cleaned:
        raise ValueError("action string is empty: expected segments like 'w-30,jw-20'")
    segments: list[tuple[str, int]] = []
    for n, segment in enumerate(cleaned.split(",")):
        # 1. shape '<keys>-<frames>'
        if "-" not in segment:
            raise ValueError(f"segment {n} ({segment!r}) is not '<keys>-<frames>' (e.g. 'w-30')")
        keys_part, count = segment.rsplit("-", 1)
        # 2. the frame count: a positive decimal integer (int() accepts exactly the decimal digits)
        if not count.isdecimal():
            raise ValueError(f"segment {n} ({segment!r}): frame count {count!r} is not a positive integer")
        frames = int(count)
        if frames <= 0:
            raise ValueError(f"segment {n} ({segment!r}): frame count must be positive, got {frames}")
        # 3. the keys
        try:
            keys = normalize_keys(keys_part)
        except ValueError as e:
            raise ValueError(f"segment {n} ({segment!r}): {e}") from e
        segments.append((keys, frames))
    return segments


def normalize_keys(keys: str) -> str:
    """The pressed keys of one frame, written as in a DSL segment, in KEY_ORDER without repeats ("" = none).

    The DSL's rules: any mix of "wasdijkl" in any case, order and repetition, or ``none`` (any case) or
    nothing for a still frame; whitespace is ignored. ``"Wj"``, ``"jw"`` and ``"w j"`` all give ``"wj"``.
    Raises ``ValueError`` naming unknown keys, ``TypeError`` for a non-string.
    """
    if not isinstance(keys, str):
        raise TypeError(f"keys must be a str of DSL keys such as 'wj' or 'none', got {type(keys).__name__}")
    lower = "".join(ch for ch in keys if not ch.isspace()).lower()
    if lower == "none":
        return ""
    unknown = sorted({c for c in lower if c not in KEY_ORDER})
    if unknown:
        raise ValueError(f"unknown keys {unknown} in {keys!r}; allowed are {KEY_ORDER!r} (any case) or 'none'")
    return "".join(k for k in KEY_ORDER if k in lower)


def action_string_to_keys(action: str) -> np.ndarray:
    """Per-frame pressed keys (F, 8) int8 over KEY_ORDER of a DSL string."""
    rows = [keys_to_vector(keys) for keys, frames in parse_action_string(action) for _ in range(frames)]
    return np.stack(rows).astype(np.int8)  # (F, 8)


def keys_to_vector(keys: str) -> np.ndarray:
    """A MultiBinary(8) vector (8,) int8 from one frame's DSL keys (:func:`normalize_keys`: "wj", "W", "none",
    "" ...)."""
    keys = normalize_keys(keys)
    return np.array([k in keys for k in KEY_ORDER], dtype=np.int8)


def _pressed_vector(pressed: np.ndarray | Sequence[int] | str) -> np.ndarray:
    """Validate a MultiBinary(8) key vector (or one frame's key string, see :func:`keys_to_vector`) and return
    it as (8,) int8."""
    if isinstance(pressed, str):
        return keys_to_vector(pressed)
    a = np.asarray(pressed)
    if a.shape != (len(KEY_ORDER),):
        raise ValueError(f"pressed keys must have shape (8,) over {KEY_ORDER!r}, got {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"pressed keys must be 0/1 over {KEY_ORDER!r}, got {a.tolist()}")
    return a.astype(np.int8)


def keys_to_action_string(frames: Iterable[np.ndarray | Sequence[int] | str]) -> str:
    """Run-length encode per-frame pressed keys ((8,) vectors or key strings such as "wj" or "none", one per
    frame) into a DSL string.

    ``parse``-ing the result gives back the same frames; raises ``ValueError`` when there are none and
    ``TypeError`` for a bare string (is "wj" one frame or two? pass ``["wj"]`` or ``["w", "j"]``).
    """
    if isinstance(frames, str):
        raise TypeError(f"frames must be a sequence of per-frame keys, got the str {frames!r}: pass "
                        f"[{frames!r}] for one frame or list({frames!r}) for one frame per character")
    runs: list[list] = []  # [keys, count]
    for frame in frames:
        v = _pressed_vector(frame)
        keys = "".join(k for k, on in zip(KEY_ORDER, v) if on)
        if runs and runs[-1][0] == keys:
            runs[-1][1] += 1
        else:
            runs.append([keys, 1])
    if not runs:
        raise ValueError("no frames to encode: a DSL string needs at least one frame")
    return ",".join(f"{keys or 'none'}-{count}" for keys, count in runs)


# ---------------------------------------------------------------------------------------------------------
# Trajectory
# ---------------------------------------------------------------------------------------------------------


def _pose(dsl_yaw: float, pitch: float, position: np.ndarray) -> np.ndarray:
    """c2w (4, 4) float64 with rotation Ry(dsl_yaw) Rx(pitch); dsl_yaw > 0 turns right (the DSL's sign)."""
    cy, sy, cp, sp = math.cos(dsl_yaw), math.sin(dsl_yaw), math.cos(pitch), math.sin(pitch)
    out = np.eye(4)
    out[:3, :3] = [[cy, sy * sp, sy * cp], [0.0, cp, -sp], [-sy, cy * sp, cy * cp]]
    out[:3, 3] = position
    return out


def _dsl_poses(segments: list[tuple[str, int]], translation_speed: float, rotation_speed_deg: float,
               pitch_limit_deg: float) -> np.ndarray:
    """(F + 1, 4, 4) float64 poses of parsed segments."""
    step = math.radians(rotation_speed_deg)
    limit = math.radians(pitch_limit_deg)
    dsl_yaw, pitch = 0.0, 0.0
    position = np.zeros(3)
    poses = [_pose(0.0, 0.0, position)]
    for keys, frames in segments:
        pitch_step = (step if "i" in keys else 0.0) - (step if "k" in keys else 0.0)
        yaw_step = (step if "l" in keys else 0.0) - (step if "j" in keys else 0.0)
        along = (1.0 if "w" in keys else 0.0) - (1.0 if "s" in keys else 0.0)
        across = (1.0 if "d" in keys else 0.0) - (1.0 if "a" in keys else 0.0)
        for _ in range(frames):
            # 1. pitch, unless this step would cross the limit (then it is dropped, not clamped)
            if -limit <= pitch + pitch_step <= limit:
                pitch = pitch + pitch_step
            # 2. yaw about world up
            dsl_yaw = dsl_yaw + yaw_step
            # 3. translate on the level heading after the turn: forward ±(sin, 0, cos) (its sign flips only
            #    past a vertical pitch, when pitch_limit_deg > 90), right (cos, 0, -sin)
            cy, sy = math.cos(dsl_yaw), math.sin(dsl_yaw)
            f = along * float(np.sign(math.cos(pitch)))
            position = position + translation_speed * np.array([f * sy + across * cy, 0.0, f * cy - across * sy])
            poses.append(_pose(dsl_yaw, pitch, position))
    return np.stack(poses)


def action_string_to_c2w(action: str, translation_speed: float = DSL_TRANSLATION_SPEED,
                         rotation_speed_deg: float = DSL_ROTATION_SPEED_DEG,
                         pitch_limit_deg: float = DSL_PITCH_LIMIT_DEG) -> np.ndarray:
    """Camera-to-world trajectory (F + 1, 4, 4) float32 of a DSL string of F frames, starting at identity."""
    return _dsl_poses(parse_action_string(action), translation_speed, rotation_speed_deg,
                      pitch_limit_deg).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Keys -> twist
# ---------------------------------------------------------------------------------------------------------


def keys_to_twist(pressed: np.ndarray | Sequence[int] | str, state: CameraState | None = None,
                  limits: TwistLimits | None = None) -> np.ndarray:
    """Normalised twist (6,) float64 for one frame of pressed keys: a MultiBinary(8) vector over KEY_ORDER or
    a key string with the DSL's rules ("w", "W", "wj", "none", ...; see :func:`normalize_keys`).

    Without ``state``/``limits``: the plain table of the module docstring, components in {-1, 0, 1}.
    With both: the twist for which ``integrate_twist(state, twist, limits)`` equals one DSL frame exactly:
    translation is rotated into the pre-turn heading (components may then reach cos r + sin r, about 1.02
    for r = 1.2°, when a translation key is held with a turn key) and a pitch step that would cross
    ``limits.pitch_limit_deg`` is dropped.
    """
    if (state is None) != (limits is None):
        raise ValueError("pass both state and limits (DSL-exact twist) or neither (plain key mapping)")
    w, a, s, d, i, j, k, l = (float(x) for x in _pressed_vector(pressed))
    twist = np.array([w - s, d - a, 0.0, j - l, i - k, 0.0])
    if state is None or limits is None:
        return twist
    scale = limits.scale()  # (6,) metres / radians per unit
    # 1. the DSL moves along the heading after this step's turn: rotate (forward, right) metres by the turn
    turn = twist[3] * scale[3]  # yaw > 0 turns left
    along, across = twist[0] * scale[0], twist[1] * scale[1]
    c, s_ = math.cos(turn), math.sin(turn)
    if scale[0] > 0:
        twist[0] = (along * c + across * s_) / scale[0]
    if scale[1] > 0:
        twist[1] = (across * c - along * s_) / scale[1]
    # 2. drop (do not clamp) a pitch step beyond the limit
    limit = math.radians(limits.pitch_limit_deg)
    if not (-limit <= state.pitch + twist[4] * scale[4] <= limit):
        twist[4] = 0.0
    return twist
