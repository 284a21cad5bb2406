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
    vobs, vinfo = envs.reset(seed=10)
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 2, 6)).astype(np.float32)
    vtraj, vinfos = [vobs], [vinfo]
    for a in actions:
        obs, *_, info = envs.step(a)
        vtraj.append(obs)
        vinfos.append(info)
    for i in range(2):
        env = gym.make("SanaWorld/Rooms-v0", **SMALL)
        obs, info = env.reset(seed=10 + i)
        assert np.array_equal(obs, vtraj[0][i]) and np.array_equal(info["depth"], vinfos[0]["depth"][i])
        for t, a in enumerate(actions):
            obs, *_, info = env.step(a[i])
            assert np.array_equal(obs, vtraj[t + 1][i]), (i, t)
            for key in ("depth", "c2w", "scene_id", "collision", "success"):  # the same infos, batched
                assert np.array_equal(info[key], vinfos[t + 1][key][i]), (i, t, key)


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


def _pair(env_id: str, n: int, steps: int, **kwargs):
    """The same vector env twice, next-step and same-step autoreset, reset with one seed."""
    make = lambda mode: gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",  # noqa: E731
                                     max_episode_steps=steps, autoreset_mode=mode, **kwargs)
    return make(AutoresetMode.NEXT_STEP), make("SameStep")


def test_same_step_autoreset_is_next_step_without_the_reset_step():
    """Same seed: a same-step env returns at an episode's end what a next-step env returns one step later
    (the new episode's first observation), keeps the last one in final_obs / final_info, and goes on
    exactly as the next-step env after its reset step."""
    nxt, same = _pair("SanaWorld/PointNav-v0", 3, 3, **SMALL)
    assert same.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    nxt.reset(seed=4)
    same.reset(seed=4)
    rng = np.random.default_rng(0)
    for t in range(3):  # 1. the first episode: the same steps
        a = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
        on, rn, tn, trn, infn = nxt.step(a)
        os_, rs, ts, trs, infs = same.step(a)
        assert np.array_equal(rn, rs) and np.array_equal(tn, ts) and np.array_equal(trn, trs)
    assert trs.all() and infs["_final_obs"].all() and infs["_final_info"].all()
    for i in range(3):  # 2. the last observation and info went aside; the new episode's is returned
        assert np.array_equal(infs["final_obs"][i]["rgb"], on["rgb"][i])
        assert np.array_equal(infs["final_obs"][i]["goal"], on["goal"][i])
    assert np.array_equal(infs["final_info"]["scene_id"], infn["scene_id"])
    assert np.array_equal(infs["final_info"]["c2w"], infn["c2w"])
    on, rn, tn, trn, infn = nxt.step(np.zeros((3, 6), np.float32))  # the next-step env's reset step
    assert np.array_equal(on["rgb"], os_["rgb"]) and np.array_equal(on["goal"], os_["goal"])
    assert np.array_equal(infn["scene_id"], infs["scene_id"]) and not infs["success"].any()
    for _ in range(2):  # 3. and both go on alike
        a = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
        on, rn, *_ = nxt.step(a)
        os_, rs, _, _, infs = same.step(a)
        assert np.array_equal(on["rgb"], os_["rgb"]) and np.array_equal(rn, rs)
        assert "final_obs" not in infs


def test_same_step_autoreset_final_obs_only_for_finished_envs():
    envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        max_episode_steps=2, autoreset_mode=AutoresetMode.SAME_STEP, **SMALL)
    envs.reset(seed=0)
    envs.step(np.zeros((2, 6), np.float32))
    envs.unwrapped._steps[1] = 0  # env 1 is a step behind: it ends one step later
    obs, _, _, trunc, info = envs.step(np.zeros((2, 6), np.float32))
    assert trunc.tolist() == [True, False]
    assert info["_final_obs"].tolist() == [True, False] and info["final_obs"][1] is None
    assert info["final_obs"][0].shape == (32, 32, 3) and info["final_info"]["_scene_id"].tolist() == [True, False]


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, "sometimes", None])
def test_unsupported_autoreset_modes_are_refused(mode):
    from sana_world.envs.vector import GTVectorEnv

    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        GTVectorEnv(num_envs=2, autoreset_mode=mode, **SMALL)


def test_cpu_vector_env_keeps_every_scene_of_its_batch_cached():
    """The open3d renderer caches one RaycastingScene per scene; a batch larger than its cache rebuilt every
    scene every frame (32x slower: benchmarks/results/cpu_vector_env_cpu2_20261207.json)."""
    pytest.importorskip("open3d")
    envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=6, vectorization_mode="vector_entry_point",
                        renderer="open3d", **SMALL)
    envs.reset(seed=0)
    world = envs.unwrapped.world
    entries = [world.renderer._lookup(spec) for spec in world.specs]
    assert all(e is not None for e in entries)
    envs.step(np.zeros((6, 6), np.float32))
    assert [world.renderer._lookup(spec) for spec in world.specs] == entries  # the same scenes, not rebuilt


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["twist", "keys", "nav"])
def test_cuda_vector_env_takes_actions_on_its_device(mode: str) -> None:
    """Actions already on the env's CUDA device (a GPU policy's output) step it exactly as the same actions
    from numpy do (nav actions once indexed a CPU table with a CUDA index and failed)."""
    import torch

    kw = dict(SMALL, device="cuda", renderer="torch", action_mode=mode)
    acts = {"twist": np.full((2, 6), 0.5, np.float32), "keys": np.eye(2, 8, dtype=np.int64),
            "nav": np.array([0, 1])}[mode]
    frames = []
    for on_device in (False, True):
        envs = gym.make_vec("SanaWorld/Rooms-v0", num_envs=2, vectorization_mode="vector_entry_point", **kw)
        envs.reset(seed=0)
        obs, *_ = envs.step(torch.as_tensor(acts, device="cuda") if on_device else acts)
        frames.append(torch.as_tensor(obs).cpu().numpy())
    assert np.array_equal(frames[0], frames[1])
