import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import sana_world  # noqa: F401  (registers the ids)
from sana_world.envs.registration import GT_ENVS
from sana_world.render.base import area_average

IDS = list(GT_ENVS)
SMALL = dict(width=48, height=48)


def _obs_equal(a, b):
    if isinstance(a, dict):
        return all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array", **SMALL)
    gym_check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(env_id, width=64, height=64)
    sb3_checker.check_env(env.unwrapped, warn=True)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_observations(env_id):
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(12, 6)).astype(np.float32)
    runs = []
    for _ in range(2):
        env = gym.make(env_id, **SMALL)
        obs, info = env.reset(seed=123)
        traj = [obs]
        for a in actions:
            obs, *_ = env.step(a)
            traj.append(obs)
        runs.append(traj)
        env.close()
    assert all(_obs_equal(a, b) for a, b in zip(*runs))
    env = gym.make(env_id, **SMALL)
    other, _ = env.reset(seed=124)
    assert not _obs_equal(other, runs[0][0])


def test_info_and_spaces():
    env = gym.make("SanaWorld/PointNav-v0", depth=True, **SMALL)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"rgb", "depth", "goal"}
    assert obs["rgb"].dtype == np.uint8 and obs["rgb"].shape == (48, 48, 3)
    assert obs["depth"].shape == (48, 48, 1) and obs["depth"].dtype == np.float32
    assert info["c2w"].shape == (4, 4) and info["K"].shape == (3, 3)
    assert {"collision", "success", "scene_id"} <= set(info)
    assert env.metadata["render_fps"] > 0
    # the goal vector's distance matches the pose
    assert obs["goal"][3] >= 0


def test_bad_actions_raise_and_leave_state_unchanged():
    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    env.reset(seed=1)
    before = env.unwrapped.world.c2w().clone()
    for bad in (np.array([np.nan, 0, 0, 0, 0, 0], np.float32), np.array([0, np.inf, 0, 0, 0, 0], np.float32)):
        with pytest.raises(ValueError, match="NaN|inf"):
            env.step(bad)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5, np.float32))
    assert np.array_equal(before.numpy(), env.unwrapped.world.c2w().numpy())
    # out-of-range actions are clipped: 5x forward moves exactly as far as 1x
    env.reset(seed=1)
    p0 = env.unwrapped.world.position.clone()
    env.step(np.array([5, 0, 0, 0, 0, 0], np.float32))
    d5 = (env.unwrapped.world.position - p0).norm()
    env.reset(seed=1)
    env.step(np.array([1, 0, 0, 0, 0, 0], np.float32))
    d1 = (env.unwrapped.world.position - p0).norm()
    assert float(d5) == pytest.approx(float(d1))


def test_unknown_options_raise():
    with pytest.raises(TypeError, match="unknown env option"):
        gym.make("SanaWorld/Rooms-v0", widht=64)
    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"scen": 3})


def test_camera_cannot_enter_walls():
    from sana_world.worlds.collision import SceneSDF

    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    env.reset(seed=2)
    sdf = SceneSDF(env.unwrapped.scene)
    collided = 0
    for _ in range(150):  # drive straight ahead into whatever is there
        _, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0, 0], np.float32))
        pos = info["c2w"][:3, 3]
        assert sdf.distance(pos[None].astype(np.float64))[0] > env.unwrapped.cfg.clearance - 1e-5
        collided += info["collision"]
    assert collided > 0


def test_keys_mode_follows_dsl_speeds():
    env = gym.make("SanaWorld/Rooms-v0", action_mode="keys", **SMALL)
    assert isinstance(env.action_space, gym.spaces.MultiBinary) and env.action_space.n == 8
    env.reset(seed=0, options={"scene_seed": 5})
    p0 = env.unwrapped.world.position.clone()
    yaw0 = float(env.unwrapped.world.angles[0, 0])
    w = np.array([1, 0, 0, 0, 0, 0, 0, 0], np.int8)
    _, _, _, _, info = env.step(w)
    if not info["collision"]:
        assert float((env.unwrapped.world.position - p0).norm()) == pytest.approx(0.05)
    j = np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int8)  # yaw left 1.2 degrees
    env.step(j)
    assert float(env.unwrapped.world.angles[0, 0]) - yaw0 == pytest.approx(np.radians(1.2))
    with pytest.raises(ValueError, match="0/1"):
        env.step(np.array([2, 0, 0, 0, 0, 0, 0, 0]))


def test_nav_mode_moves_a_level_camera():
    """Discrete(3): forward one limits.forward along the heading, turns of limits.yaw_deg, never a pitch or a
    roll; every kind of bad action raises and leaves the camera where it was."""
    env = gym.make("SanaWorld/PointNav-v0", action_mode="nav", **SMALL)
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 3
    gym_check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0, options={"scene_seed": 5})
    world = env.unwrapped.world
    p0, a0 = world.position.clone(), world.angles.clone()
    _, _, _, _, info = env.step(np.int64(0))  # forward
    if not info["collision"]:
        step = (world.position - p0)[0]
        assert float(step.norm()) == pytest.approx(0.10)
        assert float(step[1]) == pytest.approx(0.0, abs=1e-9)  # level (y is vertical): no height change
    env.step(1)  # turn left
    assert float(world.angles[0, 0] - a0[0, 0]) == pytest.approx(np.radians(6.0))
    env.step(np.array([2]))  # turn right, as a length-1 array
    assert torch.allclose(world.angles, a0)  # yaw back, pitch and roll never touched
    before = (world.position.clone(), world.angles.clone())
    for bad in (3, -1, 1.5, np.array([0, 1]), True):
        with pytest.raises(ValueError, match="nav|shape"):
            env.step(bad)
    assert torch.equal(world.position, before[0]) and torch.equal(world.angles, before[1])


