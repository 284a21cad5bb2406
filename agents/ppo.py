"""PPO agents through stable-baselines3 (the ``rl`` extra): train on a GT env, ship, run in its Dream twin.

A policy trained on ``SanaWorld/PointNav-v0`` (GT frames) acts in ``SanaWorld/DreamPointNav-v0`` unchanged:
the twins share spaces, dynamics and rewards, only the frames differ. Weights travel as a safetensors file
of the SB3 policy's ``state_dict`` with a ``config.json`` that rebuilds it (no pickles):

    python -m sana_world.agents.ppo train --out runs/ppo_pointnav --timesteps 300000
    python -m sana_world.agents.ppo export runs/ppo_pointnav/final.zip sana_world/zoo/agents/pointnav-64
    policy = load_policy(shipped_policy("pointnav-64"))               # an SB3 PPO, ready for .predict
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS, CONFIG = "policy.safetensors", "config.json"


def shipped_policy(name: str = "pointnav-64") -> Path:
    """Folder of a policy shipped with the package (``sana_world/zoo/agents/<name>``)."""
    from sana_world.zoo import ZOO_ROOT

    return ZOO_ROOT / "agents" / name


@dataclass(frozen=True)
class PPOTrainConfig:
    """PPO on a GT env id (SB3 ``MultiInputPolicy``: NatureCNN on the frame + the goal vector)."""

    env_id: str = "SanaWorld/PointNav-v0"
    size: int = 64  # observed frame side (width = height)
    action_mode: str = "twist"  # the env's: "twist" (6-DoF Box), "keys", or "nav" (Discrete(3), level camera)
    num_envs: int = 4
    timesteps: int = 300_000
    n_steps: int = 512  # per env per rollout
    batch_size: int = 256
    n_epochs: int = 4
    lr: float = 3e-4
    gamma: float = 0.99
    ent_coef: float = 0.0
    seed: int = 0
    out: Path = Path("runs/ppo_pointnav")
    progress: bool = True

    def __post_init__(self) -> None:
        if self.size < 36:  # NatureCNN's kernels need at least 36 pixels
            raise ValueError(f"size must be >= 36 (NatureCNN), got {self.size}")
        if min(self.num_envs, self.timesteps, self.n_steps, self.batch_size, self.n_epochs) < 1:
            raise ValueError("num_envs, timesteps, n_steps, batch_size and n_epochs must be >= 1")

    def env_kwargs(self) -> dict[str, Any]:
        mode = {} if self.action_mode == "twist" else {"action_mode": self.action_mode}
        return {"width": self.size, "height": self.size, **mode}


def task_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A policy card's env kwargs without the frame size: what a twin env of another frame size (a Dream env
    at its model's resolution, seen through ``DownsampleRGB``) must share with the training env."""
    return {k: v for k, v in env_kwargs.items() if k not in ("width", "height")}


@dataclass(frozen=True)
class PolicyCard:
    """What ``config.json`` holds: enough to rebuild the policy and to say where it came from."""

    env_id: str
    env_kwargs: dict[str, Any]
    timesteps: int
    sha256: str  # of the weights file, checked on load
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)


def _require_sb3():
    try:
        import stable_baselines3
    except ImportError as e:  # the optional extra is missing: say how to get it
        raise ImportError("PPO agents need stable-baselines3: pip install 'sana-world[rl]'") from e
    return stable_baselines3


def train(cfg: PPOTrainConfig):
    """Train PPO on ``cfg.env_id``; writes ``cfg.out/final.zip`` (SB3's own format, for resuming) and
    TensorBoard logs when tensorboard is installed. Returns the model."""
    _require_sb3()
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import sana_world  # noqa: F401  (registers the ids)

    cfg.out.mkdir(parents=True, exist_ok=True)
    venv = make_vec_env(cfg.env_id, n_envs=cfg.num_envs, seed=cfg.seed, env_kwargs=cfg.env_kwargs())
    try:
        import tensorboard  # noqa: F401

        tb: str | None = str(cfg.out / "tb")
    except ImportError:
        tb = None
    model = PPO("MultiInputPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                learning_rate=cfg.lr, gamma=cfg.gamma, ent_coef=cfg.ent_coef, seed=cfg.seed, tensorboard_log=tb,
                device="cpu" if not torch.cuda.is_available() else "auto", verbose=0)
    model.learn(cfg.timesteps, progress_bar=cfg.progress)
    model.save(cfg.out / "final.zip")
    venv.close()
    return model


