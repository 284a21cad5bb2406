import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import sana_world  # noqa: F401
from sana_world.envs.registration import GT_ENVS

SMALL = dict(width=32, height=32)


@pytest.mark.parametrize("env_id", list(GT_ENVS))
def test_make_vec_uses_native_vector_env(env_id):
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **SMALL)
    from sana_world.envs.vector import GTVectorEnv

    assert isinstance(envs.unwrapped, GTVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    for _ in range(3):
        obs, rew, term, trunc, info = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs)
        assert rew.shape == (3,) and term.dtype == bool and info["c2w"].shape == (3, 4, 4)
    envs.close()


def test_vector_env_matches_single_env():
    """Env i of the batch with seed s+i sees what a single env reset with seed s+i sees."""
    envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=2, vectorization_mode="vector_entry_point", **SMALL)
    vobs, _ = envs.reset(seed=10)
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 2, 6)).astype(np.float32)
    vtraj = [vobs]
    for a in actions:
        vtraj.append(envs.step(a)[0])
    for i in range(2):
        env = gym.make("SanaWorld/Rooms-v0", **SMALL)
        obs, _ = env.reset(seed=10 + i)
        assert np.array_equal(obs, vtraj[0][i])
        for t, a in enumerate(actions):
            obs, *_ = env.step(a[i])
            assert np.array_equal(obs, vtraj[t + 1][i]), (i, t)


def test_next_step_autoreset_after_truncation():
    envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        max_episode_steps=3, **SMALL)
    envs.reset(seed=0)
    zero = np.zeros((2, 6), np.float32)
    for _ in range(2):
        _, _, term, trunc, _ = envs.step(zero)
        assert not trunc.any()
    _, _, term, trunc, info = envs.step(zero)
    assert trunc.all()
    scenes_before = info["scene_id"].copy()
    _, rew, term, trunc, info = envs.step(zero)  # the reset step
    assert (rew == 0).all() and not trunc.any() and not term.any()
    assert (info["scene_id"] != scenes_before).any()


def test_vector_bad_actions_raise():
    envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=2, vectorization_mode="vector_entry_point", **SMALL)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        envs.step(np.zeros((3, 6), np.float32))
    a = np.zeros((2, 6), np.float32)
    a[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        envs.step(a)


def test_nav_mode_vector_env_matches_single_env():
    """action_mode="nav" batched: MultiDiscrete-free (N,) integer actions, the same frames as single envs."""
    envs = gym.make_vec("SanaWorld/PointNav-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        action_mode="nav", **SMALL)
    assert envs.single_action_space == gym.spaces.Discrete(3)
    vobs, _ = envs.reset(seed=3)
    actions = np.array([[0, 1], [2, 0], [0, 0]])
    vtraj = [vobs["rgb"]] + [envs.step(a)[0]["rgb"] for a in actions]
    for i in range(2):
        env = gym.make("SanaWorld/PointNav-v0", action_mode="nav", **SMALL)
        obs, _ = env.reset(seed=3 + i)
        assert np.array_equal(obs["rgb"], vtraj[0][i])
        for t, a in enumerate(actions):
            obs, *_ = env.step(int(a[i]))
            assert np.array_equal(obs["rgb"], vtraj[t + 1][i]), (i, t)
    with pytest.raises(ValueError, match="shape"):
        envs.step(np.array([0, 1, 2]))


@pytest.mark.parametrize("dream", [False, True])
def test_vector_reset_picks_each_envs_scene(dream: bool) -> None:
    """options={"scene_seed": [N ints]}: env i starts in the scene of seed i, as a single env given that seed."""
    from sana_world.worlds import WorldConfig, sample_scene

    env_id = "SanaWorld/DreamPointNav-v0" if dream else "SanaWorld/PointNav-v0"
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    seeds = [1_000_003, 1_000_011]
    envs.reset(seed=0, options={"scene_seed": seeds})
    world = envs.unwrapped.core.world if dream else envs.unwrapped.world
    assert [s.seed for s in world.specs] == [sample_scene(s, WorldConfig()).seed for s in seeds]
    for bad in (5, [1, 2, 3], [1, -1], [1, "2"]):
        with pytest.raises(ValueError, match=r"options\['scene_seed'\]"):
            envs.reset(seed=0, options={"scene_seed": bad})
    envs.close()
