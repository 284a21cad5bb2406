"""Dream environments: the GT envs' spaces, dynamics and tasks, with frames dreamed by the world model.

``gym.make("SanaWorld/DreamRooms-v0")`` / ``"SanaWorld/DreamPointNav-v0"`` (and ``gym.make_vec`` for the
native batched :class:`DreamVectorEnv`). ``reset(seed=..., options=...)`` starts a stream from

- a GT scene (default: a held-out scene; its first frame is rendered and anchors the dream),
- ``options={"image": uint8 (H, W, 3)}``: the given picture (centre-cropped, resized),
- ``options={"prompt": "a room with ..."}``: a picture from the zoo's text-to-image model,

while the GT scene (``options={"scene": SceneSpec}`` or ``{"scene_seed": n}`` picks it) still supplies the
collision geometry and the task. Every option is checked before the env changes: a bad one raises and the
episode goes on as it was. With ``paired=True`` every step also reports ``info["psnr"]``, ``info["ssim"]`` (dream vs the GT
frame at the same pose), ``info["gt_rgb"]`` and ``info["gt_depth"]``; for image and prompt starts those compare against a
scene the dream never saw.

The same seed gives the same frames. The dream's noise is counter-based (:mod:`sana_world.counter_noise`):
each env draws a key at its reset and its noise is a function of that key and its stream's frame count
alone, so env i of a :class:`DreamVectorEnv` reset with seed s dreams what a single env reset with seed s + i dreams (up to
the batch's float round-off), whenever the other envs reset; in the default next-step autoreset mode only
until env i's own first autoreset (its restart step dreams one extra frame, see :class:`DreamVectorEnv`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from sana_world.envs.dream_core import DreamConfig, DreamCore, fit_image
from sana_world.envs.gt import GT_OPTIONS, build_obs, make_config, start_scene
from sana_world.envs.spaces import action_space, observation_space, validate_actions
from sana_world.envs.vector import (
    check_autoreset_mode, end_step, episode_rngs, init_vector_env, step_outcome, to_output, vector_info,
    vector_scenes, with_masks,
)

__all__ = ["DreamEnv", "DreamVectorEnv", "make_dream_config", "make_dream_vector_env"]

_DREAM_KEYS = {f.name for f in dataclasses.fields(DreamConfig)} - {"gt"}
_START_KEYS = {"image", "prompt", "scene", "scene_seed"}


def make_dream_config(task: str, **kwargs: Any) -> DreamConfig:
    """A :class:`DreamConfig` from flat keyword arguments (dream options, then GT-twin options)."""
    unknown = sorted(set(kwargs) - _DREAM_KEYS - GT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown Dream env option(s) {unknown}; dream options: {sorted(_DREAM_KEYS)}; "
                        f"GT-twin options: {sorted(GT_OPTIONS)}")  # fmt: skip
    dream = {k: kwargs.pop(k) for k in list(kwargs) if k in _DREAM_KEYS}
    kwargs.setdefault("split", "heldout")
    if "width" not in kwargs and "height" not in kwargs:  # frames of the size the model dreams
        from sana_world.zoo import entry

        size = entry(dream.get("model", DreamConfig.model), verify=False).resolution
        kwargs.update(width=size, height=size)
    return DreamConfig(**dream, gt=make_config(task, **kwargs))


def _check_start(options: dict[str, Any] | None, size: int) -> dict[str, Any]:
    """One env's start options, checked (an image is fitted to ``size`` here, so a bad one raises before the
    env changes)."""
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"reset options must be a dict such as {{'image': ...}} or {{'prompt': ...}}, got "
                         f"{type(options).__name__}")  # fmt: skip
    options = dict(options or {})
    unknown = sorted(set(options) - _START_KEYS)
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; use {sorted(_START_KEYS)}")
    if "image" in options and "prompt" in options:
        raise ValueError("give options['image'] or options['prompt'], not both")
    if "image" in options:
        options["image"] = fit_image(options["image"], size)
    if "prompt" in options and not isinstance(options["prompt"], str):
        raise ValueError(f"options['prompt'] must be a str, got {type(options['prompt']).__name__}")
    return options


def _vector_starts(options: dict[str, Any] | None, n: int, size: int) -> list[dict[str, Any]]:
    """Per-env starts of a vector reset: one image / prompt for every env, or a batch (N, H, W, 3) of images
    / a list of N prompts, one per env."""
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"DreamVectorEnv.reset options must be a dict (e.g. {{'image': (N, H, W, 3) uint8}} or "
                         f"{{'prompt': [N strings]}} for one start per env), got {type(options).__name__}")
    options = dict(options or {})
    options.pop("scene_seed", None)  # the caller reads it (vector_scenes)
    if "scene" in options:
        raise ValueError("DreamVectorEnv.reset takes no scene; options['scene_seed'] = [N ints] picks each env's")
    per_env: list[dict[str, Any]] = [{} for _ in range(n)]
    for key in ("image", "prompt"):  # 1. a batch (one per env) or one value for all
        value = options.pop(key, None)
        if value is None:
            continue
        batch = isinstance(value, (list, tuple)) or (key == "image" and np.ndim(value) == 4)
        if batch and len(value) != n:
            raise ValueError(f"options[{key!r}] has {len(value)} entries for {n} envs")
        for i in range(n):
            per_env[i][key] = value[i] if batch else value
    if options:
        raise ValueError(f"unknown reset option(s) {sorted(options)}; use ['image', 'prompt', 'scene_seed']")
    return [_check_start(s, size) for s in per_env]


def _paired_info(core: DreamCore, index: list[int] | slice) -> dict[str, torch.Tensor]:
    from sana_world.metrics import psnr, ssim

    gt = core.gt.rgb[index]
    return {"psnr": psnr(core.rgb[index], gt), "ssim": ssim(core.rgb[index], gt), "gt_rgb": gt,
            "gt_depth": core.gt.depth[index]}


class DreamEnv(gym.Env):
    """One camera; see the module doc. Keyword options: ``model``, ``sampler_steps``, ``paired``, and every
    GT-twin option (``action_mode``, ``limits``, ``device``, ``renderer``, ``split``, ...)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}

    def __init__(self, task: str = "explore", render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.config = make_dream_config(task, **kwargs)
        self.cfg = self.config.gt
        self.render_mode = render_mode
        self.action_space = action_space(self.cfg.action_mode)
        self.observation_space = observation_space(task, self.cfg.height, self.cfg.width, False, self.cfg.max_depth)
        self.core = DreamCore(self.config, 1)
        self._started = False
        self._success = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        start = _check_start(options, self.cfg.width)  # 1. bad options raise here; the env goes on as it was
        spec = start_scene(start, self.cfg)
        start = {k: v for k, v in start.items() if k in ("image", "prompt")}
        super().reset(seed=seed)
        self._started = False  # 2. a reset that fails part-way leaves an env that asks for a new reset
        self.core.reset([0], [self.np_random], [start], [spec])
        self._started, self._success = True, False
        return self._obs(), self._info(collided=False)

    def step(self, action):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        twist = validate_actions(action, self.cfg.action_mode, None)[None].to(self.core.device)  # (1, 6)
        collided, reward, success = self.core.step(twist, keys_mode=self.cfg.action_mode == "keys")
        self._success = bool(success[0])
        return self._obs(), float(reward[0]), self._success, False, self._info(collided=bool(collided[0]))

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if not self._started:
            raise RuntimeError("call reset() before render()")
        return self.core.rgb[0].cpu().numpy()

    def close(self) -> None:
        self._started = False

    def _obs(self):
        obs = build_obs(self.core.world, self.core.frame(), self.cfg)
        if isinstance(obs, torch.Tensor):
            return obs[0].cpu().numpy()
        return {k: v[0].cpu().numpy() for k, v in obs.items()}

    def _info(self, collided: bool) -> dict[str, Any]:
        world = self.core.world
        info: dict[str, Any] = {"c2w": world.c2w32()[0].cpu().numpy().copy(), "K": world.K.cpu().numpy().copy(),
                                "collision": collided, "success": self._success,
                                "scene_id": world.specs[0].seed, "start": self.core.starts[0],
                                "dream_frame": self.core.state.frames[0]}
        if self.config.paired:
            info.update({k: v[0].cpu().numpy() if v.ndim > 1 else float(v[0])
                         for k, v in _paired_info(self.core, [0]).items()})
        return info


class DreamVectorEnv(VectorEnv):
    """``num_envs`` Dream envs in one batch on any device; ``return_torch=True`` keeps observations and infos
    as tensors on the device. ``autoreset_mode``: next-step (default) or same-step
    (:func:`~sana_world.envs.vector.check_autoreset_mode`); autoresets start from GT scenes of the split.

    A same-step autoreset returns the new episode's GT anchor frame, as ``reset()`` does. A next-step
    restart step cannot: the one batched pass of that step also steps the restarted streams, so their
    observation is the dream of the start pose (the camera stands still), one frame into the stream."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, task: str = "explore", max_episode_steps: int | None = None,
                 render_mode: str | None = None, return_torch: bool = False,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **kwargs: Any) -> None:
        mode = check_autoreset_mode(autoreset_mode)  # before the models load
        self.config = make_dream_config(task, **kwargs)
        self.cfg = self.config.gt
        self.core = DreamCore(self.config, num_envs)
        init_vector_env(self, task, num_envs, max_episode_steps, render_mode, return_torch, False, self.core.device,
                        mode)
        self._started = False

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """All envs restart. ``options`` apply to this reset only (autoresets start from GT scenes of the
        split; ``info["start"]`` says which start each env has): ``{"image": ...}`` / ``{"prompt": ...}``
        for every env, or a batch (N, H, W, 3) / a list of N prompts, one per env; ``{"scene_seed": [N ints]}``
        picks each env's GT scene (e.g. held-out scenes for a batched evaluation)."""
        starts = _vector_starts(options, self.num_envs, self.cfg.width)  # bad options raise before any change
        seeds = options.get("scene_seed") if isinstance(options, dict) else None
        scenes = vector_scenes(seeds, self.num_envs, self.cfg.world) or [None] * self.num_envs
        rngs = episode_rngs(seed, self.num_envs, self._rngs)
        self._started = False  # a reset that fails part-way leaves an env that asks for a new reset
        self._rngs = rngs
        self.core.reset(list(range(self.num_envs)), self._rngs, starts, scenes)
        self._steps.zero_()
        self._needs_reset.zero_()
        self._started = True
        zero = torch.zeros(self.num_envs, dtype=torch.bool, device=self.core.device)
        return self._out(build_obs(self.core.world, self.core.frame(), self.cfg)), self._info(zero, zero)

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        twist = validate_actions(actions, self.cfg.action_mode, self.num_envs).to(self.core.device)
        restart = self._needs_reset.clone()
        if bool(restart.any()):  # 1. finished envs restart (their action is ignored)
            slots = restart.nonzero().flatten().tolist()
            self.core.reset(slots, [self._rngs[i] for i in slots], [{}] * len(slots))
            twist = torch.where(restart[:, None], torch.zeros_like(twist), twist)
        # 2. move, dream, score on the GT world
        collided, reward, success = self.core.step(twist, keys_mode=self.cfg.action_mode == "keys")
        world = self.core.world
        self._steps = torch.where(restart, 0, self._steps + 1)  # a restart step is no step of the new episode
        reward, terminated, truncated = step_outcome(restart, reward, success, self._steps, self.max_episode_steps)
        obs = self._out(build_obs(world, self.core.frame(), self.cfg))
        info = self._info(success & ~restart, collided & ~restart)
        # 3. the autoreset: the finished envs restart now (same-step) or at the next step
        obs, info = end_step(self, world, obs, info, terminated | truncated, success, collided, self._restart_now)
        return obs, self._out(reward), self._out(terminated), self._out(truncated), info

    def _restart_now(self, slots: list[int]) -> Any:
        """Restart envs ``slots`` from GT scenes of the split (a same-step autoreset); every env's frame."""
        self.core.reset(slots, [self._rngs[i] for i in slots], [{}] * len(slots))
        return self.core.frame()

    def render(self):
        if self.render_mode != "rgb_array" or not self._started:
            return None
        return self.core.rgb.cpu().numpy()

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False

    def _out(self, x):
        return to_output(x, self.return_torch)

    def _info(self, success: torch.Tensor, collided: torch.Tensor) -> dict[str, Any]:
        core = self.core
        info = vector_info(core.world, success, collided)
        info["dream_frame"] = torch.tensor(core.state.frames, device=core.device)
        if self.config.paired:
            info.update(_paired_info(core, slice(None)))
        out = {k: self._out(v) for k, v in info.items()}
        out["start"] = np.array(core.starts)  # (N,) "gt" | "image" | "prompt"
        return with_masks(out, self.num_envs, self.return_torch, core.device)


def make_dream_vector_env(num_envs: int = 1, **kwargs: Any) -> DreamVectorEnv:
    """Vector entry point used by ``gym.make_vec`` (``vectorization_mode="vector_entry_point"``)."""
    return DreamVectorEnv(num_envs=num_envs, **kwargs)
