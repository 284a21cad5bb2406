"""The CPU env's numba / numpy bookkeeping against the torch reference path: bitwise equal states and outputs.

``GTWorld.numpy_steps`` and ``BatchedTask.numpy_steps`` switch the CPU path on; turning them off runs the
torch operations every other device uses, which serve as the reference here.
"""

import dataclasses

import numpy as np
import pytest
import torch

from sana_world.envs.gt import GTEnv
from sana_world.envs.tasks import TaskConfig
from sana_world.envs.vector import GTVectorEnv
from sana_world.envs.world import _sdf_one
from sana_world.render.fast_shading import available
from sana_world.worlds import WorldConfig
from sana_world.worlds.collision import PackedSDF
from sana_world.worlds.sampler import sample_scene

pytestmark = pytest.mark.skipif(not available(), reason="the CPU fast path needs numba")


def _actions(rng: np.random.Generator, n: int, keys: bool) -> np.ndarray:
    """Random actions with long full-speed runs, so cameras hit walls and pitch / roll reach their limits."""
    if keys:
        a = (rng.random((n, 8)) < 0.4).astype(np.int8)
        a[n // 4:] = (1, 0, 0, 0, 1, 0, 0, 0)  # then "w" + "i": forward into a wall, pitching to the limit
        return a
    a = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
    run = slice(n // 4, n)
    a[run, :4] = (1.0, 0.0, 0.0, 0.0)  # then straight ahead at full speed, into a wall
    a[run, 4:] = 1.0  # while pitching and rolling into the limits
    return a


def _reference(env_world) -> None:
    env_world.numpy_steps = False
    env_world.task.numpy_steps = False


def _assert_same(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, (np.ndarray, torch.Tensor)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), "arrays differ"
    else:
        assert a == b


@pytest.mark.parametrize("task,kwargs", [
    ("explore", {}),
    ("explore", {"action_mode": "keys"}),
    ("explore", {"clearance": 0.3, "task_cfg": TaskConfig(cell_size=0.3, grid_cells=100)}),
    ("pointnav", {"world": WorldConfig(layout="multi")}),
])
def test_single_env_matches_torch_path(task, kwargs):
    """Same seed, same actions: observations, rewards, infos, poses and coverage are bitwise equal."""
    fast, ref = (GTEnv(task, width=32, height=32, **kwargs) for _ in range(2))
    _reference(ref.world)
    assert fast.world.numpy_steps and not ref.world.numpy_steps
    keys = kwargs.get("action_mode") == "keys"
    collisions = 0
    for seed in (0, 7):
        _assert_same(fast.reset(seed=seed), ref.reset(seed=seed))
        for a in _actions(np.random.default_rng(seed), 200 if keys else 100, keys):
            out_fast, out_ref = fast.step(a), ref.step(a)
            _assert_same(out_fast, out_ref)
            collisions += out_fast[-1]["collision"]
            for name in ("position", "angles"):
                _assert_same(getattr(fast.world, name), getattr(ref.world, name))
            _assert_same(fast.world.c2w32(), ref.world.c2w32())
        _assert_same(fast.world.task.seen, ref.world.task.seen)
    assert collisions > 0  # the collision branch was exercised


def test_vector_env_matches_torch_path():
    fast, ref = (GTVectorEnv(num_envs=3, width=32, height=32, max_episode_steps=25) for _ in range(2))
    _reference(ref.world)
    _assert_same(fast.reset(seed=3), ref.reset(seed=3))
    rng = np.random.default_rng(3)
    for _ in range(40):  # crosses an autoreset
        a = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
        _assert_same(fast.step(a), ref.step(a))
        _assert_same(fast.world.position, ref.world.position)


def test_hit_points_match_baddbmm():
    """The hit-point kernel against ``torch.baddbmm`` on random poses and depths (misses included)."""
    env = GTEnv("explore", width=40, height=24)
    env.reset(seed=1)
    w = env.world
    rng = np.random.default_rng(1)
    for _ in range(20):
        w.angles = torch.from_numpy(rng.uniform(-1.5, 1.5, (1, 3)))
        w.position = torch.from_numpy(rng.uniform(-20, 20, (1, 3)))
        w._c2w = w._c2w32 = None
        depth = torch.from_numpy(rng.uniform(0.01, 30, (1, 24, 40)).astype(np.float32))
        depth[0, ::5, ::3] = float("inf")
        for stride in (1, 4):
            w.numpy_steps = True
            fast = w.hit_points(depth, stride)
            w.numpy_steps = False
            _assert_same(fast, w.hit_points(depth, stride))


def test_c2w_after_reset_matches_torch():
    env = GTEnv("explore", width=32, height=32)
    env.reset(seed=5)
    w = env.world
    for angles in ([0.3, -0.2, 0.1], [-3.1, 1.4, -0.7], [2.0, 0.0, 0.0]):
        w.angles = torch.tensor([angles], dtype=torch.float64)
        w._c2w = w._c2w32 = None
        fast = (w.c2w().clone(), w.c2w32().clone())
        w.numpy_steps, w._c2w, w._c2w32 = False, None, None
        _assert_same(fast, (w.c2w(), w.c2w32()))
        w.numpy_steps = True


def test_sdf_kernel_matches_numpy():
    """The env's numba signed distance against ``PackedSDF``'s numpy float32 maths, in and out of solids."""
    rng = np.random.default_rng(0)
    for seed in range(12):
        spec = sample_scene(seed, WorldConfig(layout="multi" if seed % 2 else "single"))
        sdf = PackedSDF([spec, spec])
        a = sdf._np
        (x0, _, z0), (x1, _, z1) = spec.bounds()
        p = np.stack([rng.uniform(x0 - 1, x1 + 1, (300, 2)), rng.uniform(-4, 1, (300, 2)),
                      rng.uniform(z0 - 1, z1 + 1, (300, 2))], axis=-1).astype(np.float32)  # (300, 2, 3)
        for batch in p:
            ref = sdf.distance_np(batch)
            for i, (x, y, z) in enumerate(batch):
                assert _sdf_one(x, y, z, i, a["boxes"], a["c"], a["s"], a["spheres"], a["cyl"]) == ref[i]


def test_config_is_unchanged_by_the_fast_path():
    env = GTEnv("explore", width=32, height=32)
    assert dataclasses.asdict(env.cfg) == dataclasses.asdict(GTEnv("explore", width=32, height=32).cfg)
    assert env.world.numpy_steps == (env.world.device.type == "cpu")
