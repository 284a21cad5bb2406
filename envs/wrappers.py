"""Observation wrappers for agents that see frames at another size than the env renders or dreams them.

A Dream env produces frames at its world model's resolution (128² for ``rooms-128``); an agent trained on
64² GT frames observes it through :class:`DownsampleRGB`, which area-averages the frames by an integer
factor (what a renderer supersampling each 64² pixel 2×2 would give):

    env = DownsampleRGB(gym.make("SanaWorld/DreamPointNav-v0"), 64)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from sana_world.render.base import area_average

__all__ = ["DownsampleRGB", "area_average"]


class DownsampleRGB(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Area-average the square uint8 RGB frames of an env (a Box observation, or a Dict's ``"rgb"``) to
    ``size`` × ``size``; ``size`` must divide the frame side. A Dict's ``"depth"`` (H, W, 1) shrinks with
    it (the nearest of each k × k block's hits: a block that sees a near edge reads near); other Dict keys
    pass through."""

    def __init__(self, env: gym.Env, size: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size)  # the env spec can rebuild it
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self._dict = isinstance(space, spaces.Dict)
        rgb = space["rgb"] if self._dict else space
        if not isinstance(rgb, spaces.Box) or rgb.dtype != np.uint8 or len(rgb.shape) != 3 or rgb.shape[2] != 3:
            raise ValueError(f"DownsampleRGB needs (H, W, 3) uint8 frames, got {rgb}")
        H, W = rgb.shape[:2]
        if H != W or size < 1 or H % size:
            raise ValueError(f"size {size} must divide the square frame side, got frames of {H}x{W}")
        self.size, self.factor = size, H // size
        small = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._depth = self._dict and "depth" in space.spaces
        extra = {}
        if self._depth:
            d = space["depth"]
            if tuple(d.shape) != (H, W, 1):
                raise ValueError(f"DownsampleRGB needs depth (H, W, 1) beside the frames, got {d.shape}")
            extra["depth"] = spaces.Box(d.low.min(), d.high.max(), (size, size, 1), d.dtype)
        self.observation_space = spaces.Dict({**space.spaces, "rgb": small, **extra}) if self._dict else small

    def _downsample(self, frame: np.ndarray) -> np.ndarray:
        return area_average(torch.from_numpy(np.ascontiguousarray(frame)), self.size).numpy()  # (s, s, 3)

    def observation(self, observation: Any) -> Any:
        if self._dict:
            out = {**observation, "rgb": self._downsample(observation["rgb"])}
            if self._depth:
                s, k = self.size, self.factor
                out["depth"] = observation["depth"].reshape(s, k, s, k, 1).min(axis=(1, 3))  # (s, s, 1)
            return out
        return self._downsample(observation)
