"""Dream envs: GT twins' spaces, checkers pass, seeded determinism, paired metrics, starts, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sana_world  # noqa: F401  (registers the ids)

DREAM_IDS = ["SanaWorld/DreamRooms-v0", "SanaWorld/DreamPointNav-v0"]
TWINS = {"SanaWorld/DreamRooms-v0": "SanaWorld/Rooms-v0", "SanaWorld/DreamPointNav-v0": "SanaWorld/PointNav-v0"}


@pytest.mark.parametrize("env_id", DREAM_IDS)
def test_checkers_and_twin_spaces(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id)
    twin = gym.make(TWINS[env_id])
    assert env.observation_space == twin.observation_space and env.action_space == twin.action_space
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)


def test_nav_mode_dream_env() -> None:
    """action_mode="nav" reaches the dream env: its twin's Discrete(3) space, the checker passes, a turn left
    moves the dreamed camera as it moves the GT one (the paired GT frame follows the same pose)."""
    from gymnasium.utils.env_checker import check_env

    env = gym.make("SanaWorld/DreamPointNav-v0", action_mode="nav", paired=True)
    assert env.action_space == gym.make("SanaWorld/PointNav-v0", action_mode="nav").action_space
    check_env(env.unwrapped, skip_render_check=True)
    _, info0 = env.reset(seed=2)
    _, _, _, _, info = env.step(1)
    heading = [np.arctan2(i["c2w"][0, 2], i["c2w"][2, 2]) for i in (info0, info)]
    yaw = heading[1] - heading[0]
    assert abs((np.degrees(yaw) + 180) % 360 - 180) == pytest.approx(6.0, abs=1e-3)
    assert 5.0 < info["psnr"] < 100.0


def test_same_seed_same_frames_and_paired_info() -> None:
    a = gym.make("SanaWorld/DreamRooms-v0", paired=True)
    b = gym.make("SanaWorld/DreamRooms-v0", paired=True)
    oa, ia = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    assert np.array_equal(oa, ob) and ia["start"] == "gt" and ia["scene_id"] >= 1_000_000  # held-out
    acts = np.random.default_rng(0).uniform(-1, 1, (3, 6)).astype(np.float32)
    for act in acts:
        oa, ra, *_, ia = a.step(act)
        ob, rb, *_, ib = b.step(act)
        assert np.array_equal(oa, ob) and ra == rb
    assert 5.0 < ia["psnr"] < 100.0 and 0.0 < ia["ssim"] <= 1.0 and ia["gt_rgb"].shape == oa.shape
    assert ia["dream_frame"] == 4


def test_image_and_prompt_starts_and_bad_options() -> None:
    env = gym.make("SanaWorld/DreamRooms-v0")
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[:, :, 0] = 200
    obs, info = env.reset(seed=1, options={"image": image})
    assert info["start"] == "image" and abs(float(obs[..., 0].mean()) - 200) < 2
    obs, info = env.reset(seed=1, options={"prompt": "a room with red brick walls", "scene_seed": 1_000_003})
    assert info["start"] == "prompt" and info["scene_id"] == 1_000_003 and obs.std() > 5
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (128, 128, 3)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"picture": image})
    with pytest.raises(ValueError, match="not both"):
        env.reset(options={"image": image, "prompt": "x"})
    with pytest.raises(ValueError, match="uint8"):
        env.reset(options={"image": image.astype(np.float32)})
    with pytest.raises(ValueError, match="NaN|finite|nan"):
        env.step(np.full(6, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="depth"):
        gym.make("SanaWorld/DreamRooms-v0", depth=True)


def test_vector_env_steps_every_stream_in_one_batch_after_partial_resets() -> None:
    from sana_world.envs.dream import DreamVectorEnv

    env = DreamVectorEnv(num_envs=3, task="pointnav", max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (3, 128, 128, 3)
    acts = np.zeros((3, 6), dtype=np.float32)
    env.step(acts)
    env.core.reset([1], [np.random.default_rng(1)], [{}])  # env 1 restarts alone: its row starts anew
    env._steps[1] = 0
    assert env.core.state.frames == (2, 1, 2) and env.core.state.batch_size == 3
    obs, rew, term, trunc, _ = env.step(acts)  # one batched step, the rows at different frames
    assert env.core.state.frames == (3, 2, 3)
    assert obs["rgb"].shape == (3, 128, 128, 3) and trunc.tolist() == [True, False, True]
    assert all(float(o.std()) > 5 for o in obs["rgb"])  # a dreamed room in every env, not a blank
    env.reset(seed=0)
    assert env.core.state.frames == (1, 1, 1) and not env.core.state.committed.ragged


def test_ppo_runs_on_a_dream_env() -> None:
    from stable_baselines3 import PPO

    env = gym.make("SanaWorld/DreamPointNav-v0", max_episode_steps=16)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps >= 32


@pytest.mark.parametrize("bad", [dict(prompt_guidance=float("nan")), dict(prompt_guidance=-1.0),
                                 dict(prompt_steps=2.5), dict(sampler_steps=0), dict(prompt_guidance="3"),
                                 dict(context_sigma=1.5), dict(context_sigma=True), dict(window_frames=0),
                                 dict(window_frames=2.5)])
def test_dream_config_rejects_bad_sampler_settings_at_make(bad) -> None:
    from sana_world.envs.dream_core import DreamConfig

    with pytest.raises(ValueError, match="must be"):
        DreamConfig(**bad)


def test_frame_size_defaults_to_the_entrys_resolution(tmp_path) -> None:
    import json
    import shutil

    from sana_world.envs.dream import make_dream_config
    from sana_world.zoo import ZOO_ROOT

    assert make_dream_config("rooms").gt.width == 128
    entry = tmp_path / "small"
    shutil.copytree(ZOO_ROOT / "rooms-128", entry)
    manifest = json.loads((entry / "manifest.json").read_text())
    (entry / "manifest.json").write_text(json.dumps({**manifest, "resolution": 64}))
    cfg = make_dream_config("pointnav", model=str(entry))
    assert (cfg.gt.width, cfg.gt.height) == (64, 64)
    assert make_dream_config("pointnav", model=str(entry), width=96, height=96).gt.width == 96  # as asked


def test_dream_config_takes_numpy_numbers() -> None:
    from sana_world.envs.dream_core import DreamConfig
    from sana_world.generators.dreamer import DreamerConfig
    from sana_world.generators.image import ImagePipelineConfig

    cfg = DreamConfig(sampler_steps=np.int64(2), prompt_steps=np.int32(4), prompt_guidance=np.float32(4.5))
    assert (cfg.sampler_steps, cfg.prompt_steps, cfg.prompt_guidance) == (2, 4, 4.5)
    assert type(cfg.sampler_steps) is int and type(cfg.prompt_guidance) is float
    assert DreamerConfig(num_steps=np.int64(3)).num_steps == 3
    assert ImagePipelineConfig(num_steps=np.int64(5)).num_steps == 5


def test_same_seed_same_frames_on_every_reset() -> None:
    """The first reset starts the stream, later ones restart it: both must dream the same frames."""
    env = gym.make("SanaWorld/DreamRooms-v0")
    actions = [np.array([0.6, 0.0, 0.0, 0.3, 0.0, 0.0], dtype=np.float32)] * 3
    episodes = []
    for _ in range(3):
        frames = [env.reset(seed=3)[0]]
        frames += [env.step(a)[0] for a in actions]
        episodes.append(np.stack(frames))
    env.close()
    assert np.array_equal(episodes[0], episodes[1]) and np.array_equal(episodes[1], episodes[2])


def test_dream_same_step_autoreset_matches_next_step() -> None:
    """The Dream vector env's same-step autoreset: the same episode as a next-step env's, its last dreamed
    frame in final_obs, and the new episode's start (its GT anchor frame, as reset() gives) returned at
    once, in the scene the next-step env restarts in a step later."""
    from sana_world.envs.dream import DreamVectorEnv

    nxt = DreamVectorEnv(num_envs=2, task="pointnav", max_episode_steps=2)
    same = DreamVectorEnv(num_envs=2, task="pointnav", max_episode_steps=2, autoreset_mode="SameStep")
    nxt.reset(seed=1)
    same.reset(seed=1)
    acts = np.full((2, 6), 0.5, dtype=np.float32)
    for _ in range(2):
        on, *_ = nxt.step(acts)
        os_, _, _, trunc, info = same.step(acts)
    assert trunc.all() and info["_final_obs"].all()
    assert all(np.array_equal(info["final_obs"][i]["rgb"], on["rgb"][i]) for i in range(2))
    assert same.core.state.frames == (1, 1) and np.array_equal(os_["rgb"], same.core.gt.rgb.numpy())
    _, _, _, _, info_next = nxt.step(acts)  # the next-step env's reset step
    assert np.array_equal(info_next["scene_id"], info["scene_id"])
    assert not np.array_equal(info["final_info"]["scene_id"], info["scene_id"])


def _same(a, b) -> bool:
    """Equal observations: arrays, or dicts of arrays (PointNav's rgb + goal)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


@pytest.mark.parametrize("task", ["explore", "pointnav", "objectnav"])
def test_unpaired_steps_render_only_what_the_task_reads_and_change_nothing_an_agent_sees(task: str) -> None:
    """An unpaired Dream env renders no GT frame at its steps, only the pixels its task's score reads
    (BatchedTask.view: explore every 4th pixel's hit, objectnav the centre window; PointNav none, its task reads
    positions only); observations, rewards and successes equal a paired env's, and resets still anchor on the
    full GT frame, also a partial one."""
    from sana_world.envs.dream import DreamVectorEnv

    envs = [DreamVectorEnv(num_envs=2, task=task, renderer="torch", max_episode_steps=3, paired=p)
            for p in (False, True)]
    renders, views = [], []
    world = envs[0].core.world
    render, render_view = world.render, world.render_view
    world.render = lambda *args, **kw: renders.append(kw.get("rgb", True)) or render(*args, **kw)
    world.render_view = lambda view: views.append(view.shape) or render_view(view)
    outs = [e.reset(seed=4)[0] for e in envs]
    assert _same(outs[0], outs[1])
    acts = np.random.default_rng(0).uniform(-1, 1, (5, 2, 6)).astype(np.float32)  # through an autoreset
    rewards = []
    for t, a in enumerate(acts):
        (o0, r0, d0, tr0, _), (o1, r1, d1, tr1, info) = envs[0].step(a), envs[1].step(a)
        assert _same(o0, o1) and np.array_equal(r0, r1), t
        assert np.array_equal(d0, d1) and np.array_equal(tr0, tr1), t
        rewards.append(r0)
    if task != "objectnav":  # (no target comes into view here: test_world's view tests cover its scores)
        assert len(np.unique(np.concatenate(rewards))) > 2  # the rewards compared are not all the step penalty
    # the reset and the autoreset render in full, the steps only the task's view
    assert renders == [True, True]
    want = {"explore": [(32, 32)] * len(acts), "objectnav": [(64, 64)] * len(acts), "pointnav": []}[task]
    assert views == want
    assert not np.array_equal(envs[0].core.gt.rgb.numpy(), info["gt_rgb"])  # the last full render, stale
    for e in envs:  # a partial reset renders its env's anchor in full onto the other (unshadowed) rows
        e.core.reset([1], [np.random.default_rng(7)], [{}])
    assert np.array_equal(envs[0].core.rgb[1].numpy(), envs[1].core.rgb[1].numpy())
    assert np.array_equal(envs[0].core.gt.rgb[1].numpy(), envs[1].core.gt.rgb[1].numpy())
    (o0, r0, *_), (o1, r1, *_) = envs[0].step(acts[0]), envs[1].step(acts[0])
    assert _same(o0, o1) and np.array_equal(r0, r1)


def test_dream_vector_env_i_dreams_what_a_single_env_of_seed_s_plus_i_dreams() -> None:
    """Each env's noise is a function of its own key and step count (sana_world.counter_noise): env i of a
    Dream vector env reset with seed s dreams what a single Dream env reset with seed s + i dreams, up to the
    batch's float round-off; when env 1 restarts alone, env 0 does not notice and env 1 dreams what a fresh
    single core restarted from the same generator dreams."""
    import torch

    from sana_world.envs.dream import DreamVectorEnv
    from sana_world.envs.dream_core import DreamCore
    from sana_world.envs.spaces import validate_actions

    def close(a, b, where) -> None:
        diff = np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))
        assert diff.max() <= 12 and diff.mean() < 0.5, (where, diff.max(), diff.mean())

    venv = DreamVectorEnv(num_envs=2, task="explore", max_episode_steps=50)
    vobs, _ = venv.reset(seed=3)
    acts = np.random.default_rng(0).uniform(-1, 1, (4, 2, 6)).astype(np.float32)
    vtraj = [vobs]
    for t, a in enumerate(acts):
        if t == 2:  # env 1 restarts alone (as an autoreset does)
            venv.core.reset([1], [np.random.default_rng(99)], [{}])
            anchor = venv.core.rgb[1].numpy().copy()
        vtraj.append(venv.step(a)[0])
    for i in range(2):
        env = gym.make("SanaWorld/DreamRooms-v0", max_episode_steps=50)
        obs, _ = env.reset(seed=3 + i)
        assert np.array_equal(obs, vtraj[0][i])  # the GT anchor
        for t, a in enumerate(acts if i == 0 else acts[:2]):
            close(env.step(a[i])[0], vtraj[t + 1][i], (i, t))
    core = DreamCore(venv.core.config, 1)
    core.reset([0], [np.random.default_rng(99)], [{}])
    assert np.array_equal(core.rgb[0].numpy(), anchor)
    for t in (2, 3):
        core.step(validate_actions(acts[t][1:], "twist", 1).to(core.device), keys_mode=False)
        close(core.rgb[0].numpy(), vtraj[t + 1][1], ("restarted", t))
    assert not torch.equal(venv.core.noise_keys[0], venv.core.noise_keys[1])


