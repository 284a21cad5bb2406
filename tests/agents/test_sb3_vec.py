"""The native vector envs as an SB3 VecEnv: SB3's step contract (same-step resets, terminal observations,
infos), frames area-averaged on the device as DownsampleRGB does, and PPO training through ``ppo train
--vector`` on GT and in the dream."""

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

import sana_world  # noqa: E402,F401
from sana_world.agents.ppo import PPOTrainConfig, export_policy, load_policy, PolicyCard, train  # noqa: E402
from sana_world.agents.sb3_vec import SB3VecEnv, area_average, make_sb3_vec_env  # noqa: E402
from sana_world.envs.wrappers import DownsampleRGB  # noqa: E402


def test_steps_follow_sb3s_contract_and_the_single_envs():
    """Env i of the adapter (seed s + i) sees, steps and ends as a single env reset with seed s + i; an
    episode's end returns the new episode's first frame, the last one in terminal_observation."""
    venv = make_sb3_vec_env("SanaWorld/PointNav-v0", 2, width=32, height=32, max_episode_steps=3)
    venv.seed(7)
    obs = venv.reset()
    first = [info["scene_id"] for info in venv.reset_infos]
    assert set(obs) == {"rgb", "goal"} and obs["rgb"].shape == (2, 32, 32, 3)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 6)).astype(np.float32)
    steps = [venv.step(a) for a in actions]
    for i in range(2):
        env = gym.make("SanaWorld/PointNav-v0", width=32, height=32, max_episode_steps=3)
        single, _ = env.reset(seed=7 + i)
        assert np.array_equal(single["rgb"], obs["rgb"][i])
        for t, a in enumerate(actions):
            single, r, term, trunc, info = env.step(a[i])
            vobs, vr, vdone, vinfos = steps[t]
            assert vr.dtype == np.float32 and vr[i] == pytest.approx(r) and vdone[i] == (term or trunc)
        last = vinfos[i]["terminal_observation"]
        assert np.array_equal(last["rgb"], single["rgb"]) and np.array_equal(last["goal"], single["goal"])
        assert vinfos[i]["TimeLimit.truncated"] is True and vinfos[i]["is_success"] is False
        assert not np.array_equal(vobs["rgb"][i], single["rgb"])  # a new episode's first frame
        assert venv.reset_infos[i]["scene_id"] not in (vinfos[i]["scene_id"], first[i])  # its start info
    assert all("terminal_observation" not in info for info in steps[0][3])
    assert venv.reset_infos[0]["scene_id"] > 0 and venv.get_attr("num_envs") == [2, 2]
    assert all("depth" not in info for _, _, _, infos in steps for info in infos)  # no per-pixel infos
    venv.close()


def test_pixel_infos_on_request_are_each_envs_own_copy():
    venv = make_sb3_vec_env("SanaWorld/Rooms-v0", 2, width=32, height=32, pixel_infos=True)
    venv.seed(3)
    venv.reset()
    *_, infos = venv.step(np.zeros((2, 6), np.float32))
    env = gym.make("SanaWorld/Rooms-v0", width=32, height=32)
    env.reset(seed=4)
    *_, info = env.step(np.zeros(6, np.float32))
    assert np.array_equal(infos[1]["depth"], info["depth"]) and infos[1]["depth"].base is None
    venv.close()


def test_frames_are_area_averaged_as_downsample_rgb_does():
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    env = gym.make("SanaWorld/Rooms-v0", width=64, height=64)
    wrapper = DownsampleRGB(env, 16)
    for f in frames:
        ours, theirs = area_average(f[None], 16)[0].numpy().astype(int), wrapper.observation(f.numpy()).astype(int)
        assert np.abs(ours - theirs).max() <= 1 and (ours == theirs).mean() > 0.99
    venv = make_sb3_vec_env("SanaWorld/Rooms-v0", 2, obs_size=16, width=64, height=64)
    assert venv.observation_space.shape == (16, 16, 3) and venv.reset().shape == (2, 16, 16, 3)


def test_bad_setups_say_what_to_do():
    from sana_world.envs.vector import GTVectorEnv

    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(GTVectorEnv(num_envs=2, width=32, height=32, return_torch=True))
    with pytest.raises(ValueError, match="divide"):
        make_sb3_vec_env("SanaWorld/Rooms-v0", 2, obs_size=24, width=64, height=64)
    venv = make_sb3_vec_env("SanaWorld/Rooms-v0", 2, width=32, height=32)
    with pytest.raises(ValueError, match="every env"):
        venv.set_attr("max_episode_steps", 5, indices=[0])
    with pytest.raises(NotImplementedError, match=".venv"):
        venv.env_method("render")
    venv.set_options([{"scene_seed": [1, 2]}, {}])
    with pytest.raises(ValueError, match="one options dict"):
        venv.reset()
    with pytest.raises(ValueError, match="--vector"):
        PPOTrainConfig(device="cuda")


