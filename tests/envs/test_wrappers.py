"""DownsampleRGB: the area average of the env's own frames, valid spaces, clear errors."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sana_world  # noqa: F401
from sana_world.envs.wrappers import DownsampleRGB


def test_downsampled_frames_are_the_area_average():
    big = gym.make("SanaWorld/PointNav-v0", width=64, height=64)
    env = DownsampleRGB(gym.make("SanaWorld/PointNav-v0", width=64, height=64), 32)
    obs_big, _ = big.reset(seed=5)
    obs, _ = env.reset(seed=5)
    assert obs["rgb"].shape == (32, 32, 3) and obs["rgb"].dtype == np.uint8
    want = obs_big["rgb"].astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(obs["rgb"].astype(np.float64) - want).max() <= 0.5
    np.testing.assert_array_equal(obs["goal"], obs_big["goal"])
    a = np.full(6, 0.3, np.float32)
    (o_big, *_), (o, *_) = big.step(a), env.step(a)
    want = o_big["rgb"].astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(o["rgb"].astype(np.float64) - want).max() <= 0.5
    assert env.observation_space.contains(o)
    check_env(env, skip_render_check=True)  # the wrapped env: spaces and observations agree


def test_box_observations_and_bad_sizes():
    env = DownsampleRGB(gym.make("SanaWorld/Rooms-v0", width=64, height=64), 16)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 16, 3) and env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="divide"):
        DownsampleRGB(gym.make("SanaWorld/Rooms-v0", width=64, height=64), 48)


def test_downsample_shrinks_depth_with_the_frames() -> None:
    from sana_world.envs.wrappers import DownsampleRGB

    env = DownsampleRGB(gym.make("SanaWorld/PointNav-v0", width=64, height=64, depth=True), 32)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (32, 32, 3) and obs["depth"].shape == (32, 32, 1)
    assert env.observation_space.contains(obs)
    raw, _ = env.env.reset(seed=0)  # the same episode, full size
    nearest = raw["depth"][..., 0].reshape(32, 2, 32, 2).min(axis=(1, 3))
    np.testing.assert_array_equal(obs["depth"][..., 0], nearest)
    env.close()