def test_dream_options_reach_the_dreamer() -> None:
    """context_sigma / window_frames override the zoo entry's dream defaults; None keeps them."""
    from sana_world.envs.dream import DreamEnv

    plain = DreamEnv()
    assert plain.unwrapped.core.dreamer.config.context_sigma == plain.unwrapped.core.models.entry.dream_defaults[
        "context_sigma"]
    env = DreamEnv(context_sigma=0.5, window_frames=4)
    cfg = env.unwrapped.core.dreamer.config
    assert (cfg.context_sigma, cfg.window_frames, cfg.fused) == (0.5, 4, False)
    assert env.unwrapped.core.dreamer.engine.config.causal.window_frames == 4
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (128, 128, 3)
    from sana_world.nn.fp8 import FP8Linear

    low = DreamEnv(fp8=True).unwrapped.core.dreamer  # Sol-RL-style FP8 rollouts, on a copy of the model
    assert low.config.fp8 and any(isinstance(m, FP8Linear) for m in low.model.modules())
    assert not any(isinstance(m, FP8Linear) for m in low.models.world_model.modules())


def test_gt_frames_are_rendered_as_the_entrys_models_saw_them(tmp_path) -> None:
    """The GT frames (start, paired) take the zoo entry's frames.supersample unless the env is given one, and
    a start frame is the GT twin's frame at that supersampling."""
    import json
    import shutil

    from sana_world.envs.dream import DreamEnv
    from sana_world.zoo import ZOO_ROOT, entry

    shipped = entry("rooms-128", verify=False).supersample
    assert DreamEnv().unwrapped.core.world.cfg.supersample == shipped
    folder = tmp_path / "ss3"
    shutil.copytree(ZOO_ROOT / "rooms-128", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "frames": {"supersample": 3}}))
    assert DreamEnv(model=str(folder)).unwrapped.core.world.cfg.supersample == 3
    env = DreamEnv(model=str(folder), supersample=2, paired=True)
    assert env.unwrapped.core.world.cfg.supersample == 2
    twin = gym.make("SanaWorld/Rooms-v0", split="heldout", supersample=2)
    obs, _ = env.reset(seed=3)
    assert np.array_equal(obs, twin.reset(seed=3)[0])
    act = np.zeros(6, dtype=np.float32)
    act[0] = 0.5
    *_, info = env.step(act)
    assert np.array_equal(info["gt_rgb"], twin.step(act)[0])
    with pytest.raises(ValueError, match="supersample"):
        DreamEnv(supersample=0)
