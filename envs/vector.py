"""A natively batched GT ``VectorEnv``: N cameras in N scenes, stepped and rendered as one batch on any device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sana_world.envs.gt import build_obs, make_config
from sana_world.envs.spaces import action_space, observation_space, validate_actions
from sana_world.envs.world import GTWorld
from sana_world.render.base import RenderOutput
from sana_world.worlds import SceneSpec, sample_scene


class GTVectorEnv(VectorEnv):
    """``num_envs`` GT environments in one batch.

    Observations and infos are numpy arrays by default; ``return_torch=True`` keeps them as tensors on
    ``device`` so a GPU training loop never copies frames to the host. The infos are the single GT env's,
    batched: ``c2w``, ``K``, ``collision``, ``success``, ``scene_id`` and the GT ``depth`` (N, H, W).
    ``autoreset_mode``: Gymnasium's next-step autoreset (default) or ``AutoresetMode.SAME_STEP``
    (:func:`check_autoreset_mode`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, task: str = "explore", max_episode_steps: int | None = None,
                 render_mode: str | None = None, return_torch: bool = False,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **kwargs: Any) -> None:
        mode = check_autoreset_mode(autoreset_mode)  # before any work
        self.cfg = make_config(task, **kwargs)
        self.world = GTWorld(self.cfg, num_envs)
        init_vector_env(self, task, num_envs, max_episode_steps, render_mode, return_torch, self.cfg.depth,
                        self.world.device, mode)
        self._frame = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """All envs anew; ``options={"scene_seed": [N ints]}`` picks each env's scene (e.g. held-out scenes
        for a batched evaluation); autoresets draw scenes from the split as before."""
        options = dict(options or {})
        scenes = vector_scenes(options.pop("scene_seed", None), self.num_envs, self.cfg.world)
        if options:
            raise ValueError(f"unknown GTVectorEnv.reset option(s) {sorted(options)}; use ['scene_seed']")
        rngs = episode_rngs(seed, self.num_envs, self._rngs)
        self._frame = None  # a reset that fails part-way leaves an env that asks for a new reset
        self._rngs = rngs
        self.world.reset_slots(list(range(self.num_envs)), self._rngs, scenes)
        self._steps.zero_()
        self._needs_reset.zero_()
        frame = self.world.render()
        self.world.observe_start(list(range(self.num_envs)), frame)
        self._frame = frame
        success = torch.zeros(self.num_envs, dtype=torch.bool, device=self.world.device)
        return self._out(build_obs(self.world, self._frame, self.cfg)), self._info(success, success)

    def step(self, actions):
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        twist = validate_actions(actions, self.cfg.action_mode, self.num_envs).to(self.world.device)
        # 1. envs that finished last step restart now; their action is ignored (next-step autoreset)
        restart = self._needs_reset.clone()
        if bool(restart.any()):
            slots = restart.nonzero().flatten().tolist()
            self.world.reset_slots(slots, [self._rngs[i] for i in slots])
            twist = torch.where(restart[:, None], torch.zeros_like(twist), twist)
        # 2. move, render, score
        collided = self.world.move(twist, keys_mode=self.cfg.action_mode == "keys")
        self._frame = self.world.render()
        reward, success = self.world.score(self._frame, collided)
        self._steps = torch.where(restart, 0, self._steps + 1)  # a restart step is no step of the new episode
        # 3. restarted envs report a reset transition
        reward, terminated, truncated = step_outcome(restart, reward, success, self._steps, self.max_episode_steps)
        obs = self._out(build_obs(self.world, self._frame, self.cfg))
        info = self._info(success & ~restart, collided & ~restart)
        # 4. the autoreset: the finished envs restart now (same-step) or at the next step
        obs, info = end_step(self, self.world, obs, info, terminated | truncated, success, collided,
                             self._restart_now)
        return obs, self._out(reward), self._out(terminated), self._out(truncated), info

    def _restart_now(self, slots: list[int]) -> RenderOutput:
        """Restart envs ``slots`` (a same-step autoreset); every env's frame after it."""
        self.world.reset_slots(slots, [self._rngs[i] for i in slots])
        self._frame = self.world.render(slots, onto=self._frame)  # only the restarted envs move
        self.world.observe_start(slots, self._frame)
        return self._frame

    def render(self):
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.rgb.cpu().numpy()

    def close_extras(self, **kwargs: Any) -> None:
        self._frame = None

    # ---------------------------------------------------------------------------------------------------
    def _out(self, x):
        return to_output(x, self.return_torch)

    def _info(self, success: torch.Tensor, collided: torch.Tensor) -> dict[str, Any]:
        # the single GT env's keys, batched: its depth (N, H, W) too (metres; inf where no surface)
        info = {k: self._out(v) for k, v in (vector_info(self.world, success, collided)
                                             | {"depth": self._frame.depth}).items()}
        return with_masks(info, self.num_envs, self.return_torch, self.world.device)


