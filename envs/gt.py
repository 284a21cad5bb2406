"""Ground-truth Gymnasium environments: a 6-DoF camera in a procedural 3D world, rendered exactly."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sana_world.envs.spaces import action_space, observation_space, validate_actions
from sana_world.envs.world import GTConfig, GTWorld
from sana_world.worlds.spec import SceneSpec


GT_OPTIONS = frozenset(f.name for f in dataclasses.fields(GTConfig)) - {"task"}


def make_config(task: str, **kwargs: Any) -> GTConfig:
    """A :class:`GTConfig` for ``task`` with keyword overrides (unknown keys raise TypeError)."""
    unknown = sorted(set(kwargs) - GT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown env option(s) {unknown}; valid options: {sorted(GT_OPTIONS)}")
    return GTConfig(task=task, **kwargs)


def start_scene(options: dict[str, Any], cfg: GTConfig) -> SceneSpec | None:
    """The scene a reset's ``options`` ask for: ``{"scene": SceneSpec}`` or ``{"scene_seed": int >= 0}``
    (``scene`` wins), or None (drawn from the split). Raises naming the bad option."""
    spec = options.get("scene")
    if spec is not None:
        if not isinstance(spec, SceneSpec):
            raise TypeError(f"options['scene'] must be a SceneSpec, got {type(spec).__name__}")
        return spec
    if "scene_seed" not in options:
        return None
    seed = options["scene_seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"options['scene_seed'] must be an int >= 0 (held-out scenes start at 1,000,000), got "
                         f"{seed!r}")  # fmt: skip
    from sana_world.worlds.sampler import sample_scene

    return sample_scene(int(seed), cfg.world)


def build_obs(world: GTWorld, frame, cfg: GTConfig) -> dict[str, torch.Tensor] | torch.Tensor:
    """Observation tensors (batched, on the world's device) matching ``observation_space``."""
    rgb = frame.rgb  # (N, H, W, 3) uint8
    goal = world.task.goal_obs(world.position, world.angles[:, 0])
    if goal is None and not cfg.depth:
        return rgb
    obs: dict[str, torch.Tensor] = {"rgb": rgb}
    if cfg.depth:
        obs["depth"] = frame.depth.nan_to_num(cfg.max_depth, cfg.max_depth).clamp(0, cfg.max_depth)[..., None]
    if goal is not None:
        obs["goal"] = goal
    return obs


class GTEnv(gym.Env):
    """One camera in one procedural world.

    Observation: uint8 RGB (H, W, 3), or a Dict with "rgb", optional "depth" and the task's "goal".
    Action: ``Box(-1, 1, (6,))`` twist [forward, right, up, yaw, pitch, roll] scaled by
    ``GTConfig.limits``, ``MultiBinary(8)`` over "wasdijkl" with ``action_mode="keys"``, or ``Discrete(3)``
    (forward, turn left, turn right: a level camera, Habitat-style) with ``action_mode="nav"``.
    ``reset(options=...)`` accepts ``{"scene": SceneSpec}`` or ``{"scene_seed": int}``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}

    def __init__(self, task: str = "explore", render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.cfg = make_config(task, **kwargs)
        self.render_mode = render_mode
        self.action_space = action_space(self.cfg.action_mode)
        self.observation_space = observation_space(task, self.cfg.height, self.cfg.width, self.cfg.depth,
                                                   self.cfg.max_depth)
        self.world = GTWorld(self.cfg, 1)
        self._frame = None
        self._success = False

    # ---------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"scene", "scene_seed"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; use 'scene' or 'scene_seed'")
        spec = start_scene(options, self.cfg)
        self._frame = None  # a reset that fails part-way leaves an env that asks for a new reset
        self.world.reset_slots([0], [self.np_random], [spec])
        frame = self.world.render()
        self.world.observe_start([0], frame)
        self._frame = frame
        self._success = False
        return self._obs(), self._info(collided=False)

    def step(self, action):
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        twist = self._twist(action)  # (1, 6) float64; raises before any change
        collided = self.world.move(twist.to(self.world.device), keys_mode=self.cfg.action_mode == "keys")
        self._frame = self.world.render()
        reward, success = self.world.score(self._frame, collided)
        self._success = bool(success[0])
        info = self._info(collided=bool(collided[0]))
        return self._obs(), float(reward[0]), self._success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._frame is None:
            raise RuntimeError("call reset() before render()")
        return self._frame.rgb[0].cpu().numpy()

    def close(self) -> None:
        self._frame = None

    # ---------------------------------------------------------------------------------------------------
    @property
    def scene(self) -> SceneSpec:
        spec = self.world.specs[0]
        if spec is None:
            raise RuntimeError("call reset() first")
        return spec

    def _twist(self, action) -> torch.Tensor:
        """``validate_actions`` of one action as a (1, 6) float64 twist; a finite float numpy twist (the common
        case) skips its torch round trip: clipping float64 values in numpy gives the same numbers."""
        if (self.cfg.action_mode == "twist" and isinstance(action, np.ndarray) and action.shape == (6,)
                and action.dtype.kind == "f" and np.isfinite(action).all()):
            return torch.from_numpy(np.clip(action.astype(np.float64), -1.0, 1.0)[None])
        return validate_actions(action, self.cfg.action_mode, None)[None]

    def _obs(self):
        obs = build_obs(self.world, self._frame, self.cfg)
        if isinstance(obs, torch.Tensor):
            return obs[0].cpu().numpy()
        return {k: v[0].cpu().numpy() for k, v in obs.items()}

    def _info(self, collided: bool) -> dict[str, Any]:
        return {
            "c2w": self.world.c2w32()[0].cpu().numpy().copy(),  # the float64 pose rounded to float32
            "K": self.world.K.cpu().numpy().copy(),
            "collision": collided,
            "success": self._success,
            "scene_id": self.scene.seed,
            "depth": self._frame.depth[0].cpu().numpy(),
        }
