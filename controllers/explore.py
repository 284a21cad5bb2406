"""Exploration policies for data generation and the collision-aware :func:`rollout` that drives them.

- :class:`RandomExplorer`: an Ornstein-Uhlenbeck twist (mostly forward, smooth yaw turns, small pitch
  jitter) that looks ahead in the scene's signed distance field to turn away from walls and objects, and
  every so often *revisits* an earlier pose: it walks back along its own (string-pulled) track with a
  :class:`~sana_world.controllers.followers.WaypointFollower`, so clips come back to earlier viewpoints.
- :class:`KeyScriptExplorer`: random SANA-WM key-DSL motions ("w-30,jw-20,l-15"), one key frame per
  step, cutting a motion short before it runs into geometry; ``action_string()`` gives the DSL string.

Both are seeded through ``reset(spec, state, rng)`` and are deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sana_world.camera import CameraState, TwistLimits, integrate_twist
from sana_world.controllers.followers import FollowerConfig, Waypoint, WaypointFollower
from sana_world.controllers.keys import dsl_limits, keys_to_action_string, keys_to_twist, keys_to_vector
from sana_world.worlds.spec import SceneSpec


class DistanceField(Protocol):
    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (N,) of points (N, 3) to the nearest solid."""


class Policy(Protocol):
    def act(self, state: CameraState) -> np.ndarray:
        """Normalised twist (6,) for ``state``."""


def scene_sdf(spec: SceneSpec) -> DistanceField:
    """The scene's signed distance field (imported lazily)."""
    from sana_world.worlds.collision import SceneSDF

    return SceneSDF(spec)


def _free_run(sdf: DistanceField, origin: np.ndarray, yaws: np.ndarray, length: float, clearance: float,
              step: float = 0.1) -> np.ndarray:
    """Metres (A,) the camera can travel along level rays at camera yaws (A,) before coming within
    ``clearance`` of the geometry, up to ``length``."""
    s = np.arange(1, int(math.ceil(length / step)) + 1) * step  # (n,)
    dirs = np.stack([-np.sin(yaws), np.zeros_like(yaws), np.cos(yaws)], axis=-1)  # (A, 3)
    pts = origin[None, None, :] + dirs[:, None, :] * s[None, :, None]  # (A, n, 3)
    free = sdf.distance(pts.reshape(-1, 3)).reshape(len(yaws), len(s)) > clearance  # (A, n)
    first_blocked = np.where(free.all(axis=1), len(s), np.argmin(free, axis=1))  # (A,)
    return np.minimum(np.concatenate([[0.0], s])[first_blocked], length)


def _furthest_in_sight(sdf: DistanceField, track: np.ndarray, a: int, min_distance: np.ndarray,
                       step: float = 0.1) -> int:
    """The largest index c > a such that the segment track[a] -> track[c] keeps ``min_distance[c]`` (K,) from
    the geometry (a + 1 when none does: consecutive track points are joined as they were driven)."""
    ends = track[a + 1:]  # (C, 3)
    n = max(2, int(math.ceil(float(np.linalg.norm(ends - track[a], axis=1).max()) / step)) + 1)
    t = np.linspace(0.0, 1.0, n)[None, :, None]  # (1, n, 1)
    pts = track[a][None, None, :] * (1 - t) + ends[:, None, :] * t  # (C, n, 3)
    clear = (sdf.distance(pts.reshape(-1, 3)).reshape(len(ends), n) > min_distance[a + 1:, None]).all(axis=1)
    return a + 1 + (int(np.flatnonzero(clear)[-1]) if clear.any() else 0)


