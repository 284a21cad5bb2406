"""PPO agents through stable-baselines3 (the ``rl`` extra): train on a GT env or in a dream, ship, run in
either twin.

A policy trained on ``SanaWorld/PointNav-v0`` (GT frames) acts in ``SanaWorld/DreamPointNav-v0`` unchanged
and back: the twins share spaces, dynamics and rewards, only the frames differ. ``--vector`` collects
rollouts from the native batched vector env (one render or one world-model pass for all envs, on
``--device``); training in the dream takes it. Weights travel as a safetensors file of the SB3 policy's
``state_dict`` with a ``config.json`` that rebuilds it (no pickles):

    python -m sana_world.agents.ppo train --out runs/ppo_pointnav --timesteps 300000
    python -m sana_world.agents.ppo train --env-id SanaWorld/DreamRooms-v0 --vector --num-envs 64 --device cuda
    python -m sana_world.agents.ppo export runs/ppo_pointnav/final.zip sana_world/zoo/agents/pointnav-64

(export reads the frame size, the action mode and the step count from the zip, and scores the policy on
the GT twin's held-out scenes.)
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

from sana_world.agents.policy_spaces import card_env_kwargs, check_env_spaces, check_observes, same_spaces
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
    """Env ids PPO trains on: every GT env and every Dream twin."""
    from sana_world.envs.registration import DREAM_ENVS, GT_ENVS

    return (*GT_ENVS, *DREAM_ENVS)


def gt_twin(env_id: str) -> str:
    """The GT env of a Dream env id (the id itself for a GT one): same task, spaces and dynamics."""
    from sana_world.envs.registration import DREAM_ENVS, GT_ENVS

    if env_id in GT_ENVS:
        return env_id
    if env_id not in DREAM_ENVS:
        raise ValueError(f"{env_id!r} is no sana-world env id; one of {trainable_env_ids()}")
    task = DREAM_ENVS[env_id][0]
    return next(i for i, (t, _) in GT_ENVS.items() if t == task)


def policy_class(env_id: str) -> str:
    """SB3's policy for an env: ``MultiInputPolicy`` (NatureCNN + goal vector) for a Dict observation,
    ``CnnPolicy`` for a bare frame (``SanaWorld/Rooms-v0``)."""
    from sana_world.envs.registration import DREAM_ENVS, GT_ENVS
    from sana_world.envs.tasks import goal_space

    task = {**GT_ENVS, **DREAM_ENVS}[env_id][0]
    return "MultiInputPolicy" if goal_space(task) is not None else "CnnPolicy"


@dataclass(frozen=True)
class PPOTrainConfig:
    """PPO on a GT or Dream env id (SB3 ``MultiInputPolicy``: NatureCNN on the frame + the goal vector, or
    ``CnnPolicy`` for a bare frame). A Dream env dreams at its model's resolution; the agent sees the frames
    area-averaged to ``size``."""

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
    vector: bool = False  # the native batched vector env (one pass for all envs) instead of SB3's DummyVecEnv
    device: str = "cpu"  # where the envs run with vector=True (the policy goes to CUDA when there is one)
    bf16: bool = False  # a Dream env dreams under bf16 autocast
    fp8: bool = False  # a Dream env dreams with its world model's wide layers in FP8 (Sol-RL-style rollouts)
    out: Path = Path("runs/ppo_pointnav")
    progress: bool = True

    def __post_init__(self) -> None:
        from sana_world.envs.spaces import ACTION_MODES

        object.__setattr__(self, "out", Path(self.out))  # a str path works too

        if self.env_id not in trainable_env_ids():
            raise ValueError(f"env_id must be one of {trainable_env_ids()}, got {self.env_id!r}")
        for name in ("bf16", "fp8"):
            if getattr(self, name) and not self.dream():
                raise ValueError(f"{name} is a Dream env option; {self.env_id} renders its frames")
        if self.device != "cpu" and not self.vector:
            raise ValueError(f"device={self.device!r} needs vector=True (--vector): SB3's DummyVecEnv steps CPU envs")
        if self.device != "cpu":
            import torch

            try:
                dev = torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"device={self.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r}: this machine has no CUDA device")
        if self.dream():  # the dream's frame side, from the zoo manifest (no weights load)
            from sana_world.envs.dream_core import DreamConfig
            from sana_world.zoo import entry

            model = DreamConfig().model
            side = entry(model, verify=False).resolution
            if side % self.size:
                raise ValueError(f"size {self.size} must divide the {side}² frames {model!r} dreams (they are "
                                 "area-averaged to it)")
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
        """The GT twin's kwargs for this frame size and action mode (what a policy card keeps)."""
        mode = {} if self.action_mode == "twist" else {"action_mode": self.action_mode}
        return {"width": self.size, "height": self.size, **mode}

    def dream(self) -> bool:
        return self.env_id != gt_twin(self.env_id)

    def ppo_kwargs(self) -> dict[str, Any]:
        """The settings SB3's ``PPO(...)`` trains with (``n_steps`` per env)."""
        return {"n_steps": self.n_steps, "batch_size": self.batch_size, "n_epochs": self.n_epochs,
                "learning_rate": self.lr, "gamma": self.gamma, "ent_coef": self.ent_coef}

    def train_env_kwargs(self) -> tuple[dict[str, Any], int | None]:
        """(kwargs of the env PPO steps, the side its frames are area-averaged to or None): a Dream env
        keeps its model's resolution and is seen at ``size``; it trains on the training scenes' split (a Dream
        env's default is the held-out one, where policies are scored)."""
        if self.dream():
            low = {name: True for name in ("bf16", "fp8") if getattr(self, name)}
            return {**task_kwargs(self.env_kwargs()), "split": "train", **low}, self.size
        return self.env_kwargs(), None


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


