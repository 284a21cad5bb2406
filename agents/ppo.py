"""PPO agents through stable-baselines3 (the ``rl`` extra): train on a GT env, ship, run in its Dream twin.

A policy trained on ``SanaWorld/PointNav-v0`` (GT frames) acts in ``SanaWorld/DreamPointNav-v0`` unchanged:
the twins share spaces, dynamics and rewards, only the frames differ. Weights travel as a safetensors file
of the SB3 policy's ``state_dict`` with a ``config.json`` that rebuilds it (no pickles):

    python -m sana_world.agents.ppo train --out runs/ppo_pointnav --timesteps 300000
    python -m sana_world.agents.ppo export runs/ppo_pointnav/final.zip sana_world/zoo/agents/pointnav-64

(export reads the frame size, the action mode and the step count from the zip.)
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

from sana_world.checkpoints import file_sha256
from sana_world.worlds.sampler import HELDOUT_START as HELDOUT_SCENES  # evaluate's default scenes

WEIGHTS, CONFIG = "policy.safetensors", "config.json"
MIN_SIZE = 36  # the smallest frame side NatureCNN's kernels take


def shipped_policies() -> list[str]:
    """Names of the policies shipped with the package (folders of ``sana_world/zoo/agents`` with a card)."""
    from sana_world.zoo import ZOO_ROOT

    root = ZOO_ROOT / "agents"
    return sorted(d.name for d in root.iterdir() if (d / CONFIG).is_file()) if root.is_dir() else []


def shipped_policy(name: str = "pointnav-64") -> Path:
    """Folder of a policy shipped with the package (``sana_world/zoo/agents/<name>``); ``ValueError`` listing
    the shipped names when there is none called ``name``."""
    from sana_world.zoo import ZOO_ROOT

    names = shipped_policies()
    if name not in names:
        raise ValueError(f"no shipped policy {name!r}; shipped policies: {', '.join(names) or 'none'}")
    return ZOO_ROOT / "agents" / name


def trainable_env_ids() -> tuple[str, ...]:
    """GT env ids PPO trains on: those whose observation is a Dict (frame + goal), as ``MultiInputPolicy``
    needs (``SanaWorld/Rooms-v0`` observes a bare frame)."""
    from sana_world.envs.registration import GT_ENVS
    from sana_world.envs.tasks import goal_space

    return tuple(env_id for env_id, (task, _) in GT_ENVS.items() if goal_space(task) is not None)


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
        from sana_world.envs.spaces import ACTION_MODES

        object.__setattr__(self, "out", Path(self.out))  # a str path works too

        if self.env_id not in trainable_env_ids():
            raise ValueError(f"env_id must be one of {trainable_env_ids()} (a Dict observation of frame and goal), "
                             f"got {self.env_id!r}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.size < MIN_SIZE:  # NatureCNN's kernels need at least 36 pixels
            raise ValueError(f"size must be >= {MIN_SIZE} (NatureCNN), got {self.size}")
        if min(self.num_envs, self.timesteps, self.n_steps, self.batch_size, self.n_epochs) < 1:
            raise ValueError("num_envs, timesteps, n_steps, batch_size and n_epochs must be >= 1")
        if not (self.lr > 0 and 0 < self.gamma <= 1 and self.ent_coef >= 0):
            raise ValueError(f"need lr > 0, 0 < gamma <= 1 and ent_coef >= 0, got {self.lr}, {self.gamma}, "
                             f"{self.ent_coef}")

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


def with_sb3_success(env):
    """``env`` whose last info of an episode also holds ``is_success`` (its ``success``), the key SB3 reads
    for ``rollout/success_rate``; the envs themselves stay SB3-free."""
    import gymnasium as gym

    class SB3Success(gym.Wrapper):
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if (terminated or truncated) and "success" in info:
                info = {**info, "is_success": bool(info["success"])}
            return obs, reward, terminated, truncated, info

    return SB3Success(env)


def train(cfg: PPOTrainConfig):
    """Train PPO on ``cfg.env_id``; writes ``cfg.out/final.zip`` (SB3's own format: ``PPO.load`` it to train
    on) and TensorBoard logs when tensorboard is installed (with ``rollout/success_rate``). Returns the
    model."""
    _require_sb3()
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import sana_world  # noqa: F401  (registers the ids)

    cfg.out.mkdir(parents=True, exist_ok=True)
    venv = make_vec_env(cfg.env_id, n_envs=cfg.num_envs, seed=cfg.seed, env_kwargs=cfg.env_kwargs(),
                        wrapper_class=with_sb3_success)
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
    card = dataclasses.replace(card, sha256=file_sha256(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(dataclasses.asdict(card), indent=1) + "\n")
    return folder


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
    if file_sha256(folder / WEIGHTS) != card.sha256:
        raise ValueError(f"{folder / WEIGHTS} does not match the sha256 in its {CONFIG}: corrupted or replaced")
    env = gym.make(card.env_id, **card.env_kwargs)
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, device=device)
    load_model(model.policy, str(folder / WEIGHTS), strict=True, device=device)
    model.policy.set_training_mode(False)
    env.close()
    model.env = None  # spaces stay on the model; the env above was only their source
    return model


def evaluate(model, env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int,
             max_steps: int | None = None, scene_start: int | None = HELDOUT_SCENES,
             obs_size: int | None = None) -> dict[str, float]:
    """Deterministic episodes one after another: success rate, mean return, mean length. Episode e resets
    with ``seed + e`` in the scene of seed ``scene_start + e``: by default the held-out scenes (scene seeds
    from ``HELDOUT_START``, never trained on), the same for a GT env and its Dream twin (same scenes,
    starts and goals). ``scene_start=None`` leaves the scene to the env's split and ``seed`` (a GT env's
    default split is the training scenes). ``obs_size``: the agent sees the env's frames area-averaged to
    this side (:class:`~sana_world.envs.wrappers.DownsampleRGB`)."""
    import gymnasium as gym

    import sana_world  # noqa: F401
    from sana_world.envs.wrappers import DownsampleRGB

    kwargs = dict(env_kwargs)
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    env = gym.make(env_id, **kwargs)
    if obs_size is not None:
        env = DownsampleRGB(env, obs_size)
    _check_observes(model, env, env_id)
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


def zip_env_kwargs(model) -> dict[str, Any]:
    """The env kwargs a trained SB3 model's spaces imply, as :meth:`PPOTrainConfig.env_kwargs` writes them:
    ``width`` / ``height`` of its "rgb" frames (SB3 keeps images channel-first) and ``action_mode`` from its
    action space (left out for "twist")."""
    from gymnasium import spaces

    from sana_world.envs.spaces import ACTION_MODES, action_space

    obs = model.observation_space
    if not isinstance(obs, spaces.Dict) or "rgb" not in obs.spaces:
        raise ValueError(f"the model observes {obs}, not a Dict with an 'rgb' frame: not a policy from `ppo train`")
    shape = tuple(obs["rgb"].shape)
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(f"the model's 'rgb' frames have shape {shape}, not (3, H, W) or (H, W, 3)")
    height, width = shape[1:] if shape[0] == 3 else shape[:2]
    modes = [m for m in ACTION_MODES if action_space(m) == model.action_space]
    if not modes:
        raise ValueError(f"the model acts in {model.action_space}, none of the env action modes {ACTION_MODES}")
    return {"width": int(width), "height": int(height), **({} if modes[0] == "twist" else {"action_mode": modes[0]})}


def card_env_kwargs(model, size: int | None = None, action_mode: str | None = None) -> dict[str, Any]:
    """:func:`zip_env_kwargs`, checked against a frame ``size`` and an ``action_mode`` a user gave (None: not
    given); ``ValueError`` saying which disagrees."""
    kwargs = zip_env_kwargs(model)
    found = (kwargs["width"], kwargs["height"])
    if size is not None and (size, size) != found:
        raise ValueError(f"size {size} (--size) disagrees with the model's {found[0]}x{found[1]} frames: drop it, "
                         "the frame size is read from the zip")
    mode = kwargs.get("action_mode", "twist")
    if action_mode is not None and action_mode != mode:
        raise ValueError(f"action mode {action_mode!r} (--action-mode) disagrees with the model's {mode!r} action "
                         f"space {model.action_space}: drop it, the action mode is read from the zip")
    return kwargs


def _check_observes(model, env, env_id: str) -> None:
    """ValueError naming ``obs_size`` when the env's frames are not the size the model was trained on."""
    want = getattr(getattr(model, "observation_space", None), "spaces", {}).get("rgb")
    have = getattr(env.observation_space, "spaces", {}).get("rgb")
    if want is None or have is None:
        return
    side = lambda shape: shape[1] if shape[0] == 3 else shape[0]  # noqa: E731  channel-first or -last
    if side(want.shape) != side(have.shape):
        raise ValueError(f"{env_id} gives {side(have.shape)}² frames, the model was trained on "
                         f"{side(want.shape)}²: pass obs_size={side(want.shape)} (frames area-averaged)")


