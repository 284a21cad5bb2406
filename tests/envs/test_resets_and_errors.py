"""Resets that must change nothing when they fail, autoresets that must not touch the other envs, the reset
view that must not be rewarded, per-env vector starts, Gymnasium's vector-info masks, and errors that name
the option to fix."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import sana_world  # noqa: F401  (registers the ids)
from sana_world.envs.dream import DreamVectorEnv
from sana_world.envs.vector import GTVectorEnv

SMALL = dict(width=32, height=32)


def test_a_bad_dream_reset_changes_nothing() -> None:
    """A reset with a bad image raises before any change: the episode goes on exactly as in an env that was
    never asked (same frames, rewards, scene and frame count)."""
    a = gym.make("SanaWorld/DreamRooms-v0", paired=True)
    b = gym.make("SanaWorld/DreamRooms-v0", paired=True)
    a.reset(seed=0)
    b.reset(seed=0)
    acts = np.random.default_rng(0).uniform(-1, 1, (4, 6)).astype(np.float32)
    for act in acts[:2]:
        a.step(act)
        b.step(act)
    bad = {"float32": np.zeros((128, 128, 3), np.float32), "NoneType": None,
           "convert": np.zeros((64, 64), np.uint8), "shape": np.zeros((8, 8, 3, 2), np.uint8)}  # fmt: skip
    for match, image in bad.items():  # 1. each bad image raises, saying what to fix
        with pytest.raises(ValueError, match=match):
            a.reset(seed=7, options={"image": image})
    with pytest.raises(ValueError, match="scene_seed"):
        a.reset(seed=7, options={"scene_seed": -1})
    for act in acts[2:]:  # 2. the episode goes on untouched
        oa, ra, *_, ia = a.step(act)
        ob, rb, *_, ib = b.step(act)
        assert np.array_equal(oa, ob) and ra == rb
        assert (ia["scene_id"], ia["dream_frame"]) == (ib["scene_id"], ib["dream_frame"])
    assert ia["dream_frame"] == 5


def test_an_autoreset_leaves_the_other_envs_frames_alone() -> None:
    """Env 1 ending its episode early (as on success) changes no frame of env 0 beyond round-off: a partial
    reset does not reseed the sampler noise the envs share."""
    runs = []
    for restart in (False, True):
        env = DreamVectorEnv(num_envs=2)
        env.reset(seed=0)
        frames = []
        for t in range(4):  # 1. the same actions; in the second run env 1 restarts before step 1
            if restart and t == 1:
                env._needs_reset[1] = True  # what a terminated episode leaves
            obs, *_ = env.step(np.zeros((2, 6), np.float32))
            frames.append(obs[0].astype(np.int16))
        runs.append(frames)
        if restart:
            assert env.core.state.frames == (5, 4)  # env 1: its anchor, then 3 steps
    worst = max(int(np.abs(x - y).max()) for x, y in zip(*runs))
    assert worst <= 3, worst


@pytest.mark.parametrize("env_id", ["SanaWorld/Rooms-v0", "SanaWorld/ObjectNav-v0"])
def test_the_reset_view_is_not_rewarded(env_id: str) -> None:
    """Standing still after a reset finds nothing new: the step costs the step penalty only, in the single
    env, after the vector env's reset and after its autoresets alike."""
    env = gym.make(env_id, **SMALL)
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(6, np.float32))
    assert reward == pytest.approx(-0.01)
    venv = GTVectorEnv(num_envs=2, task=env.unwrapped.cfg.task, max_episode_steps=2, **SMALL)
    venv.reset(seed=0)
    steps = [venv.step(np.zeros((2, 6), np.float32)) for _ in range(6)]
    # steps 1, 2 (truncated), the restart step, 1, 2 (truncated), the restart step: every episode has 2 steps
    assert np.allclose(np.stack([s[1] for s in steps]), [[-0.01] * 2, [-0.01] * 2, [0.0] * 2] * 2)
    assert [bool(s[3].all()) for s in steps] == [False, True, False] * 2


def test_vector_starts_per_env_and_infos() -> None:
    env = DreamVectorEnv(num_envs=2)
    images = np.zeros((2, 64, 80, 3), np.uint8)
    images[0, ..., 0] = 200  # env 0 red, env 1 blue
    images[1, ..., 2] = 200
    obs, info = env.reset(seed=0, options={"image": images})
    assert obs[0, ..., 0].mean() > 190 and obs[1, ..., 2].mean() > 190 and obs[0, ..., 2].mean() < 10
    assert info["start"].tolist() == ["image", "image"] and info["dream_frame"].tolist() == [1, 1]
    assert info["K"].shape == (2, 3, 3) and info["c2w"].shape == (2, 4, 4)
    assert all(info[f"_{k}"].tolist() == [True, True] for k in ("start", "K", "c2w", "success", "scene_id"))
    _, _, _, _, info = env.step(np.zeros((2, 6), np.float32))
    assert info["dream_frame"].tolist() == [2, 2] and info["_collision"].all()
    with pytest.raises(ValueError, match="must be a dict"):
        env.reset(options=[{"image": images[0]}, {}])
    with pytest.raises(ValueError, match="3 entries for 2 envs"):
        env.reset(options={"prompt": ["a", "b", "c"]})
    _, info = env.reset(seed=np.int64(3))  # numpy integers are seeds too
    assert info["start"].tolist() == ["gt", "gt"]
    env.close()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((2, 6), np.float32))


def test_dream_env_takes_a_scene_and_refuses_steps_after_close() -> None:
    from sana_world.worlds.sampler import WorldConfig, sample_scene

    env = gym.make("SanaWorld/DreamRooms-v0")
    spec = sample_scene(1_000_017, WorldConfig())
    _, info = env.reset(seed=0, options={"scene": spec})
    assert info["scene_id"] == 1_000_017
    env.close()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6, np.float32))


@pytest.mark.parametrize("env_id, kwargs, exc, match", [
    ("SanaWorld/DreamRooms-v0", dict(widht=64), TypeError, r"dream options: .*sampler_steps"),
    ("SanaWorld/Rooms-v0", dict(fov_deg=0), ValueError, "fov_deg"),
    ("SanaWorld/Rooms-v0", dict(width="64"), TypeError, "width must be an int"),
    ("SanaWorld/Rooms-v0", dict(device="foo"), ValueError, "device must be a torch device"),
])  # fmt: skip
def test_bad_env_options_name_themselves(env_id: str, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        gym.make(env_id, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_says_so() -> None:
    with pytest.raises(ValueError, match="no CUDA"):
        gym.make("SanaWorld/Rooms-v0", device="cuda")


def test_bad_scene_seeds_name_the_option() -> None:
    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    for seed in (-1, "abc", 1.5):
        with pytest.raises(ValueError, match=r"options\['scene_seed'\]"):
            env.reset(options={"scene_seed": seed})


def test_non_numeric_actions_say_what_an_action_is() -> None:
    env = gym.make("SanaWorld/Rooms-v0", **SMALL)
    env.reset(seed=0)
    for bad in ("forward", None, [1, "a"]):
        with pytest.raises(ValueError, match="action must be numeric"):
            env.step(bad)
    env.step(np.zeros(6, np.float32))  # the env goes on