def test_ppo_trains_on_the_gt_vector_env_and_exports_a_cnn_policy(tmp_path):
    """``ppo train --vector`` on a bare-frame env (CnnPolicy); the export keeps the policy class and the
    reload acts as the trained model."""
    cfg = PPOTrainConfig(env_id="SanaWorld/Rooms-v0", size=36, num_envs=2, timesteps=32, n_steps=16, batch_size=16,
                         n_epochs=1, vector=True, out=tmp_path / "run", progress=False)
    model = train(cfg)
    assert model.num_timesteps >= 32 and type(model.policy).__name__ == "ActorCriticCnnPolicy"
    assert len(model.ep_info_buffer) == 0  # no episode has ended yet (500 steps)
    card = PolicyCard(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs(), timesteps=32, sha256="",
                      train={"policy": "CnnPolicy"})
    loaded = load_policy(export_policy(model, tmp_path / "policy", card))
    obs = np.random.default_rng(0).integers(0, 256, (4, 36, 36, 3), dtype=np.uint8)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_ppo_trains_in_the_dream_on_training_scenes(tmp_path):
    """A Dream env id trains through the native Dream vector env: frames area-averaged to ``size``, scenes
    from the training split, episodes counted by SB3's monitor."""
    cfg = PPOTrainConfig(env_id="SanaWorld/DreamPointNav-v0", size=64, num_envs=2, timesteps=8, n_steps=4,
                         batch_size=8, n_epochs=1, action_mode="nav", vector=True, out=tmp_path, progress=False)
    kwargs, obs_size = cfg.train_env_kwargs()
    assert kwargs == {"action_mode": "nav", "split": "train"} and obs_size == 64
    model = train(cfg)
    assert model.observation_space["rgb"].shape == (3, 64, 64)  # SB3 keeps frames channel-first
    from sana_world.envs.world import HELDOUT_START

    seeds = [spec.seed for spec in model.env.unwrapped.venv.core.world.specs]
    assert len(seeds) == 2 and all(s < HELDOUT_START for s in seeds)


def test_cli_trains_with_vector_and_exports_a_bare_frame_policy(tmp_path, capsys):
    """``ppo train --vector`` then ``ppo export`` of a CnnPolicy (SanaWorld/Rooms-v0): the card keeps the
    policy class, names the GT env, scores it on held-out scenes, and ``load_policy`` rebuilds it."""
    from sana_world.agents.ppo import main, read_card

    run = tmp_path / "run"
    main(["train", "--env-id", "SanaWorld/Rooms-v0", "--vector", "--size", "36", "--num-envs", "2", "--timesteps",
          "16", "--n-steps", "8", "--batch-size", "16", "--n-epochs", "1", "--out", str(run), "--no-progress"])
    main(["export", str(run / "final.zip"), str(tmp_path / "policy"), "--env-id", "SanaWorld/Rooms-v0",
          "--eval-episodes", "1"])
    card = read_card(tmp_path / "policy")
    assert card.env_id == "SanaWorld/Rooms-v0" and card.env_kwargs == {"width": 36, "height": 36}
    assert card.train["policy"] == "CnnPolicy" and card.eval["episodes"] == 1
    model = load_policy(tmp_path / "policy")
    assert model.observation_space.shape == (3, 36, 36)
    with pytest.raises(SystemExit):  # a dream-trained zip is scored on its GT twin: a GT size must fit
        main(["export", str(run / "final.zip"), str(tmp_path / "p2"), "--env-id", "SanaWorld/PointNav-v0"])
    assert "observes" in capsys.readouterr().err


def test_training_twice_from_one_seed_replays():
    """SB3 resets without a seed at every learn(); each env's generator goes on (as DummyVecEnv's envs keep
    theirs), so a run seeded once replays however often it resets."""
    def run() -> list[np.ndarray]:
        venv = make_sb3_vec_env("SanaWorld/PointNav-v0", 2, width=32, height=32, max_episode_steps=3)
        venv.seed(5)
        out = [venv.reset()["rgb"]]
        venv.step(np.zeros((2, 6), np.float32))
        out.append(venv.reset()["rgb"])  # unseeded: the generators go on
        return out

    a, b = run(), run()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])  # new episodes, not the first ones again
