"""Tasks: what an agent is rewarded for. Batched over environments, written once for GT and dream worlds.

Each task keeps its own per-env tensors, is reset per env slot, and scores a step from the rendered
depth / ids and the camera positions. All tensors live on the world's device. On the CPU the explore
task scores in numpy on the tensors' own memory (the same float32 operations, bitwise equal results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from sana_world.render.fast_shading import available as numba_available
from sana_world.render.fast_shading import njit
from sana_world.worlds.collision import free_positions
from sana_world.worlds.palette import CATEGORIES
from sana_world.worlds.spec import SceneSpec

TASKS = ("explore", "pointnav", "objectnav")
POINT_STRIDE = 4  # explore: the hit of every POINT_STRIDE-th pixel (of rows and of columns) marks coverage


@dataclass(frozen=True)
class FrameView:
    """The pixels of a frame that a task's score reads: rows ``y0:y1`` and columns ``x0:x1``, every ``stride``-th
    of each. ``stride`` is a power of two, so a camera of these pixels alone casts bit for bit the rays the full
    frame's camera casts through them (:meth:`sana_world.envs.world.GTWorld.render_view`)."""

    y0: int
    y1: int
    x0: int
    x1: int
    stride: int = 1

    def __post_init__(self) -> None:
        s = self.stride
        if isinstance(s, bool) or not isinstance(s, int) or s < 1 or s & (s - 1):
            raise ValueError(f"FrameView.stride must be a power of two, got {s!r}")
        if not (0 <= self.y0 < self.y1 and 0 <= self.x0 < self.x1):
            raise ValueError(f"FrameView needs 0 <= y0 < y1 and 0 <= x0 < x1, got {self}")

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the view: ceil((y1 - y0) / stride), ceil((x1 - x0) / stride)."""
        return -(-(self.y1 - self.y0) // self.stride), -(-(self.x1 - self.x0) // self.stride)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The view's pixels of full frames ``x`` (N, H, W, ...) -> (N, h, w, ...)."""
        return x[:, self.y0:self.y1:self.stride, self.x0:self.x1:self.stride]


@dataclass(frozen=True)
class TaskConfig:
    """Reward shaping and success thresholds shared by all tasks."""

    step_penalty: float = 0.01
    collision_penalty: float = 0.01
    success_reward: float = 10.0
    # explore
    cell_size: float = 0.25  # metres per coverage cell
    grid_cells: int = 128  # coverage grid side (covers 32 m)
    area_reward: float = 0.1  # per newly seen square metre
    # pointnav
    goal_radius: float = 0.35
    min_goal_distance: float = 2.0
    # objectnav
    centre_window: float = 0.5  # side of the centre window as a fraction of the image
    fill_fraction: float = 0.3  # share of the centre window the target must cover
    success_distance: float = 1.5  # metres (median depth of target pixels in the window)

    def __post_init__(self) -> None:
        if not (0 < self.centre_window <= 1 and 0 < self.fill_fraction <= 1):
            raise ValueError("centre_window and fill_fraction must lie in (0, 1]")


def goal_space(task: str) -> spaces.Box | None:
    """The goal entry of the observation dict, or None for tasks without one."""
    if task == "pointnav":
        # (forward, right, up) offset in the agent's level heading frame, and distance; metres
        return spaces.Box(-100.0, 100.0, (4,), np.float32)
    if task == "objectnav":
        return spaces.Box(0.0, 1.0, (len(CATEGORIES),), np.float32)  # one-hot target category
    if task == "explore":
        return None
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


@njit(cache=True, fastmath=False, error_model="numpy")
def _explore_kernel(points, collided, origin, seen, g, cs, cell_area, neg_step_penalty, collision_penalty,
                    area_reward, success_reward, reward):  # pragma: no cover - compiled
    """The explore branch of :meth:`BatchedTask.score` in float32 (the same operations; torch casts Python
    scalars to float32 first, as the arguments here are): marks the cells hit by ``points`` (N, M, 3) in
    ``seen`` (N, G*G) and writes ``reward`` (N,)."""
    zero = np.float32(0.0)
    for n in range(points.shape[0]):
        # 1. coverage: count each newly seen cell once (the reference's scatter, then hits & ~seen)
        new = 0
        for m in range(points.shape[1]):
            x = np.floor((points[n, m, 0] - origin[n, 0]) / cs)  # NaN / inf for missed pixels: invalid
            z = np.floor((points[n, m, 2] - origin[n, 1]) / cs)
            if x >= 0 and x < g and z >= 0 and z < g:
                cell = np.int64(x * np.float32(g) + z)
                if not seen[n, cell]:
                    seen[n, cell] = True
                    new += 1
        # 2. reward = -step - collision + area (+ success, always 0 for explore)
        r = neg_step_penalty - collision_penalty * (np.float32(1.0) if collided[n] else zero)
        r = r + area_reward * (np.float32(new) * cell_area)
        reward[n] = r + success_reward * zero