def check_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """The native vector envs' autoreset modes: ``NEXT_STEP`` (Gymnasium's default: the step after the one
    that ends an episode restarts the env and ignores its action) or ``SAME_STEP`` (what SB3 expects: the
    ending step already returns the new episode's observation; the last one is in ``info["final_obs"]`` (an
    (N,) object array, None for envs that go on) and that step's infos in ``info["final_info"]``, masked
    by ``info["_final_obs"]`` / ``info["_final_info"]``). An ``AutoresetMode`` or its value ("NextStep",
    "SameStep")."""
    allowed = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
    try:
        checked = AutoresetMode(mode)
    except ValueError:
        checked = None
    if checked not in allowed:
        raise ValueError(f"autoreset_mode must be one of {[m.value for m in allowed]} (gymnasium.vector."
                         f"AutoresetMode), got {mode!r}")
    return checked


def end_step(env: VectorEnv, world: GTWorld, obs: Any, info: dict[str, Any], done: torch.Tensor,
             success: torch.Tensor, collided: torch.Tensor,
             restart: Callable[[list[int]], RenderOutput]) -> tuple[Any, dict[str, Any]]:
    """The end of a native vector env's step (GT or Dream), after ``obs`` / ``info`` of every env: in
    next-step mode the ``done`` envs are marked to restart at the next step; in same-step mode they restart
    now (``restart(slots)`` returns every env's frame after it) and the step returns their new first
    observations, the last ones and their infos kept in ``final_obs`` / ``final_info``
    (:func:`same_step_finals`)."""
    if env.autoreset_mode is AutoresetMode.NEXT_STEP:
        env._needs_reset = done
        return obs, info
    if not bool(done.any()):
        return obs, info
    final = same_step_finals(obs, info, done, env.return_torch)
    frame = restart(done.nonzero().flatten().tolist())
    env._steps = torch.where(done, 0, env._steps)
    return env._out(build_obs(world, frame, env.cfg)), env._info(success & ~done, collided & ~done) | final


def same_step_finals(obs: Any, info: dict[str, Any], done: torch.Tensor, return_torch: bool) -> dict[str, Any]:
    """The entries a same-step autoreset adds to a step's info: ``final_obs`` (N,) object array holding each
    finished env's last observation (a copy; None for the others), ``final_info`` (the step's batched info,
    its masks saying which envs finished) and their masks ``_final_obs`` / ``_final_info`` (N,) bool."""
    mask = done if return_torch else done.cpu().numpy()
    final_obs = np.full(done.shape[0], None, dtype=object)
    for i in done.nonzero().flatten().tolist():
        final_obs[i] = ({k: v[i].clone() if return_torch else v[i].copy() for k, v in obs.items()}
                        if isinstance(obs, dict) else (obs[i].clone() if return_torch else obs[i].copy()))
    final_info = {k: v for k, v in info.items() if not k.startswith("_")}
    final_info |= {f"_{k}": mask for k in list(final_info)}
    return {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info, "_final_info": mask}


def vector_scenes(seeds: Any, n: int, world: Any) -> list[SceneSpec] | None:
    """The scenes of a vector reset's ``scene_seed`` option: one seed per env (a list of ``n`` ints), or
    None (each env's scene drawn from the split)."""
    if seeds is None:
        return None
    if isinstance(seeds, (int, np.integer)) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"options['scene_seed'] must be a list of {n} non-negative ints, one per env, "
                         f"got {seeds!r:.80}")
    if len(seeds) != n:
        raise ValueError(f"options['scene_seed'] has {len(seeds)} seeds for {n} envs")
    return [sample_scene(int(s), world) for s in seeds]


def to_output(x: torch.Tensor | dict[str, torch.Tensor], return_torch: bool):
    """A vector env's tensors (or a dict of them) as returned: as they are, or as numpy arrays on the host."""
    if return_torch:
        return x
    if isinstance(x, dict):
        return {k: v.cpu().numpy() for k, v in x.items()}
    return x.cpu().numpy()


