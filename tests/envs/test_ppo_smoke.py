"""PPO from stable-baselines3 runs on every GT env id (a few hundred steps, tiny images)."""

import gymnasium as gym
import numpy as np
import pytest

import sana_world  # noqa: F401
from sana_world.envs.registration import GT_ENVS

sb3 = pytest.importorskip("stable_baselines3")


@pytest.mark.parametrize("env_id", list(GT_ENVS))
def test_ppo_learns_a_few_hundred_steps(env_id):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs=dict(width=40, height=40))
    policy = "MultiInputPolicy" if isinstance(venv.observation_space, gym.spaces.Dict) else "CnnPolicy"
    model = PPO(policy, venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2, 6) and np.isfinite(action).all()
    venv.close()
