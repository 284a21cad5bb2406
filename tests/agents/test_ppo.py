"""PPO agents: a short training run, the safetensors export and its reload, and the shipped policy."""

import argparse
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

import sana_world  # noqa: E402,F401
import sana_world.agents.ppo as ppo  # noqa: E402
from sana_world.agents.ppo import (  # noqa: E402
    CONFIG,
    WEIGHTS,
    PolicyCard,
    PPOTrainConfig,
    evaluate,
    export_policy,
    load_policy,
    build_parser,
    main,
    read_card,
    shipped_policies,
    shipped_policy,
    task_kwargs,
    train,
    trainable_env_ids,
)


def _observations(size: int, n: int) -> list[dict]:
    env = gym.make("SanaWorld/PointNav-v0", width=size, height=size)
    obs, _ = env.reset(seed=3)
    out = [obs]
    rng = np.random.default_rng(0)
    for _ in range(n - 1):  # 1. a few frames along random moves
        obs, *_ = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        out.append(obs)
    env.close()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo")
    cfg = PPOTrainConfig(size=36, num_envs=1, timesteps=64, n_steps=32, batch_size=32, n_epochs=1, out=out,
                         progress=False)
    return cfg, train(cfg)


def test_export_reload_acts_the_same(trained, tmp_path):
    cfg, model = trained
    assert (cfg.out / "final.zip").is_file()
    card = PolicyCard(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs(), timesteps=64, sha256="")
    folder = export_policy(model, tmp_path / "policy", card)
    loaded = load_policy(folder)
    fresh = load_policy(folder)
    for p in fresh.policy.parameters():  # a policy with other weights acts otherwise: the check can fail
        p.data.add_(0.5)
    for obs in _observations(cfg.size, 4):
        a, _ = model.predict(obs, deterministic=True)
        b, _ = loaded.predict(obs, deterministic=True)
        c, _ = fresh.predict(obs, deterministic=True)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
        assert np.abs(c - a).max() > 1e-3
    with pytest.raises(FileExistsError):
        export_policy(model, folder, card)
    assert read_card(folder).train["n_envs"] == 1
    hp = read_card(folder).train["hyperparameters"]  # the settings it trained with come back
    assert hp["n_steps"] == 32 and hp["batch_size"] == 32 and hp["n_epochs"] == 1 and hp["clip_range"] == 0.2
    for name, value in hp.items():
        v = getattr(loaded, name)
        assert (v(1.0) if callable(v) else v) == value, name


def test_load_policy_to_train_further_and_old_or_odd_cards(trained, tmp_path):
    """load_policy(env=venv) builds the policy on a vector env of any size with the recorded settings, and
    learn() goes on; a card of n_steps=1 (fine with many envs) and a card from before cards recorded their
    settings both load for acting; an env of other spaces is refused."""
    import json

    from stable_baselines3.common.env_util import make_vec_env

    cfg, model = trained
    card = PolicyCard(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs(), timesteps=64, sha256="")
    folder = export_policy(model, tmp_path / "policy", card)
    venv = make_vec_env(cfg.env_id, n_envs=2, env_kwargs=cfg.env_kwargs())
    more = load_policy(folder, env=venv)
    assert more.n_envs == 2 and more.n_steps == 32 and more.batch_size == 32 and more.get_env().venv is venv
    for a, b in zip(more.policy.parameters(), model.policy.parameters()):
        assert torch.equal(a.detach().cpu(), b.detach().cpu())
    more.learn(64)  # two rollouts of 2 x 32 steps on the loaded weights
    assert more.num_timesteps == 64
    from stable_baselines3.common.vec_env import VecTransposeImage

    assert load_policy(folder, env=VecTransposeImage(venv)).n_envs == 2  # SB3's channel-first view is fine
    other = make_vec_env(cfg.env_id, n_envs=1, env_kwargs={"width": 48, "height": 48})
    with pytest.raises(ValueError, match="spaces"):
        load_policy(folder, env=other)
    raw = json.loads((folder / CONFIG).read_text())
    for hp in ({**raw["train"]["hyperparameters"], "n_steps": 1}, None):  # 1 step an env; an old card
        raw["train"]["hyperparameters"] = hp
        (folder / CONFIG).write_text(json.dumps(raw))
        loaded = load_policy(folder)
        obs = _observations(cfg.size, 1)[0]
        np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0],
                                   model.predict(obs, deterministic=True)[0], atol=1e-6)
    assert loaded.n_steps == PPOTrainConfig().n_steps  # the old card: this trainer's defaults