# ---------------------------------------------------------------------------------------------------------
# RandomExplorer
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplorerConfig:
    """Motion statistics, wall avoidance and revisits of :class:`RandomExplorer` (metres, degrees, steps)."""

    limits: TwistLimits = TwistLimits()  # what the twist is normalised by (must match the rollout's)
    cruise: float = 0.6  # mean forward command
    theta: float = 0.08  # OU mean reversion per step
    sigma: tuple[float, float, float, float, float, float] = (0.05, 0.03, 0.0, 0.12, 0.06, 0.0)
    pitch_max_deg: float = 8.0  # pitch jitter is pulled back towards level with this scale
    clearance: float = 0.3  # the rollout's clearance (the camera is a sphere of this radius)
    lookahead: float = 1.5  # metres of free travel probed along the heading
    caution: float = 1.0  # slow down and turn once the free travel ahead drops below this
    revisit_interval: tuple[int, int] = (90, 150)  # steps of exploration between revisits
    revisit_min_age: int = 60  # a revisited pose is at least this many steps old
    revisit_min_distance: float = 0.8  # prefer poses at least this far away
    revisit_margin: float = 0.25  # shortcuts keep clearance + this from the geometry
    revisit_timeout: int = 400  # give up a revisit after this many steps
    revisit_blocked: int = 5  # or after this many blocked steps in a row
    follower: FollowerConfig | None = None  # default: follower_config()

    def __post_init__(self) -> None:
        if len(self.sigma) != 6:
            raise ValueError(f"sigma needs 6 entries (one per twist component), got {len(self.sigma)}")
        lo, hi = self.revisit_interval
        if not (1 <= lo <= hi):
            raise ValueError(f"revisit_interval must satisfy 1 <= lo <= hi, got {self.revisit_interval}")
        if self.follower is not None and self.follower.limits != self.limits:
            raise ValueError("follower.limits must equal limits (both normalise the same twist)")

    def follower_config(self) -> FollowerConfig:
        """The revisit follower: turns on the spot before driving, so it keeps to the checked shortcuts."""
        return self.follower or FollowerConfig(limits=self.limits, pass_radius=0.25, turn_in_place_deg=20.0)


@dataclass
class _Visit:
    step: int
    position: np.ndarray  # (3,)
    yaw: float
    pitch: float