def vector_info(world: GTWorld, success: torch.Tensor, collided: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-env infos both native vector envs report (the single envs' keys, batched): c2w (N, 4, 4) and
    K (N, 3, 3) float32, collision and success (N,) bool, scene_id (N,) int64 (-1: none)."""
    return {"c2w": world.c2w().to(torch.float32), "K": world.K.expand(world.n, 3, 3).clone(),
            "collision": collided, "success": success,
            "scene_id": torch.tensor([s.seed if s.seed is not None else -1 for s in world.specs],
                                     device=world.device)}  # fmt: skip


def with_masks(info: dict[str, Any], num_envs: int, return_torch: bool, device: torch.device) -> dict[str, Any]:
    """``info`` with Gymnasium's vector-info masks: ``info["_key"]`` (N,) bool says which envs report
    ``info[key]`` (every env reports every key here)."""
    ones = torch.ones(num_envs, dtype=torch.bool, device=device) if return_torch else np.ones(num_envs, bool)
    return info | {f"_{k}": ones for k in info if not k.startswith("_")}


def init_vector_env(env: VectorEnv, task: str, num_envs: int, max_episode_steps: int | None,
                    render_mode: str | None, return_torch: bool, depth: bool, device: torch.device,
                    autoreset_mode: AutoresetMode) -> None:
    """What both native vector envs (GT and Dream) set up alike: the checked render mode, the autoreset mode
    (also in the instance's ``metadata``), the single and batched spaces of ``env.cfg`` (a ``GTConfig``),
    and the per-env step counters and reset flags on ``device``."""
    if render_mode is not None and render_mode not in env.metadata["render_modes"]:
        raise ValueError(f"render_mode must be one of {env.metadata['render_modes']} or None, got {render_mode!r}")
    cfg = env.cfg
    env.num_envs, env.render_mode, env.return_torch = num_envs, render_mode, return_torch
    env.autoreset_mode = autoreset_mode
    env.metadata = {**type(env).metadata, "autoreset_mode": autoreset_mode}
    env.max_episode_steps = max_episode_steps
    env.single_action_space = action_space(cfg.action_mode)
    env.single_observation_space = observation_space(task, cfg.height, cfg.width, depth, cfg.max_depth)
    env.action_space = batch_space(env.single_action_space, num_envs)
    env.observation_space = batch_space(env.single_observation_space, num_envs)
    env._steps = torch.zeros(num_envs, dtype=torch.long, device=device)
    env._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=device)
    env._rngs = []


def episode_rngs(seed: int | list[int] | None, num_envs: int,
                 current: list[np.random.Generator] | None = None) -> list[np.random.Generator]:
    """One generator per env: ``seed + i`` for an int, the given list (one per env); with no seed, the
    ``current`` ones go on (as Gymnasium's envs keep their ``np_random``: a run seeded once replays, however
    often it resets), or fresh entropy before the first seed."""
    if seed is None and current and len(current) == num_envs:
        return current
    if seed is None:
        seeds: list[int | None] = [None] * num_envs
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seeds = [int(seed) + i for i in range(num_envs)]
    elif isinstance(seed, (list, tuple, np.ndarray)):
        if len(seed) != num_envs:
            raise ValueError(f"need {num_envs} seeds, got {len(seed)}")
        seeds = [None if s is None else int(s) for s in seed]
    else:
        raise ValueError(f"seed must be an int, a list of {num_envs} ints or None, got {type(seed).__name__}")
    return [np.random.default_rng(s) for s in seeds]


def step_outcome(restart: torch.Tensor, reward: torch.Tensor, success: torch.Tensor, steps: torch.Tensor,
                 max_episode_steps: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reward, terminated, truncated) of a next-step-autoreset batch: envs restarted this step report a
    reset transition (no reward, neither terminated nor truncated)."""
    zero = torch.zeros_like(success)
    reward = torch.where(restart, torch.zeros_like(reward), reward)
    terminated = torch.where(restart, zero, success)
    truncated = zero if max_episode_steps is None else (steps >= max_episode_steps) & ~restart
    return reward, terminated, truncated


def make_vector_env(num_envs: int = 1, **kwargs: Any) -> GTVectorEnv:
    """Vector entry point used by ``gym.make_vec`` (``vectorization_mode="vector_entry_point"``)."""
    return GTVectorEnv(num_envs=num_envs, **kwargs)

