"""Train a PPO agent inside a batch of dreams, then score it in the exact GT world it never saw.

Every env of the Dream vector env steps in one world-model pass; ``make_sb3_vec_env`` hands it to SB3 as a
``VecEnv`` (same-step autoresets, frames area-averaged to the agent's size on the device). The agent trains
on the training scenes' dreams and is scored, with its deterministic actions, on held-out scenes of the GT
twin beside a random policy of the same action space.

    python examples/ppo_in_dream.py                                   # about 3 minutes on 2 CPU cores
    python examples/ppo_in_dream.py --device cuda --num-envs 128 --timesteps 100000 --bf16
"""

from __future__ import annotations

import argparse

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from sana_world.agents.ppo import evaluate
from sana_world.agents.sb3_vec import make_sb3_vec_env


class RandomPolicy:
    """SB3's ``predict`` for uniformly random nav actions: the baseline."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, obs, deterministic: bool = False):
        return self.rng.integers(0, 3), None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--timesteps", type=int, default=1024)
    p.add_argument("--size", type=int, default=64, help="the agent's frame side")
    p.add_argument("--episode-steps", type=int, default=100)
    p.add_argument("--eval-episodes", type=int, default=4)
    p.add_argument("--bf16", action="store_true", help="dream under bf16 autocast (CUDA)")
    a = p.parse_args(argv)

    env_kwargs = {"action_mode": "nav", "max_episode_steps": a.episode_steps}
    venv = VecMonitor(make_sb3_vec_env("SanaWorld/DreamRooms-v0", a.num_envs, obs_size=a.size, device=a.device,
                                       split="train", bf16=a.bf16, **env_kwargs))
    n_steps = max(8, min(128, a.timesteps // a.num_envs))
    model = PPO("CnnPolicy", venv, n_steps=n_steps, batch_size=min(256, n_steps * a.num_envs), seed=0,
                device=a.device if a.device.startswith("cuda") else "cpu")
    model.learn(a.timesteps, progress_bar=True)  # 1. training, in the dream only
    venv.close()
    # 2. the GT twin's held-out scenes: GT frames at the dream's 128², area-averaged as the agent saw them
    scores = {name: evaluate(policy, "SanaWorld/Rooms-v0", env_kwargs, a.eval_episodes, seed=0,
                             max_steps=a.episode_steps, obs_size=a.size)
              for name, policy in (("PPO trained in the dream", model), ("random", RandomPolicy(0)))}
    for name, s in scores.items():
        print(f"{name:26s} mean GT return {s['mean_return']:+.3f} over {a.eval_episodes} held-out scenes")


if __name__ == "__main__":
    main()