class RandomExplorer:
    """Smooth random exploration with wall avoidance and periodic revisits of earlier poses."""

    def __init__(self, config: ExplorerConfig = ExplorerConfig()) -> None:
        self.config = config
        self._scale = config.limits.scale()  # (6,)
        self._rng: np.random.Generator | None = None
        self._sdf: DistanceField | None = None

    def reset(self, spec: SceneSpec, state: CameraState, rng: np.random.Generator,
              sdf: DistanceField | None = None) -> None:
        """Start a new episode in ``spec`` at ``state``; all randomness comes from ``rng``."""
        cfg = self.config
        self._rng, self._sdf = rng, sdf if sdf is not None else scene_sdf(spec)
        self._ou = np.array([cfg.cruise, 0, 0, 0, 0, 0], dtype=np.float64)  # (6,) OU state
        self._turn = 0.0  # committed avoidance turn direction: +1 left, -1 right, 0 none
        self._step = 0
        self._history: list[_Visit] = []
        self._last: tuple[np.ndarray, float] | None = None  # (position, metres of translation commanded)
        self._blocked = 0  # blocked steps in a row
        self._follower: WaypointFollower | None = None
        self._revisit_started = 0
        self._next_revisit = self._draw_interval()
        self.revisits: list[tuple[int, int]] = []  # (step started, step of the revisited pose)

    def _draw_interval(self) -> int:
        lo, hi = self.config.revisit_interval
        return int(self._rng.integers(lo, hi + 1))  # type: ignore[union-attr]

    @property
    def revisiting(self) -> bool:
        return self._follower is not None

    def act(self, state: CameraState) -> np.ndarray:
        """Twist (6,) float32 for ``state``; call once per step with the state the rollout produced."""
        if self._rng is None or self._sdf is None:
            raise RuntimeError("call reset(spec, state, rng) before act")
        cfg = self.config
        # the rollout leaves the position untouched (bit for bit) when it cancels a move
        blocked = self._last is not None and self._last[1] > 1e-4 and np.array_equal(self._last[0], state.position)
        self._blocked = self._blocked + 1 if blocked else 0
        self._history.append(_Visit(self._step, state.position.copy(), state.yaw, state.pitch))
        self._step += 1
        # 1. a revisit in progress, or one due now
        if self._follower is None and self._step >= self._next_revisit:
            self._plan_revisit(state)
        if self._follower is not None:
            twist = self._follower.act(state)
            stuck = self._blocked >= cfg.revisit_blocked
            timed_out = self._step - self._revisit_started > cfg.revisit_timeout
            if not (self._follower.done or timed_out or stuck):
                self._remember(state, twist)
                return twist
            self._follower = None
            self._next_revisit = self._step + self._draw_interval()
            self._ou[:] = [cfg.cruise, 0, 0, 0, 0, 0]
        # 2. Ornstein-Uhlenbeck drift around cruising forward, level pitch
        mu = np.array([cfg.cruise, 0.0, 0.0, 0.0, -0.5 * state.pitch / math.radians(cfg.pitch_max_deg), -state.roll])
        self._ou += cfg.theta * (mu - self._ou) + np.asarray(cfg.sigma) * self._rng.standard_normal(6)
        self._ou = np.clip(self._ou, -1.0, 1.0)
        twist = self._ou.copy()
        # 3. look ahead: slow down and commit to a turn towards the more open side
        free = float(self._free(state, np.array([state.yaw]))[0])
        danger = float(np.clip((cfg.caution - free) / cfg.caution, 0.0, 1.0))
        if blocked:
            danger = 1.0
        if danger > 0.0:
            if self._turn == 0.0:
                self._turn = self._open_side(state)
            self._ou[3] += danger * (self._turn - self._ou[3])
            twist[3] = self._ou[3]
            twist[0] = self._ou[0] * (1.0 - danger) ** 2
            twist[1] = 0.0
        else:
            self._turn = 0.0
        twist[0] = max(twist[0], 0.0)
        self._remember(state, twist)
        return twist.astype(np.float32)

    def _remember(self, state: CameraState, twist: np.ndarray) -> None:
        """Keep where we were and how far we asked to move, to notice a blocked step next time."""
        self._last = (state.position.copy(), float(np.linalg.norm(twist[:3] * self._scale[:3])))

    def _free(self, state: CameraState, yaws: np.ndarray) -> np.ndarray:
        cfg = self.config
        return _free_run(self._sdf, state.position, yaws, cfg.lookahead, cfg.clearance + 0.05)  # type: ignore[arg-type]

    def _open_side(self, state: CameraState) -> float:
        """+1 (turn left) or -1 (turn right): the side whose rays reach furthest into free space."""
        offsets = np.radians([30.0, 60.0, 90.0, 120.0, 150.0])
        yaws = np.concatenate([state.yaw + offsets, state.yaw - offsets])  # (10,)
        free = self._free(state, yaws)
        left, right = float(free[:5].max()), float(free[5:].max())
        if abs(left - right) < 1e-6:
            return 1.0 if self._rng.random() < 0.5 else -1.0  # type: ignore[union-attr]
        return 1.0 if left > right else -1.0

    def _plan_revisit(self, state: CameraState) -> None:
        """Pick an earlier pose and follow our own track back to it, string-pulled through free space."""
        cfg = self.config
        old = [i for i, v in enumerate(self._history) if self._step - 1 - v.step >= cfg.revisit_min_age]
        if not old:
            self._next_revisit = self._step + self._draw_interval()
            return
        far = [i for i in old if np.linalg.norm(self._history[i].position - state.position) >= cfg.revisit_min_distance]
        pool = far or old
        target = pool[int(self._rng.integers(len(pool)))]  # type: ignore[union-attr]
        # 1. our track from now back to the target (every point of it was free)
        track = np.stack([v.position for v in reversed(self._history[target:])])  # (K, 3), track[0] = now
        # 2. string pulling: from each anchor jump to the furthest track point in clear sight, where "clear"
        #    means the margin, or (where the track itself ran closer) the track's own distance up to there
        track_free = self._sdf.distance(track)  # type: ignore[union-attr]  # (K,)
        points, a = [], 0
        while a < len(track) - 1:
            closest = np.minimum.accumulate(track_free[a:])  # (K - a,) min along the track from a
            need = np.full(len(track), np.inf)
            need[a:] = np.clip(closest - 0.02, cfg.clearance + 0.05, cfg.clearance + cfg.revisit_margin)
            a = _furthest_in_sight(self._sdf, track, a, need)  # type: ignore[arg-type]
            points.append(track[a])
        goal = self._history[target]
        waypoints = [Waypoint(tuple(float(x) for x in p)) for p in points[:-1]]
        waypoints.append(Waypoint(tuple(float(x) for x in goal.position), goal.yaw, goal.pitch))
        self._follower = WaypointFollower(waypoints, cfg.follower_config())
        self._revisit_started = self._step
        self.revisits.append((self._step - 1, goal.step))


