"""PPO agents: a short training run, the safetensors export and its reload, and the shipped policy."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

import sana_world  # noqa: E402,F401
from sana_world.agents.ppo import (  # noqa: E402
    CONFIG,
    WEIGHTS,
    PolicyCard,
    PPOTrainConfig,
    evaluate,
    export_policy,
    load_policy,
    read_card,
    shipped_policy,
    task_kwargs,
    train,
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