def export_policy(model, folder: Path, card: PolicyCard) -> Path:
    """Write the policy's weights (safetensors, fp32) and its card to an empty or new folder; returns it."""
    from safetensors.torch import save_model

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; export into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model.policy, str(folder / WEIGHTS))  # the shared CNN stored once (pi / vf views of it)
    card = dataclasses.replace(card, sha256=_sha256(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(dataclasses.asdict(card), indent=1) + "\n")
    return folder


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_card(folder: Path) -> PolicyCard:
    """The card (``config.json``) of an exported policy folder."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not an exported policy folder")
    return PolicyCard(**json.loads(path.read_text()))


def load_policy(folder: Path, device: str = "cpu"):
    """An SB3 PPO with the exported weights, built on its env's spaces (no env is kept)."""
    _require_sb3()
    import gymnasium as gym
    from safetensors.torch import load_model
    from stable_baselines3 import PPO

    import sana_world  # noqa: F401

    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: not an exported policy folder")
    card = read_card(folder)
    if _sha256(folder / WEIGHTS) != card.sha256:
        raise ValueError(f"{folder / WEIGHTS} does not match the sha256 in its {CONFIG}: corrupted or replaced")
    env = gym.make(card.env_id, **card.env_kwargs)
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, device=device)
    load_model(model.policy, str(folder / WEIGHTS), strict=True, device=device)
    model.policy.set_training_mode(False)
    env.close()
    model.env = None  # spaces stay on the model; the env above was only their source
    return model


def evaluate(model, env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int,
             max_steps: int | None = None, scene_start: int | None = None,
             obs_size: int | None = None) -> dict[str, float]:
    """Deterministic episodes one after another: success rate, mean return, mean length. Episode e resets
    with ``seed + e`` and, given ``scene_start``, the scene of seed ``scene_start + e`` (so a GT env and
    its Dream twin can be scored on the same scenes, starts and goals). ``obs_size``: the agent sees the
    env's frames area-averaged to this side (:class:`~sana_world.envs.wrappers.DownsampleRGB`)."""
    import gymnasium as gym

    import sana_world  # noqa: F401
    from sana_world.envs.wrappers import DownsampleRGB

    kwargs = dict(env_kwargs)
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    env = gym.make(env_id, **kwargs)
    if obs_size is not None:
        env = DownsampleRGB(env, obs_size)
    returns, lengths, successes = [], [], []
    for e in range(episodes):  # 1. one episode per seed
        options = None if scene_start is None else {"scene_seed": scene_start + e}
        obs, _ = env.reset(seed=seed + e, options=options)
        ret, n, done, info = 0.0, 0, False, {}
        while not done:  # 2. act deterministically until the episode ends
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, info = env.step(action)
            ret, n, done = ret + float(r), n + 1, term or trunc
        returns.append(ret)
        lengths.append(n)
        successes.append(bool(info.get("success", False)))
    env.close()
    return {"episodes": episodes, "success_rate": float(np.mean(successes)),
            "mean_return": float(np.mean(returns)),
            "mean_length": float(np.mean(lengths))}


def main(argv: list[str] | None = None) -> None:
    from sana_world.envs.spaces import ACTION_MODES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train PPO on a GT env")
    for f in dataclasses.fields(PPOTrainConfig):
        if f.name == "progress":
            continue
        t.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    t.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("export", help="SB3 zip -> safetensors policy folder, with an evaluation on GT")
    e.add_argument("zip", type=Path)
    e.add_argument("folder", type=Path)
    e.add_argument("--env-id", default=PPOTrainConfig.env_id)
    e.add_argument("--size", type=int, default=PPOTrainConfig.size)
    e.add_argument("--action-mode", default=PPOTrainConfig.action_mode, choices=ACTION_MODES)
    e.add_argument("--timesteps", type=int, required=True, help="steps it was trained for (for the card)")
    e.add_argument("--eval-episodes", type=int, default=20, help="GT episodes on held-out scenes for the card")
    a = p.parse_args(argv)
    if a.command == "train":
        kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(PPOTrainConfig) if f.name != "progress"}
        model = train(PPOTrainConfig(**kw, progress=not a.no_progress))
        print("saved", Path(kw["out"]) / "final.zip", "after", model.num_timesteps, "steps")
        return
    _require_sb3()
    from stable_baselines3 import PPO

    model = PPO.load(a.zip, device="cpu")
    env_kwargs = PPOTrainConfig(size=a.size, action_mode=a.action_mode).env_kwargs()
    from sana_world.envs.world import HELDOUT_START

    ev = (evaluate(model, a.env_id, env_kwargs, a.eval_episodes, seed=0, scene_start=HELDOUT_START)
          if a.eval_episodes else {})  # held-out scenes, full-length episodes
    if ev:
        ev["scenes"] = f"held-out scene seeds {HELDOUT_START}..{HELDOUT_START + a.eval_episodes - 1}"
    card = PolicyCard(env_id=a.env_id, env_kwargs=env_kwargs, timesteps=a.timesteps, sha256="",
                      train={"algo": "PPO", "policy": "MultiInputPolicy", "source": str(a.zip)}, eval=ev)
    print("exported", export_policy(model, a.folder, card), ev)


if __name__ == "__main__":
    main()