def make_train_env(cfg: PPOTrainConfig):
    """The SB3 ``VecEnv`` PPO trains on: ``num_envs`` single envs in SB3's DummyVecEnv, or (``vector``) the
    native batched vector env on ``device``; episode stats and ``is_success`` for SB3's logger either way."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    import sana_world  # noqa: F401  (registers the ids)

    kwargs, obs_size = cfg.train_env_kwargs()
    if cfg.vector:
        from sana_world.agents.sb3_vec import make_sb3_vec_env

        venv = VecMonitor(make_sb3_vec_env(cfg.env_id, cfg.num_envs, obs_size=obs_size, device=cfg.device, **kwargs))
        venv.seed(cfg.seed)
        return venv

    def wrap(env):
        if obs_size is not None:
            from sana_world.envs.wrappers import DownsampleRGB

            env = DownsampleRGB(env, obs_size)
        return with_sb3_success(env)

    return make_vec_env(cfg.env_id, n_envs=cfg.num_envs, seed=cfg.seed, env_kwargs=kwargs, wrapper_class=wrap)


def train(cfg: PPOTrainConfig, callback: Any = None):
    """Train PPO on ``cfg.env_id``; writes ``cfg.out/final.zip`` (SB3's own format: ``PPO.load`` it to train
    on) and TensorBoard logs when tensorboard is installed (with ``rollout/success_rate``). ``callback``: an
    SB3 callback (e.g. a time limit). Returns the model."""
    _require_sb3()
    import torch
    from stable_baselines3 import PPO

    cfg.out.mkdir(parents=True, exist_ok=True)
    venv = make_train_env(cfg)
    try:
        import tensorboard  # noqa: F401

        tb: str | None = str(cfg.out / "tb")
    except ImportError:
        tb = None
    model = PPO(policy_class(cfg.env_id), venv, **cfg.ppo_kwargs(), seed=cfg.seed, tensorboard_log=tb,
                device="cpu" if not torch.cuda.is_available() else "auto", verbose=0)
    model.learn(cfg.timesteps, progress_bar=cfg.progress, callback=callback)
    model.save(cfg.out / "final.zip")
    venv.close()
    return model


_HYPERPARAMETERS = ("n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda", "clip_range",
                    "ent_coef", "vf_coef", "max_grad_norm")


def ppo_hyperparameters(model) -> dict[str, float | int]:
    """The PPO settings a policy trained with (a schedule read at the start of training; ``n_steps`` per env),
    as ``PPO(**...)`` takes them back: what ``load_policy(..., env=...)`` trains a loaded policy on with."""
    out: dict[str, float | int] = {}
    for name in _HYPERPARAMETERS:
        v = getattr(model, name)
        v = v(1.0) if callable(v) else v
        out[name] = int(v) if name in ("n_steps", "batch_size", "n_epochs") else float(v)
    return out


def export_policy(model, folder: Path, card: PolicyCard) -> Path:
    """Write the policy's weights (safetensors, fp32) and its card to an empty or new folder; returns it."""
    from safetensors.torch import save_model

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; export into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model.policy, str(folder / WEIGHTS))  # the shared CNN stored once (pi / vf views of it)
    card = dataclasses.replace(card, sha256=file_sha256(folder / WEIGHTS),
                               train={**card.train, "hyperparameters": ppo_hyperparameters(model),
                                      "n_envs": int(model.n_envs)})
    (folder / CONFIG).write_text(json.dumps(dataclasses.asdict(card), indent=1) + "\n")
    return folder


