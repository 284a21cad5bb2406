"""The native batched vector envs (GT and Dream) as a stable-baselines3 ``VecEnv``.

SB3 trains on a ``VecEnv``; sana-world's vector envs step every env as one batch on any device (one render
or one world-model pass for all). :func:`make_sb3_vec_env` builds one in same-step autoreset mode (what SB3
expects) and wraps it, so PPO collects rollouts from a batch of GT envs or of dreams on a GPU:

    venv = VecMonitor(make_sb3_vec_env("SanaWorld/DreamRooms-v0", 64, obs_size=64, device="cuda"))
    PPO("CnnPolicy", venv).learn(200_000)

Frames can be area-averaged on the device to ``obs_size`` (as :class:`~sana_world.envs.wrappers.DownsampleRGB`
does for one env), so a policy trained on 64² frames learns from a 128² dream. Infos are SB3's: one dict
per env, with ``terminal_observation``, ``TimeLimit.truncated`` and ``is_success`` when an episode ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from sana_world.envs.wrappers import area_average

__all__ = ["SB3VecEnv", "make_sb3_vec_env", "area_average"]


class SB3VecEnv(VecEnv):
    """A native sana-world vector env (same-step autoreset, ``return_torch=True``) seen as an SB3 ``VecEnv``;
    ``obs_size`` area-averages square frames to that side on the env's device (None: as rendered).

    Infos keep the native env's keys except the per-pixel ones (``PIXEL_INFOS``: the GT ``depth``), which
    SB3 never reads and which would cost a host copy of the whole batch's maps every step; ``pixel_infos=True``
    keeps them (each env's its own copy)."""

    PIXEL_INFOS = ("depth",)

    def __init__(self, venv: Any, obs_size: int | None = None, pixel_infos: bool = False) -> None:
        if getattr(venv, "autoreset_mode", None) is not AutoresetMode.SAME_STEP or not venv.return_torch:
            raise ValueError("SB3VecEnv needs a native vector env made with autoreset_mode=AutoresetMode.SAME_STEP "
                             "and return_torch=True (make_sb3_vec_env builds one)")
        space = venv.single_observation_space
        self._dict = isinstance(space, spaces.Dict)
        rgb = space["rgb"] if self._dict else space
        side = rgb.shape[0]
        if obs_size is not None and (obs_size < 1 or side % obs_size or rgb.shape[1] != side):
            raise ValueError(f"obs_size {obs_size} must divide the square frame side, got frames of "
                             f"{rgb.shape[0]}x{rgb.shape[1]}")
        if self._dict and "depth" in space.spaces and obs_size not in (None, side):
            raise ValueError("obs_size with depth observations is not supported: make the env with depth=False")
        self.venv, self.obs_size = venv, obs_size if obs_size != side else None
        self.pixel_infos = pixel_infos
        if self.obs_size is not None:
            small = spaces.Box(0, 255, (obs_size, obs_size, 3), np.uint8)
            space = spaces.Dict({**space.spaces, "rgb": small}) if self._dict else small
        super().__init__(venv.num_envs, space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    # 1. Observations: device tensors -> (resized) host arrays.
    def _host(self, obs: Any) -> Any:
        def frames(x: torch.Tensor) -> np.ndarray:
            return (area_average(x, self.obs_size) if self.obs_size is not None else x).cpu().numpy()

        if self._dict:
            return {k: frames(v) if k == "rgb" else v.cpu().numpy() for k, v in obs.items()}
        return frames(obs)

    def _single(self, batch: Any, i: int) -> Any:
        return {k: v[i] for k, v in batch.items()} if self._dict else batch[i]

    def reset(self) -> Any:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options else {}
        if any(o != options for o in self._options):
            raise ValueError("a native vector env resets every env with one options dict; got different options "
                             "per env (pass options={'scene_seed': [N ints]} to pick each env's scene)")
        obs, info = self.venv.reset(seed=seeds, options=options or None)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._env_infos(info)
        return self._host(obs)

    # 2. Steps.
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_async before step_wait")
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        self._actions = None
        done = (terminated | truncated).cpu().numpy()
        terminated, truncated = terminated.cpu().numpy(), truncated.cpu().numpy()
        infos = self._env_infos(info)
        ended = np.flatnonzero(done).tolist()
        if ended:
            final = self._env_infos(info["final_info"])
            rows = [info["final_obs"][i] for i in ended]  # each a copy of an ended env's last observation
            last = self._host({k: torch.stack([r[k] for r in rows]) for k in rows[0]} if self._dict else
                              torch.stack(rows))
            for j, i in enumerate(ended):  # the ending step's info, SB3's keys added
                self.reset_infos[i] = infos[i]  # the new episode's start, as DummyVecEnv keeps it
                infos[i] = final[i]
                infos[i]["terminal_observation"] = self._single(last, j)
                if "success" in infos[i]:
                    infos[i]["is_success"] = bool(infos[i]["success"])
        for i in range(self.num_envs):  # every step, as SB3's DummyVecEnv does
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return self._host(obs), reward.cpu().numpy().astype(np.float32), done, infos

    def _env_infos(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """A batched info as one dict per env (the masks and the final_* entries left out); each entry comes
        to the host once for the whole batch."""
        skip = ("_", "final_") + (() if self.pixel_infos else self.PIXEL_INFOS)
        host = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                for k, v in info.items() if not k.startswith(skip)}
        scalars = {k for k, v in host.items() if v.ndim == 1}
        return [{k: v[i].item() if k in scalars and v.dtype != object else
                 v[i].copy() if k in self.PIXEL_INFOS else v[i] for k, v in host.items()}  # no view keeps N maps
                for i in range(self.num_envs)]

    # 3. The rest of SB3's VecEnv interface: one native env holds every env.
    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> list[np.ndarray | None]:
        frames = self.venv.render()
        return [None] * self.num_envs if frames is None else list(frames)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError("a native vector env shares its attributes: set them for every env (indices=None)")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list:
        raise NotImplementedError(f"SB3VecEnv.env_method({method_name!r}): a native vector env has no per-env "
                                  "env objects; call the method on .venv, which batches every env")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_sb3_vec_env(env_id: str, num_envs: int, obs_size: int | None = None, device: str = "cpu",
                     pixel_infos: bool = False, **env_kwargs: Any) -> SB3VecEnv:
    """``gym.make_vec(env_id)``'s native vector env (GT or Dream) on ``device``, same-step autoreset, tensors
    kept on the device, as an SB3 ``VecEnv`` whose frames are area-averaged to ``obs_size`` (its infos
    without per-pixel maps unless ``pixel_infos``: :class:`SB3VecEnv`)."""
    import gymnasium as gym

    import sana_world  # noqa: F401  (registers the ids)

    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, return_torch=True, device=device, **env_kwargs)
    return SB3VecEnv(venv.unwrapped, obs_size, pixel_infos)