def test_scene_option_uses_given_spec():
    from sana_world.worlds import sample_scene

    spec = sample_scene(77)
    env = gym.make("SanaWorld/ObjectNav-v0", **SMALL)
    _, info = env.reset(seed=0, options={"scene": spec})
    assert info["scene_id"] == 77 and env.unwrapped.scene == spec


def test_keys_mode_reproduces_the_dsl_trajectory():
    """Stepping the env with keys moves the camera exactly as diffusers-compatible DSL poses say."""
    from sana_world.controllers import action_string_to_c2w
    from sana_world.controllers.keys import action_string_to_keys
    from sana_world.worlds import WorldConfig

    action = "w-10,jw-8,iw-6,l-5,dk-4,kj-3"
    expected = action_string_to_c2w(action)  # (F+1, 4, 4) from identity
    env = gym.make("SanaWorld/Rooms-v0", action_mode="keys",
                   world=WorldConfig(layout="single", objects_per_room=(0, 0)), **SMALL)
    _, info = env.reset(seed=3)
    start_inv = np.linalg.inv(info["c2w"].astype(np.float64))
    for t, keys in enumerate(action_string_to_keys(action)):
        _, _, _, _, info = env.step(keys)
        assert not info["collision"]
        rel = start_inv @ info["c2w"].astype(np.float64)
        np.testing.assert_allclose(rel, expected[t + 1], atol=2e-5)


def test_pose_matches_camera_geometry():
    """The env's closed-form c2w equals camera.euler_to_rotation of its heading angles."""
    import torch

    from sana_world.camera import euler_to_rotation

    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    env.reset(seed=4)
    for a in np.random.default_rng(0).uniform(-1, 1, (5, 6)).astype(np.float32):
        _, _, _, _, info = env.step(a)
    w = env.unwrapped.world
    R = euler_to_rotation(*w.angles[0].unbind(-1))
    np.testing.assert_allclose(info["c2w"][:3, :3], R.numpy(), atol=1e-6)
    np.testing.assert_allclose(info["c2w"][:3, 3], w.position[0].numpy(), atol=1e-6)
    assert abs(float(w.angles[0, 2])) > 0  # roll was exercised


def test_torch_and_open3d_renderers_give_the_same_episode():
    """Both GT renderers see the same world along the same trajectory (the default on CPU is open3d)."""
    pytest.importorskip("open3d")
    actions = np.random.default_rng(2).uniform(-1, 1, (6, 6)).astype(np.float32)
    runs = {}
    for renderer in ("torch", "open3d"):
        env = gym.make("SanaWorld/ObjectNav-v0", renderer=renderer, depth=True, **SMALL)
        assert env.unwrapped.world.renderer_name == renderer
        obs, info = env.reset(seed=9)
        traj = [(obs, info)]
        for a in actions:
            obs, _, _, _, info = env.step(a)
            traj.append((obs, info))
        runs[renderer] = traj
    for (o1, i1), (o2, i2) in zip(runs["torch"], runs["open3d"]):
        np.testing.assert_allclose(i1["c2w"], i2["c2w"], atol=1e-6)
        d1, d2 = i1["depth"], i2["depth"]
        assert (np.abs(d1 - d2) <= 0.01 * d1).mean() >= 0.99
        assert np.abs(o1["rgb"].astype(int) - o2["rgb"].astype(int)).mean() < 3.0


@pytest.mark.parametrize("renderer", ["torch", "open3d"])
def test_supersampled_frames_are_the_box_filter_of_a_larger_render(renderer):
    """supersample=2: rgb is the 2x2 box filter of the same view rendered at twice the size (non-square too),
    depth and ids that render's ray (1, 1) of each block; the camera's path does not change."""
    if renderer == "open3d":
        pytest.importorskip("open3d")
    w, h = 40, 24
    actions = np.random.default_rng(5).uniform(-1, 1, (3, 6)).astype(np.float32)
    ss = gym.make("SanaWorld/Rooms-v0", width=w, height=h, supersample=2, depth=True, renderer=renderer)
    big = gym.make("SanaWorld/Rooms-v0", width=2 * w, height=2 * h, depth=True, renderer=renderer)
    (o1, i1), (o2, i2) = ss.reset(seed=6), big.reset(seed=6)
    first = o1["rgb"]
    for step in range(len(actions) + 1):
        box = area_average(torch.from_numpy(o2["rgb"]), (h, w)).numpy()
        assert o1["rgb"].shape == (h, w, 3) and np.array_equal(o1["rgb"], box)
        np.testing.assert_array_equal(o1["depth"], o2["depth"][1::2, 1::2])
        np.testing.assert_allclose(i1["c2w"], i2["c2w"], atol=1e-6)
        if step < len(actions):
            (o1, _, _, _, i1), (o2, _, _, _, i2) = ss.step(actions[step]), big.step(actions[step])
    plain = gym.make("SanaWorld/Rooms-v0", width=w, height=h, renderer=renderer).reset(seed=6)[0]  # (h, w, 3)
    assert 0 < np.abs(plain.astype(int) - first.astype(int)).mean() < 12  # antialiased, the same view


@pytest.mark.parametrize("bad", [0, 9, 1.5, True])
def test_bad_supersample_raises(bad):
    with pytest.raises(ValueError, match="supersample"):
        gym.make("SanaWorld/Rooms-v0", supersample=bad)