def read_card(folder: Path) -> PolicyCard:
    """The card (``config.json``) of an exported policy folder."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not an exported policy folder")
    return PolicyCard(**json.loads(path.read_text()))


def load_policy(folder: Path, device: str = "cpu", env: Any = None):
    """An SB3 PPO with the exported weights and PPO settings (the card's ``train["hyperparameters"]``).

    Without ``env`` it is built on one env of the card's spaces and keeps none: ready to act (``predict``);
    its rollout sizes are those settings fitted to one env (a card trained on N envs records ``n_envs``).
    To train it further pass ``env`` (a Gymnasium env or an SB3 ``VecEnv`` of the card's spaces, any number
    of envs): the model is built on it with the recorded settings as they are, and ``learn`` goes on."""
    _require_sb3()
    import warnings

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
    # cards exported before they recorded their settings: this trainer's defaults (both shipped agents' own)
    hp = dict(card.train.get("hyperparameters") or PPOTrainConfig().ppo_kwargs())
    source = gym.make(card.env_id, **card.env_kwargs)
    try:
        spaces = (source.observation_space, source.action_space)
        if env is None:
            target = source
            hp["n_steps"] = max(2, int(hp["n_steps"]))  # SB3 wants 2+ steps a rollout; no rollout is made here
            hp["batch_size"] = min(int(hp["batch_size"]), hp["n_steps"])
        else:
            target = env
            if not same_spaces((env.observation_space, env.action_space), spaces):  # frames in either order
                raise ValueError(f"env has spaces {env.observation_space} / {env.action_space}; the policy "
                                 f"of {folder} was trained on {spaces[0]} / {spaces[1]}")
        with warnings.catch_warnings():  # SB3 warns when n_steps x n_envs is not a multiple of batch_size
            warnings.simplefilter("ignore", UserWarning)
            model = PPO(card.train.get("policy", "MultiInputPolicy"), target, device=device, **hp)
    finally:
        source.close()
    load_model(model.policy, str(folder / WEIGHTS), strict=True, device=device)
    model.policy.set_training_mode(False)
    if env is None:
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
    check_observes(model, env, env_id)
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


_TRAIN_HELP = {
    "env_id": "env to train on: a GT env, or a Dream twin (frames from the world model; best with --vector)",
    "size": f"observed frame side in pixels (width = height), at least {MIN_SIZE} for NatureCNN; a Dream env "
            "dreams at its model's resolution, area-averaged to this side (which must divide it)",
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
    "vector": "collect rollouts from the native batched vector env (one render or world-model pass for all "
              "envs; same-step autoresets) instead of SB3's DummyVecEnv of single envs",
    "bf16": "a Dream env dreams under bf16 autocast (faster on a GPU)",
    "fp8": "a Dream env dreams with its world model's wide layers in FP8 (the kernel on Ada / Hopper, an "
           "emulation on the CPU, slower there): Sol-RL-style low-precision rollouts",
    "device": "where the vector env runs (cpu, cuda, cuda:1, ...; needs --vector); the policy trains on CUDA "
              "whenever there is one",
    "out": "run folder: final.zip and TensorBoard logs (when tensorboard is installed) go here",
}


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line and its ``train`` and ``export`` sub-parsers."""
    from sana_world.cli import int_at_least
    from sana_world.envs.spaces import ACTION_MODES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train PPO on a GT env or in its dream",
                       description="Train PPO on a GT env or in its Dream twin.")
    types = {"size": int_at_least(MIN_SIZE), **{k: int_at_least(1) for k in
                                                 ("num_envs", "timesteps", "n_steps", "batch_size", "n_epochs")}}
    choices = {"env_id": trainable_env_ids(), "action_mode": ACTION_MODES}
    for f in dataclasses.fields(PPOTrainConfig):
        if f.name == "progress":
            continue
        if f.type in (bool, "bool"):
            t.add_argument(f"--{f.name}", action="store_true", help=_TRAIN_HELP[f.name])
            continue
        t.add_argument(f"--{f.name.replace('_', '-')}", type=types.get(f.name, type(f.default)), default=f.default,
                       choices=choices.get(f.name), help=_TRAIN_HELP[f.name] + " (default: %(default)s)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("export", help="SB3 zip -> safetensors policy folder, with an evaluation on GT",
                       description="Export a `train` zip; frame size, action mode and steps come from the zip.")
    e.add_argument("zip", type=Path, help="final.zip written by `train`")
    e.add_argument("folder", type=Path, help="new (or empty) folder for policy.safetensors and config.json")
    e.add_argument("--env-id", default=PPOTrainConfig.env_id, choices=trainable_env_ids(),
                   help="the env it was trained on, GT or Dream; the card names and scores its GT twin "
                        "(default: %(default)s)")
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
        check_env_spaces(model, gt_twin(a.env_id), env_kwargs)
    except ValueError as err:
        e.error(f"{a.zip}: {err}")
    from sana_world.envs.world import HELDOUT_START

    ev = (evaluate(model, gt_twin(a.env_id), env_kwargs, a.eval_episodes, seed=0, scene_start=HELDOUT_START)
          if a.eval_episodes else {})  # held-out scenes, full-length episodes
    if ev:
        ev["scenes"] = f"held-out scene seeds {HELDOUT_START}..{HELDOUT_START + a.eval_episodes - 1}"
    card = PolicyCard(env_id=gt_twin(a.env_id), env_kwargs=env_kwargs, timesteps=timesteps, sha256="",
                      train={"algo": "PPO", "policy": policy_class(a.env_id), "env_id": a.env_id,
                             "source": str(a.zip)}, eval=ev)
    print("exported", export_policy(model, a.folder, card), ev)


if __name__ == "__main__":
    main()