def test_corrupted_or_missing_policy_files_raise(trained, tmp_path):
    cfg, model = trained
    card = PolicyCard(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs(), timesteps=64, sha256="")
    folder = export_policy(model, tmp_path / "policy", card)
    raw = bytearray((folder / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (folder / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_policy(folder)
    (folder / CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG):
        load_policy(folder)
    with pytest.raises(ValueError, match="size"):
        PPOTrainConfig(size=16)


def test_nav_mode_policy_round_trip(tmp_path):
    """A policy trained with action_mode="nav" records it in its card; the reloaded policy has the
    Discrete(3) space and picks the same moves; a twin env of another frame size gets the same actions."""
    cfg = PPOTrainConfig(size=36, num_envs=1, timesteps=32, n_steps=32, batch_size=32, n_epochs=1,
                         out=tmp_path / "run", action_mode="nav", progress=False)
    assert cfg.env_kwargs() == {"width": 36, "height": 36, "action_mode": "nav"}
    assert task_kwargs(cfg.env_kwargs()) == {"action_mode": "nav"}
    assert PPOTrainConfig().env_kwargs() == {"width": 64, "height": 64}  # twist cards stay as they were
    model = train(cfg)
    card = PolicyCard(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs(), timesteps=32, sha256="")
    loaded = load_policy(export_policy(model, tmp_path / "policy", card))
    assert loaded.action_space == gym.spaces.Discrete(3)
    env = gym.make("SanaWorld/PointNav-v0", **cfg.env_kwargs())
    obs, _ = env.reset(seed=1)
    for _ in range(4):
        a, _ = model.predict(obs, deterministic=True)
        b, _ = loaded.predict(obs, deterministic=True)
        assert int(a) == int(b)
        obs, *_ = env.step(a)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pointnav-64", "pointnav-64-nav"])
def test_shipped_policy_beats_random_actions(name):
    """A shipped agent, on GT episodes it never trained on, gets more reward than random actions of its own
    action space (twist or nav) on the same episodes."""
    policy = load_policy(shipped_policy(name))
    card = read_card(shipped_policy(name))
    ours = evaluate(policy, card.env_id, card.env_kwargs, episodes=3, seed=20_000, max_steps=100)

    class Random:
        def __init__(self):
            self.space = policy.action_space
            self.space.seed(0)

        def predict(self, obs, deterministic=True):
            return self.space.sample(), None

    rand = evaluate(Random(), card.env_id, card.env_kwargs, episodes=3, seed=20_000, max_steps=100)
    assert ours["mean_return"] > rand["mean_return"] + 1.0, (ours, rand)
    assert dataclasses.asdict(card)["sha256"]


@pytest.fixture(scope="module")
def trained_nav(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo_nav")
    cfg = PPOTrainConfig(size=36, num_envs=1, timesteps=32, n_steps=32, batch_size=32, n_epochs=1, out=out,
                         action_mode="nav", progress=False)
    return cfg, train(cfg)


def export_cli(zip_path, folder, *flags: str, capsys=None) -> tuple[int, str]:
    """``ppo export`` in process: (exit code, stderr)."""
    try:
        main(["export", str(zip_path), str(folder), *flags])
        code = 0
    except SystemExit as e:
        code = int(e.code)
    return code, capsys.readouterr().err if capsys else ""


def test_export_reads_size_and_action_mode_from_the_zip(trained_nav, tmp_path, capsys):
    """A 36² nav policy exports to a card that loads, with no --size / --action-mode (the defaults were 64 and
    twist: the card did not load); flags that disagree with the zip are usage errors."""
    cfg, model = trained_nav
    zip_path = cfg.out / "final.zip"
    assert export_cli(zip_path, tmp_path / "a", "--eval-episodes", "0", capsys=capsys)[0] == 0
    card = read_card(tmp_path / "a")
    assert card.env_kwargs == cfg.env_kwargs() and card.timesteps == model.num_timesteps
    loaded = load_policy(tmp_path / "a")
    assert loaded.action_space == gym.spaces.Discrete(3)
    for obs in _observations(36, 3):
        assert int(loaded.predict(obs, deterministic=True)[0]) == int(model.predict(obs, deterministic=True)[0])
    ok = ("--size", "36", "--action-mode", "nav", "--timesteps", str(model.num_timesteps), "--eval-episodes", "0")
    assert export_cli(zip_path, tmp_path / "b", *ok, capsys=capsys)[0] == 0
    assert json.loads((tmp_path / "b" / CONFIG).read_text())["env_kwargs"] == cfg.env_kwargs()
    for flags, says in [(("--size", "64"), "36x36"), (("--action-mode", "twist"), "'nav'"),
                        (("--env-id", "SanaWorld/ObjectNav-v0"), "--env-id"), (("--timesteps", "5"), "32 steps")]:
        code, err = export_cli(zip_path, tmp_path / "c", *flags, "--eval-episodes", "0", capsys=capsys)
        assert code == 2 and says in err, (flags, err)
        assert not (tmp_path / "c").exists()


def test_export_evaluates_on_frames_of_the_zips_size(trained, tmp_path, capsys, monkeypatch):
    """Evaluation during export runs the policy on the env it was trained on (36², not the default 64²)."""
    cfg, _ = trained
    seen = []

    def short(model, env_id, env_kwargs, episodes, seed, **kw):  # one 5-step episode instead of 500 steps
        seen.append(env_kwargs)
        return evaluate(model, env_id, env_kwargs, 1, seed, max_steps=5, scene_start=kw.get("scene_start"))

    monkeypatch.setattr(ppo, "evaluate", short)
    assert export_cli(cfg.out / "final.zip", tmp_path / "p", "--eval-episodes", "1", capsys=capsys)[0] == 0
    assert seen == [{"width": 36, "height": 36}]
    assert read_card(tmp_path / "p").eval["episodes"] == 1


@pytest.mark.parametrize("flags, says", [
    (["--size", "20"], "--size: must be >= 36"),
    (["--num-envs", "0"], "--num-envs: must be >= 1"),
    (["--action-mode", "jump"], "'twist', 'keys', 'nav'"),
    (["--env-id", "SanaWorld/Hallway-v0"], "'SanaWorld/Rooms-v0', 'SanaWorld/PointNav-v0'"),
    (["--device", "cuda"], "--vector"),
    (["--bf16"], "Dream env option"),
    (["--fp8"], "Dream env option"),
    (["--env-id", "SanaWorld/DreamRooms-v0", "--size", "48"], "must divide the 128"),
    pytest.param(["--vector", "--device", "cuda"], "no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["--gamma", "2"], "gamma"),
])
def test_train_cli_usage_errors(flags, says, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "run"), *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "train: error:" in err and says in err, err
    assert not (tmp_path / "run").exists()


def test_train_config_rejects_what_the_trainer_cannot_use():
    assert trainable_env_ids() == ("SanaWorld/Rooms-v0", "SanaWorld/PointNav-v0", "SanaWorld/ObjectNav-v0",
                                   "SanaWorld/DreamRooms-v0", "SanaWorld/DreamPointNav-v0")
    assert ppo.policy_class("SanaWorld/Rooms-v0") == "CnnPolicy"  # a bare frame
    assert ppo.policy_class("SanaWorld/DreamPointNav-v0") == "MultiInputPolicy"  # frame + goal
    assert ppo.gt_twin("SanaWorld/DreamRooms-v0") == "SanaWorld/Rooms-v0"
    with pytest.raises(ValueError, match="PointNav-v0"):
        PPOTrainConfig(env_id="SanaWorld/Hallway-v0")
    with pytest.raises(ValueError, match="'nav'"):
        PPOTrainConfig(action_mode="jump")


def test_every_cli_option_has_help():
    _, train_parser, export_parser = build_parser()
    for parser in (train_parser, export_parser):
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, action.option_strings or action.dest
    flags = {s for a in train_parser._actions for s in a.option_strings}
    assert {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(PPOTrainConfig)} - {"--progress"} <= flags


def test_unknown_shipped_policy_lists_the_names():
    assert {"pointnav-64", "pointnav-64-nav"} <= set(shipped_policies())
    assert (shipped_policy("pointnav-64") / CONFIG).is_file()
    with pytest.raises(ValueError, match="pointnav-64, pointnav-64-nav"):
        shipped_policy("nope")


def test_evaluate_defaults_to_heldout_scenes_and_names_obs_size() -> None:
    from sana_world.agents.ppo import PPOTrainConfig, evaluate, load_policy, read_card, shipped_policy

    folder = shipped_policy("pointnav-64")
    policy, card = load_policy(folder), read_card(folder)
    seen = []

    class Spy:  # the shipped policy, recording the scene of each episode
        observation_space = policy.observation_space

        def predict(self, obs, deterministic=True):
            return policy.predict(obs, deterministic=deterministic)

    import gymnasium as gym

    real_make = gym.make

    def make(*args, **kwargs):
        env = real_make(*args, **kwargs)
        reset = env.reset

        def spy_reset(**kw):
            seen.append((kw.get("options") or {}).get("scene_seed"))
            return reset(**kw)

        env.reset = spy_reset
        return env

    gym.make = make
    try:
        evaluate(Spy(), card.env_id, card.env_kwargs, episodes=2, seed=0, max_steps=2)
    finally:
        gym.make = real_make
    assert seen == [1_000_000, 1_000_001]
    with pytest.raises(ValueError, match="obs_size=64"):
        evaluate(policy, card.env_id, {**card.env_kwargs, "width": 128, "height": 128}, 1, 0, max_steps=2)
    from pathlib import Path

    assert PPOTrainConfig(out="runs/x").out == Path("runs/x")


def test_sb3_success_key_at_episode_end() -> None:
    from sana_world.agents.ppo import with_sb3_success

    env = with_sb3_success(gym.make("SanaWorld/PointNav-v0", width=64, height=64, max_episode_steps=2))
    env.reset(seed=0)
    stay = np.zeros(env.action_space.shape, dtype=np.float32)
    infos = [env.step(stay)[4] for _ in range(2)]
    assert "is_success" not in infos[0] and infos[1]["is_success"] == bool(infos[1]["success"])
    env.close()
