"""Path followers: normalised twists that drive a :class:`~sana_world.camera.CameraState` through waypoints.

Both followers are policies ``act(state) -> twist (6,) float32`` for :func:`~sana_world.camera.integrate_twist`
(or a GT env in twist mode). They keep only their progress along the path and the previous errors of the
PD law, so ``act`` must be called once per step with the state the last twist produced.

Control law (all gains are per step: 0.5 means "close half of the error in one step"):

- heading: yaw rate = kp·e + kd·(e - e_prev), e the XZ bearing to the target minus the camera yaw;
- speed: forward = kp·r + kd·(r - r_prev), r the path length left to the next stop, scaled down to 0
  as |e| grows to ``turn_in_place_deg`` (the camera turns on the spot first, like a person would);
- height, pitch and roll: proportional (pitch towards the waypoint's pitch, else level);
- near a stop (within ``strafe_radius``) the heading is no longer steered at the point (that would spin
  the camera); forward/right close the remaining offset and yaw goes to the waypoint's yaw, if any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sana_world.camera import CameraState, TwistLimits


def wrap_angle(a: float) -> float:
    """``a`` wrapped into [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def heading_to(dx: float, dz: float) -> float:
    """The camera yaw (yaw > 0 turns left) whose level forward axis points along (dx, dz)."""
    return math.atan2(-dx, dz)


@dataclass(frozen=True)
class Waypoint:
    """A point to reach (world, metres); ``yaw``/``pitch`` (radians), when given, must be matched there."""

    position: tuple[float, float, float]
    yaw: float | None = None
    pitch: float | None = None

    @property
    def is_stop(self) -> bool:
        """A waypoint with an orientation is a stop: the camera settles there before moving on."""
        return self.yaw is not None or self.pitch is not None


def as_waypoint(w: Waypoint | Sequence[float] | np.ndarray) -> Waypoint:
    """A Waypoint from a Waypoint, a position (3,) or a position with yaw (4,)."""
    if isinstance(w, Waypoint):
        return w
    a = np.asarray(w, dtype=np.float64)
    if a.shape not in ((3,), (4,)) or not np.all(np.isfinite(a)):
        raise ValueError(f"a waypoint is a finite (x, y, z) or (x, y, z, yaw), got {a.tolist()}")
    pos = (float(a[0]), float(a[1]), float(a[2]))
    return Waypoint(pos, float(a[3]) if a.shape == (4,) else None)


@dataclass(frozen=True)
class FollowerConfig:
    """Gains and tolerances of :class:`WaypointFollower` (distances in metres, angles in degrees)."""

    limits: TwistLimits = TwistLimits()  # the speeds the twist is normalised by (must match the integrator)
    reach_radius: float = 0.15  # a stop waypoint (the last, or one with yaw/pitch) is reached within this
    pass_radius: float = 0.3  # an intermediate waypoint is passed within this
    yaw_tolerance_deg: float = 4.0
    pitch_tolerance_deg: float = 4.0
    kp_heading: float = 0.5
    kd_heading: float = 0.2
    kp_distance: float = 0.5
    kd_distance: float = 0.2
    kp_height: float = 0.5
    kp_pitch: float = 0.3
    kp_roll: float = 0.3
    turn_in_place_deg: float = 60.0  # no forward motion while the heading error is above this
    strafe_radius: float = 0.5  # near a stop, translate holonomically instead of steering at the point

    def __post_init__(self) -> None:
        if not (0 < self.reach_radius <= self.pass_radius):
            raise ValueError(f"need 0 < reach_radius <= pass_radius, got {self.reach_radius}, {self.pass_radius}")
        if not (0 < self.turn_in_place_deg <= 180):
            raise ValueError(f"turn_in_place_deg must lie in (0, 180], got {self.turn_in_place_deg}")
        if self.strafe_radius < self.reach_radius:
            raise ValueError(f"strafe_radius ({self.strafe_radius}) must be >= reach_radius ({self.reach_radius})")


class WaypointFollower:
    """Drive through ``waypoints`` in order with a PD law on heading error and remaining distance."""

    def __init__(self, waypoints: Sequence[Waypoint | Sequence[float] | np.ndarray],
                 config: FollowerConfig = FollowerConfig()) -> None:
        self.waypoints = [as_waypoint(w) for w in waypoints]
        if not self.waypoints:
            raise ValueError("a follower needs at least one waypoint")
        self.config = config
        self._scale = config.limits.scale()  # (6,)
        # arc length at each waypoint (N,) and the index of the next stop at or after each one (N,)
        pts = np.array([w.position for w in self.waypoints])  # (N, 3)
        self._arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        stops = [i for i in range(len(pts)) if self._is_stop(i)]
        self._next_stop = np.searchsorted(np.array(stops), np.arange(len(pts)))
        self._next_stop = np.array(stops)[self._next_stop]
        self.index = 0
        self._start: np.ndarray | None = None  # (3,) where the first act() found the camera
        self._prev: tuple[int, float, float] | None = None  # (index, heading error, remaining) last step

    @property
    def done(self) -> bool:
        """Whether the final waypoint has been reached."""
        return self.index >= len(self.waypoints)

    @property
    def target(self) -> Waypoint | None:
        return None if self.done else self.waypoints[self.index]

    # --- progress ------------------------------------------------------------------------------------------
    def _is_stop(self, i: int) -> bool:
        return i == len(self.waypoints) - 1 or self.waypoints[i].is_stop

    def _remaining(self, pos: np.ndarray) -> float:
        """Path length from ``pos`` through the waypoints up to the next stop."""
        i = self.index
        to_next = float(np.linalg.norm(np.asarray(self.waypoints[i].position) - pos))
        return to_next + float(self._arc[self._next_stop[i]] - self._arc[i])

    def _reached(self, state: CameraState) -> bool:
        cfg, wp, i = self.config, self.waypoints[self.index], self.index
        offset = np.asarray(wp.position) - state.position  # (3,)
        dist = float(np.linalg.norm(offset))
        if not self._is_stop(i):
            if dist <= cfg.pass_radius:
                return True
            # overshot it: past the waypoint along the leg that leads to it, and still close to it
            before = self.waypoints[i - 1].position if i > 0 else self._start
            leg = np.subtract(wp.position, before)
            return bool(float(np.dot(-offset, leg)) > 0 and dist <= 2 * cfg.pass_radius)
        if dist > cfg.reach_radius:
            return False
        if wp.yaw is not None and abs(wrap_angle(wp.yaw - state.yaw)) > math.radians(cfg.yaw_tolerance_deg):
            return False
        return wp.pitch is None or abs(wp.pitch - state.pitch) <= math.radians(cfg.pitch_tolerance_deg)

    # --- control -------------------------------------------------------------------------------------------
    def act(self, state: CameraState) -> np.ndarray:
        """Twist (6,) float32 in [-1, 1] towards the current waypoint; zeros once ``done``."""
        # 1. skip every waypoint already reached
        if self._start is None:
            self._start = state.position.copy()
        while not self.done and self._reached(state):
            self.index += 1
            self._prev = None
        if self.done:
            return np.zeros(6, dtype=np.float32)
        cfg, wp = self.config, self.waypoints[self.index]
        offset = np.asarray(wp.position) - state.position  # (3,)
        fwd, right = state.heading_axes()
        dist_xz = math.hypot(offset[0], offset[2])
        remaining = self._remaining(state.position)
        metres = np.zeros(6)  # [forward, right, up (m), yaw, pitch, roll (rad)] wanted this step
        # 2. heading and speed: steer at the point, or translate holonomically when close to a stop
        if self._is_stop(self.index) and remaining <= cfg.strafe_radius:
            metres[0] = cfg.kp_distance * float(offset @ fwd)
            metres[1] = cfg.kp_distance * float(offset @ right)
            heading_err = 0.0 if wp.yaw is None else wrap_angle(wp.yaw - state.yaw)
        else:
            heading_err = wrap_angle(heading_to(offset[0], offset[2]) - state.yaw) if dist_xz > 1e-9 else 0.0
            d_rem = 0.0
            if self._prev is not None and self._prev[0] == self.index:
                d_rem = remaining - self._prev[2]
            speed = max(0.0, cfg.kp_distance * remaining + cfg.kd_distance * d_rem)
            cos_t = math.cos(math.radians(cfg.turn_in_place_deg))
            gate = float(np.clip((math.cos(heading_err) - cos_t) / (1.0 - cos_t + 1e-12), 0.0, 1.0))
            metres[0] = speed * gate
        d_head = 0.0
        if self._prev is not None and self._prev[0] == self.index:
            d_head = wrap_angle(heading_err - self._prev[1])
        metres[3] = cfg.kp_heading * heading_err + cfg.kd_heading * d_head
        self._prev = (self.index, heading_err, remaining)
        # 3. height (world up is -y), pitch towards the waypoint's (else level), roll level
        metres[2] = cfg.kp_height * -offset[1]
        metres[4] = cfg.kp_pitch * ((wp.pitch if wp.pitch is not None else 0.0) - state.pitch)
        metres[5] = -cfg.kp_roll * state.roll
        # 4. normalise by the limits (an axis with zero speed stays still)
        moving = self._scale > 0  # (6,)
        twist = np.where(moving, metres / np.where(moving, self._scale, 1.0), 0.0)
        return np.clip(twist, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Splines
# ---------------------------------------------------------------------------------------------------------


def catmull_rom(points: np.ndarray, spacing: float = 0.1, alpha: float = 0.5) -> np.ndarray:
    """Samples (M, D) about ``spacing`` apart on the Catmull-Rom spline through ``points`` (N, D).

    ``alpha`` 0.5 is the centripetal variant (no cusps or self-loops); the ends use mirrored ghost points.
    The first and last samples are the first and last points.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"points must be (N, D) with N >= 1, got shape {p.shape}")
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    # 1. drop repeated points (they would give zero-length knots)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9])
    p = p[keep]
    if len(p) == 1:
        return p.copy()
    ctrl = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])  # (N + 2, D)
    out = [p[:1]]
    for i in range(len(p) - 1):
        # 2. knots of the segment p[i] -> p[i+1] from its four control points
        c = ctrl[i:i + 4]
        t = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1) ** alpha)])  # (4,)
        n = max(2, int(math.ceil(float(np.linalg.norm(c[2] - c[1])) / spacing)))
        u = np.linspace(t[1], t[2], n + 1)[1:, None]  # (n, 1)
        # 3. Barry-Goldman pyramid
        a1 = (t[1] - u) / (t[1] - t[0]) * c[0] + (u - t[0]) / (t[1] - t[0]) * c[1]
        a2 = (t[2] - u) / (t[2] - t[1]) * c[1] + (u - t[1]) / (t[2] - t[1]) * c[2]
        a3 = (t[3] - u) / (t[3] - t[2]) * c[2] + (u - t[2]) / (t[3] - t[2]) * c[3]
        b1 = (t[2] - u) / (t[2] - t[0]) * a1 + (u - t[0]) / (t[2] - t[0]) * a2
        b2 = (t[3] - u) / (t[3] - t[1]) * a2 + (u - t[1]) / (t[3] - t[1]) * a3
        out.append((t[2] - u) / (t[2] - t[1]) * b1 + (u - t[1]) / (t[2] - t[1]) * b2)
    return np.concatenate(out)


@dataclass(frozen=True)
class SplineConfig:
    """How :class:`SplineFollower` samples its Catmull-Rom curve."""

    spacing: float = 0.1  # metres between samples
    alpha: float = 0.5  # 0 uniform, 0.5 centripetal, 1 chordal
    lookahead: float = 0.4  # samples closer than this are passed: the pursuit point runs this far ahead

    def __post_init__(self) -> None:
        if self.spacing <= 0 or self.lookahead <= 0:
            raise ValueError(f"spacing and lookahead must be positive, got {self.spacing}, {self.lookahead}")
        if not (0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")


class SplineFollower(WaypointFollower):
    """Pure pursuit along the Catmull-Rom spline through the waypoints' positions.

    Only the last waypoint's yaw/pitch are honoured (the camera settles there); others are path shape.
    """

    def __init__(self, waypoints: Sequence[Waypoint | Sequence[float] | np.ndarray],
                 config: FollowerConfig = FollowerConfig(), spline: SplineConfig = SplineConfig()) -> None:
        given = [as_waypoint(w) for w in waypoints]
        if not given:
            raise ValueError("a follower needs at least one waypoint")
        samples = catmull_rom(np.array([w.position for w in given]), spline.spacing, spline.alpha)  # (M, 3)
        dense = [Waypoint(tuple(float(v) for v in s)) for s in samples[:-1]]
        dense.append(Waypoint(tuple(float(v) for v in samples[-1]), given[-1].yaw, given[-1].pitch))
        cfg = replace(config, pass_radius=max(spline.lookahead, config.reach_radius))
        super().__init__(dense, cfg)
        self.spline = spline
        self.control_points = given