# ---------------------------------------------------------------------------------------------------------
# KeyScriptExplorer
# ---------------------------------------------------------------------------------------------------------

DEFAULT_MOTIONS: tuple[tuple[str, float], ...] = (
    ("w", 4.0), ("wj", 1.5), ("wl", 1.5), ("j", 1.0), ("l", 1.0), ("a", 0.4), ("d", 0.4), ("s", 0.3),
    ("wa", 0.3), ("wd", 0.3), ("i", 0.4), ("k", 0.4), ("none", 0.4),
)


@dataclass(frozen=True)
class KeyScriptConfig:
    """Random key-DSL motions of :class:`KeyScriptExplorer`."""

    limits: TwistLimits = field(default_factory=dsl_limits)  # one step = one DSL frame at these speeds
    exact: bool = True  # DSL-exact twists (see keys_to_twist); False: the plain {-1, 0, 1} mapping
    motions: tuple[tuple[str, float], ...] = DEFAULT_MOTIONS  # (keys, weight)
    frames: tuple[int, int] = (10, 60)  # frames per motion, inclusive
    pitch_soft_deg: float = 20.0  # beyond this, pitch motions only bring the camera back towards level
    clearance: float = 0.3  # the rollout's clearance
    caution: float = 0.3  # a motion is cut short when it would come within clearance + this of geometry

    def __post_init__(self) -> None:
        if not self.motions or any(w <= 0 for _, w in self.motions):
            raise ValueError("motions must be a non-empty tuple of (keys, positive weight)")
        for keys, _ in self.motions:
            if keys != "none":
                keys_to_vector(keys)  # raises on unknown keys
        if not (1 <= self.frames[0] <= self.frames[1]):
            raise ValueError(f"frames must satisfy 1 <= lo <= hi, got {self.frames}")


class KeyScriptExplorer:
    """Random DSL motions ("w-30,jw-20,l-15"), one key frame per step; see ``action_string()``."""

    def __init__(self, config: KeyScriptConfig = KeyScriptConfig()) -> None:
        self.config = config
        self._keys = [("" if k == "none" else k) for k, _ in config.motions]
        w = np.array([w for _, w in config.motions], dtype=np.float64)
        self._weights = w / w.sum()
        self._rng: np.random.Generator | None = None
        self._sdf: DistanceField | None = None

    def reset(self, spec: SceneSpec, state: CameraState, rng: np.random.Generator,
              sdf: DistanceField | None = None) -> None:
        """Start a new episode in ``spec`` at ``state``; all randomness comes from ``rng``."""
        self._rng, self._sdf = rng, sdf if sdf is not None else scene_sdf(spec)
        self._segment: tuple[str, int] = ("", 0)  # (keys, frames left)
        self.pressed: list[np.ndarray] = []  # (8,) int8 per step
        self.last_keys = np.zeros(8, dtype=np.int8)

    def action_string(self) -> str:
        """The DSL string of every key frame emitted since reset."""
        return keys_to_action_string(self.pressed)

    def _pitch_ok(self, state: CameraState, keys: str) -> bool:
        """Whether one more frame of ``keys`` keeps the pitch within the soft limit (or brings it back)."""
        step = (("i" in keys) - ("k" in keys)) * math.radians(self.config.limits.pitch_deg)
        soft = math.radians(self.config.pitch_soft_deg)
        return step == 0 or abs(state.pitch + step) <= max(soft, abs(state.pitch) - 1e-9)

    def _draw(self, state: CameraState) -> tuple[str, int]:
        """A new random motion; a pitch motion that would pass the soft limit is turned the other way."""
        rng, cfg = self._rng, self.config
        keys = self._keys[int(rng.choice(len(self._keys), p=self._weights))]  # type: ignore[union-attr]
        if not self._pitch_ok(state, keys):
            swapped = {"i": "k", "k": "i"}
            keys = "".join(sorted((swapped.get(k, k) for k in keys), key="wasdijkl".index))
        return keys, int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))  # type: ignore[union-attr]

    def _safe(self, state: CameraState, keys: str) -> bool:
        """Whether one more frame of ``keys`` keeps clearance + caution from the geometry."""
        twist = self._twist(state, keys_to_vector(keys))
        if twist[0] == 0 and twist[1] == 0 and twist[2] == 0:
            return True
        nxt = integrate_twist(state, twist, self.config.limits)  # exactly where the rollout would go
        step = nxt.position - state.position
        probe = state.position + step / max(float(np.linalg.norm(step)), 1e-9) * self.config.caution
        d = self._sdf.distance(np.stack([nxt.position, probe]))  # type: ignore[union-attr]
        return bool(np.all(d > self.config.clearance))

    def act(self, state: CameraState) -> np.ndarray:
        """Twist (6,) float32 of this step's key frame (the frame itself is in ``last_keys``)."""
        if self._rng is None or self._sdf is None:
            raise RuntimeError("call reset(spec, state, rng) before act")
        # 1. next motion when the current one ends or would run into something
        keys, left = self._segment
        for _ in range(8):
            if left > 0 and self._pitch_ok(state, keys) and self._safe(state, keys):
                break
            keys, left = self._draw(state)
        else:
            # boxed in: turn on the spot towards the more open side (never translates)
            yaws = np.array([state.yaw + 1.2, state.yaw - 1.2])
            yaw_l = _free_run(self._sdf, state.position, yaws, 1.0, self.config.clearance)
            keys, left = ("j" if yaw_l[0] >= yaw_l[1] else "l"), int(self._rng.integers(15, 40))
        self._segment = (keys, left - 1)
        # 2. the key frame and its twist
        self.last_keys = keys_to_vector(keys)
        self.pressed.append(self.last_keys)
        return self._twist(state, self.last_keys).astype(np.float32)

    def _twist(self, state: CameraState, pressed: np.ndarray) -> np.ndarray:
        cfg = self.config
        return keys_to_twist(pressed, state, cfg.limits) if cfg.exact else keys_to_twist(pressed)