def check_env_spaces(model, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """``ValueError`` unless ``gym.make(env_id, **env_kwargs)`` observes and acts in the model's spaces
    (frames channel-last or channel-first)."""
    import gymnasium as gym

    import sana_world  # noqa: F401

    env = gym.make(env_id, **env_kwargs)
    env_obs, env_act = env.observation_space, env.action_space
    env.close()

    def shapes(space) -> dict[str, tuple[int, ...]]:
        out = {k: tuple(v.shape) for k, v in getattr(space, "spaces", {"": space}).items()}
        if len(out.get("rgb", ())) == 3 and out["rgb"][0] == 3:
            out["rgb"] = (*out["rgb"][1:], 3)  # channel-first, as SB3 stores it -> the env's (H, W, 3)
        return out

    if shapes(env_obs) != shapes(model.observation_space) or env_act != model.action_space:
        raise ValueError(f"{env_id} observes {shapes(env_obs)} and acts in {env_act}, the model "
                         f"{shapes(model.observation_space)} and {model.action_space}: pass the --env-id it was "
                         "trained on")


_TRAIN_HELP = {
    "env_id": "GT env to train on (its observation must be a Dict of frame and goal)",
    "size": f"observed frame side in pixels (width = height), at least {MIN_SIZE} for NatureCNN",
    "action_mode": "the env's actions: twist (6-DoF Box), keys (MultiBinary(8) over wasdijkl) or nav "
                   "(Discrete(3): forward, turn left, turn right)",
    "num_envs": "envs stepped in parallel",
    "timesteps": "env steps to train for, over all envs",
    "n_steps": "steps per env per rollout",
    "batch_size": "minibatch size of the PPO updates",
    "n_epochs": "passes over each rollout",
    "lr": "Adam learning rate",
    "gamma": "discount factor, in (0, 1]",
    "ent_coef": "entropy bonus coefficient, >= 0",
    "seed": "seed of the envs and the policy",
    "out": "run folder: final.zip and TensorBoard logs (when tensorboard is installed) go here",
}


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line and its ``train`` and ``export`` sub-parsers."""
    from sana_world.cli import int_at_least
    from sana_world.envs.spaces import ACTION_MODES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train PPO on a GT env", description="Train PPO on a GT env.")
    types = {"size": int_at_least(MIN_SIZE), **{k: int_at_least(1) for k in
                                                 ("num_envs", "timesteps", "n_steps", "batch_size", "n_epochs")}}
    choices = {"env_id": trainable_env_ids(), "action_mode": ACTION_MODES}
    for f in dataclasses.fields(PPOTrainConfig):
        if f.name == "progress":
            continue
        t.add_argument(f"--{f.name.replace('_', '-')}", type=types.get(f.name, type(f.default)), default=f.default,
                       choices=choices.get(f.name), help=_TRAIN_HELP[f.name] + " (default: %(default)s)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("export", help="SB3 zip -> safetensors policy folder, with an evaluation on GT",
                       description="Export a `train` zip; frame size, action mode and steps come from the zip.")
    e.add_argument("zip", type=Path, help="final.zip written by `train`")
    e.add_argument("folder", type=Path, help="new (or empty) folder for policy.safetensors and config.json")
    e.add_argument("--env-id", default=PPOTrainConfig.env_id, choices=trainable_env_ids(),
                   help="the env it was trained on (default: %(default)s)")
    e.add_argument("--size", type=int, default=None, help="optional check: the frame side it was trained with")
    e.add_argument("--action-mode", default=None, choices=ACTION_MODES,
                   help="optional check: the action mode it was trained with")
    e.add_argument("--timesteps", type=int, default=None,
                   help="optional check: steps it was trained for (the card takes the zip's count)")
    e.add_argument("--eval-episodes", type=int_at_least(0), default=20,
                   help="GT episodes on held-out scenes for the card (default: %(default)s; 0: none)")
    return p, t, e


def main(argv: list[str] | None = None) -> None:
    p, t, e = build_parser()
    a = p.parse_args(argv)
    if a.command == "train":
        kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(PPOTrainConfig) if f.name != "progress"}
        try:
            cfg = PPOTrainConfig(**kw, progress=not a.no_progress)
        except ValueError as err:  # what the per-option checks above do not cover (lr, gamma, ent_coef)
            t.error(str(err))
        model = train(cfg)
        print("saved", Path(kw["out"]) / "final.zip", "after", model.num_timesteps, "steps")
        return
    _require_sb3()
    from stable_baselines3 import PPO

    model = PPO.load(a.zip, device="cpu")
    timesteps = int(model.num_timesteps)
    try:
        env_kwargs = card_env_kwargs(model, a.size, a.action_mode)
        if a.timesteps is not None and a.timesteps != timesteps:
            raise ValueError(f"--timesteps {a.timesteps} disagrees with the zip's {timesteps} steps: drop it")
        check_env_spaces(model, a.env_id, env_kwargs)
    except ValueError as err:
        e.error(f"{a.zip}: {err}")
    from sana_world.envs.world import HELDOUT_START

    ev = (evaluate(model, a.env_id, env_kwargs, a.eval_episodes, seed=0, scene_start=HELDOUT_START)
          if a.eval_episodes else {})  # held-out scenes, full-length episodes
    if ev:
        ev["scenes"] = f"held-out scene seeds {HELDOUT_START}..{HELDOUT_START + a.eval_episodes - 1}"
    card = PolicyCard(env_id=a.env_id, env_kwargs=env_kwargs, timesteps=timesteps, sha256="",
                      train={"algo": "PPO", "policy": "MultiInputPolicy", "source": str(a.zip)}, eval=ev)
    print("exported", export_policy(model, a.folder, card), ev)


if __name__ == "__main__":
    main()