class BatchedTask:
    """Per-env task state for ``num_envs`` slots."""

    def __init__(self, task: str, num_envs: int, cfg: TaskConfig, device: torch.device) -> None:
        goal_space(task)  # validates the name
        self.task, self.n, self.cfg, self.device = task, num_envs, cfg, device
        self.numpy_steps = torch.device(device).type == "cpu" and numba_available()  # see the module doc
        g = cfg.grid_cells
        self.seen = torch.zeros(num_envs, g * g, dtype=torch.bool, device=device)  # (N, G*G)
        self.origin = torch.zeros(num_envs, 2, dtype=torch.float32, device=device)  # grid origin (x, z)
        self.goal = torch.zeros(num_envs, 3, dtype=torch.float64, device=device)  # pointnav goal position
        self.prev_dist = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.target = torch.zeros(num_envs, dtype=torch.long, device=device)  # objectnav category index
        self.obj_category = torch.full((num_envs, 1), -1, dtype=torch.long, device=device)  # (N, Omax)
        self.best_fill = torch.zeros(num_envs, dtype=torch.float32, device=device)

    def view(self, height: int, width: int) -> FrameView | None:
        """The pixels of a (height, width) frame that :meth:`score` reads, or None for none (pointnav's reward and
        success come from positions alone): explore the hits of every :data:`POINT_STRIDE`-th pixel, objectnav
        the centre window. :meth:`observe_start` reads full frames."""
        if self.task == "explore":
            return FrameView(0, height, 0, width, POINT_STRIDE)
        if self.task == "objectnav":
            return FrameView(*self._centre_box(height, width))
        return None

    def _centre_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the centre window of a (height, width) frame."""
        ch, cw = max(1, int(height * self.cfg.centre_window)), max(1, int(width * self.cfg.centre_window))
        y0, x0 = (height - ch) // 2, (width - cw) // 2
        return y0, y0 + ch, x0, x0 + cw

    # ---------------------------------------------------------------------------------------------------
    def reset_slot(self, i: int, spec: SceneSpec, position: np.ndarray, rng: np.random.Generator) -> None:
        """Start a new episode in slot ``i`` of scene ``spec`` with the camera at ``position``."""
        (x0, _, z0), _ = spec.bounds()
        self.origin[i] = torch.tensor([x0, z0], dtype=torch.float32, device=self.device)
        self.seen[i] = False
        self.best_fill[i] = 0.0
        if self.task == "pointnav":
            goal = self._sample_goal(spec, position, rng)
            self.goal[i] = torch.as_tensor(goal, dtype=torch.float64, device=self.device)
            self.prev_dist[i] = float(np.linalg.norm(goal - position))
        if self.task == "objectnav":
            cats = [CATEGORIES.index(o.category) for o in spec.objects]
            if not cats:
                raise ValueError(f"scene {spec.seed} has no objects to find")
            width = max(self.obj_category.shape[1], len(cats))
            if width > self.obj_category.shape[1]:
                pad = torch.full((self.n, width - self.obj_category.shape[1]), -1, dtype=torch.long, device=self.device)
                self.obj_category = torch.cat([self.obj_category, pad], dim=1)
            self.obj_category[i] = -1
            self.obj_category[i, : len(cats)] = torch.tensor(cats, device=self.device)
            self.target[i] = int(rng.choice(sorted(set(cats))))

    def observe_start(self, slots: list[int], depth: torch.Tensor, ids: torch.Tensor,
                      points: torch.Tensor | None) -> None:
        """Count what slots ``slots`` see at reset as already found, unrewarded: the area in view (explore)
        and the target's fill of the centre window (objectnav). An episode's first step then pays only for
        what it adds, in a single env as after a vector env's autoreset (whose restart step scores the reset
        view and reports no reward). ``depth`` / ``ids`` (N, H, W), ``points`` (N, M, 3) as in :meth:`score`."""
        mask = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        mask[slots] = True
        if self.task == "explore":
            if points is None:
                raise ValueError("the explore task needs the reset view's hit points")
            nan = torch.full_like(points, float("nan"))  # other slots' points hit no cell
            self._cover(torch.where(mask[:, None, None], points, nan))
        elif self.task == "objectnav":
            fill, _ = self._centre_fill(depth, ids)
            self.best_fill = torch.where(mask, fill, self.best_fill)

    def _sample_goal(self, spec: SceneSpec, position: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cands = free_positions(spec, rng, 64, height=-float(position[1]), clearance=0.3)
        dist = np.linalg.norm(cands - position, axis=1)
        far = cands[dist >= self.cfg.min_goal_distance]
        return far[0] if len(far) else cands[int(np.argmax(dist))]

    # ---------------------------------------------------------------------------------------------------
    def goal_obs(self, position: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor | None:
        """Goal vectors (N, D) float32 for the observation, or None."""
        if self.task == "pointnav":
            d = self.goal - position  # (N, 3) world
            fwd = torch.stack([-torch.sin(yaw), torch.zeros_like(yaw), torch.cos(yaw)], dim=-1)
            right = torch.stack([torch.cos(yaw), torch.zeros_like(yaw), torch.sin(yaw)], dim=-1)
            out = torch.stack([(d * fwd).sum(-1), (d * right).sum(-1), -d[:, 1], d.norm(dim=-1)], dim=-1)
            return out.clamp(-100, 100).to(torch.float32)
        if self.task == "objectnav":
            return torch.nn.functional.one_hot(self.target, len(CATEGORIES)).to(torch.float32)
        return None

    def score(self, position: torch.Tensor, depth: torch.Tensor, ids: torch.Tensor, points: torch.Tensor | None,
              collided: torch.Tensor, viewed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward (N,) float32 and success (N,) bool for one step.

        ``depth`` (N, H, W), ``ids`` (N, H, W), ``points`` (N, M, 3) world hit points (subsampled). ``viewed``:
        ``depth`` and ``ids`` hold only the pixels of :meth:`view` (N, h, w).
        """
        cfg = self.cfg
        if self.numpy_steps and self.task == "explore" and points is not None:
            reward_np = self._score_explore_np(points.numpy(), collided.numpy())
            return torch.from_numpy(reward_np), torch.zeros(self.n, dtype=torch.bool)
        reward = -cfg.step_penalty - cfg.collision_penalty * collided.to(torch.float32)
        success = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        if self.task == "explore":
            if points is None:
                raise ValueError("the explore task needs the step's hit points")
            reward = reward + cfg.area_reward * self._cover(points)
        elif self.task == "pointnav":
            dist = (self.goal - position).norm(dim=-1)
            reward = reward + (self.prev_dist - dist).to(torch.float32)
            self.prev_dist = dist
            success = dist < cfg.goal_radius
        else:
            fill, near = self._centre_fill(depth, ids, viewed)
            reward = reward + 0.5 * (fill - self.best_fill).clamp_min(0)
            self.best_fill = torch.maximum(self.best_fill, fill)
            success = (fill >= cfg.fill_fraction) & near
        reward = reward + cfg.success_reward * success.to(torch.float32)
        return reward.to(torch.float32), success

    def _cover(self, points: torch.Tensor) -> torch.Tensor:
        """Mark coverage cells hit by ``points`` (N, M, 3); return newly seen area (N,) in m²."""
        g, cs = self.cfg.grid_cells, self.cfg.cell_size
        x = ((points[..., 0] - self.origin[:, :1]) / cs).floor()  # (N, M) cell column, NaN where no hit
        z = ((points[..., 2] - self.origin[:, 1:]) / cs).floor()
        valid = (x >= 0) & (x < g) & (z >= 0) & (z < g)  # False for NaN / inf too
        flat = torch.where(valid, x * g + z, torch.full_like(x, g * g)).long()  # misses go to a spare slot
        hits = torch.zeros(self.n, g * g + 1, dtype=torch.bool, device=self.device)
        hits.scatter_(1, flat, True)  # every write is True: order-independent
        new = hits[:, :-1] & ~self.seen
        self.seen |= new
        return new.sum(-1).to(torch.float32) * (cs * cs)

    def _score_explore_np(self, points: np.ndarray, collided: np.ndarray) -> np.ndarray:
        """:meth:`score` of the explore task in a numba kernel: reward (N,) float32; updates ``seen``."""
        cfg, f32 = self.cfg, np.float32
        reward = np.empty(self.n, dtype=np.float32)
        _explore_kernel(points, collided, self.origin.numpy(), self.seen.numpy(), cfg.grid_cells, f32(cfg.cell_size),
                        f32(cfg.cell_size * cfg.cell_size), f32(-cfg.step_penalty), f32(cfg.collision_penalty),
                        f32(cfg.area_reward), f32(cfg.success_reward), reward)
        return reward

    def _centre_fill(self, depth: torch.Tensor, ids: torch.Tensor,
                     cropped: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Share of the centre window covered by the target category, and whether it is close. ``cropped``:
        ``depth`` and ``ids`` (N, h, w) hold the window only."""
        if not cropped:
            y0, y1, x0, x1 = self._centre_box(*ids.shape[-2:])
            depth, ids = depth[:, y0:y1, x0:x1], ids[:, y0:y1, x0:x1]
        win = ids.long().flatten(1)  # (N, P)
        dwin = depth.flatten(1)
        cat = torch.where(win >= 0, torch.gather(self.obj_category, 1, win.clamp_min(0).clamp_max(
            self.obj_category.shape[1] - 1)), torch.full_like(win, -1))
        mask = cat == self.target[:, None]
        fill = mask.float().mean(-1)
        close = (mask & (dwin < self.cfg.success_distance)).sum(-1)
        near = mask.any(-1) & (2 * close >= mask.sum(-1))  # most target pixels are close
        return fill, near