# ---------------------------------------------------------------------------------------------------------
# Rollout
# ---------------------------------------------------------------------------------------------------------


def rollout(spec: SceneSpec | None, policy: Policy, start: CameraState, steps: int, limits: TwistLimits,
            sdf: DistanceField | None = None, *, clearance: float = 0.3,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drive ``policy`` for ``steps`` steps from ``start``: poses (T + 1, 4, 4) float64, actions (T, 6) float32.

    Each twist is integrated with :func:`~sana_world.camera.integrate_twist`; a move that would end within
    ``clearance`` of the geometry (or outside every room of ``spec``) is cancelled while its rotation still
    applies, as in the GT env. With ``rng`` the policy is first ``reset(spec, start, rng, sdf=sdf)``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if sdf is None:
        if spec is None:
            raise ValueError("rollout needs a spec or an sdf")
        sdf = scene_sdf(spec)
    start_free = float(sdf.distance(start.position.reshape(1, 3))[0])
    if not start_free > clearance:
        raise ValueError(f"start {start.position.tolist()} is {start_free:.3f} m from the geometry, within the "
                         f"clearance {clearance}; pick it with free_positions(..., clearance >= {clearance})")
    if rng is not None:
        policy.reset(spec, start.copy(), rng, sdf=sdf)  # type: ignore[attr-defined]
    state = start.copy()
    poses = [state.c2w()]
    actions = np.zeros((steps, 6), dtype=np.float32)
    for t in range(steps):
        # 1. the policy's twist
        a = np.asarray(policy.act(state.copy()), dtype=np.float32)
        if a.shape != (6,) or not np.all(np.isfinite(a)):
            raise ValueError(f"step {t}: policy returned {a.tolist()}, expected a finite twist of shape (6,)")
        actions[t] = a
        # 2. integrate; cancel the translation if it ends too close to geometry or outside the rooms
        new = integrate_twist(state, a, limits)
        x, _, z = new.position
        ok = float(sdf.distance(new.position.reshape(1, 3))[0]) > clearance
        ok = ok and (spec is None or spec.room_at(float(x), float(z)) is not None)
        if not ok:
            new.position = state.position.copy()
        state = new
        poses.append(state.c2w())
    return np.stack(poses), actions


__all__ = [
    "DEFAULT_MOTIONS", "DistanceField", "ExplorerConfig", "KeyScriptConfig", "KeyScriptExplorer", "Policy",
    "RandomExplorer", "rollout", "scene_sdf",
]
