"""Does an agent trained on GT frames still act in the dream? The shipped PPO PointNav agent on held-out
scenes, in the GT env and in its Dream twin (same scenes, starts, goals and step cap), beside a random and a
standing-still policy and the agent with its frames zeroed. The Dream env dreams 128² frames; the agent
(trained on 64² GT renders) sees them area-averaged to 64², so the GT env is also scored that way (128²
renders, averaged) to separate the resize from the dream.

    python benchmarks/agent_transfer.py --episodes 8 --max-steps 100 [--policy pointnav-64-nav | FOLDER]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from sana_world.agents.ppo import (CONFIG, evaluate, load_policy, read_card, shipped_policies, shipped_policy,
                                   task_kwargs)
from sana_world.envs.world import HELDOUT_START

sys.path.insert(0, str(Path(__file__).parent))
from results_io import write_result  # noqa: E402


class Constant:
    """A baseline policy: zeros (stand still; twist actions only) or uniform random actions of ``space``."""

    def __init__(self, kind: str, space, seed: int = 0) -> None:
        if kind == "still" and space.shape != (6,):
            raise ValueError("'still' needs twist actions (the zero twist)")
        self.kind, self.space = kind, copy.deepcopy(space)  # seeded here: the policy's own space is left alone
        self.space.seed(seed)

    def predict(self, obs, deterministic: bool = True):
        return (np.zeros(6, np.float32) if self.kind == "still" else self.space.sample()), None


class Blind:
    """The agent with its frames blanked (goal vector only): how much of its skill needs the frames."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def predict(self, obs, deterministic: bool = True):
        return self.policy.predict({**obs, "rgb": np.zeros_like(obs["rgb"])}, deterministic=deterministic)


def policy_folder(spec: str) -> Path:
    """An exported policy folder (one with a ``config.json``), or the name of a shipped policy."""
    if (Path(spec) / CONFIG).is_file():
        return Path(spec)
    try:
        return shipped_policy(spec)
    except ValueError:
        names = ", ".join(shipped_policies())
        raise argparse.ArgumentTypeError(f"{spec!r} is neither an exported policy folder (no {CONFIG} in it) "
                                         f"nor a shipped policy ({names})") from None


def count(text: str) -> int:
    """A number of episodes: 0 or more."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n}: episodes cannot be negative")
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", type=policy_folder, default=shipped_policy(),
                   help=f"a shipped policy ({', '.join(shipped_policies())}) or an exported policy folder")
    p.add_argument("--episodes", type=count, default=8, help="episodes in each GT env row (0: no GT rows)")
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--dream-episodes", type=count, default=None,
                   help="episodes in the Dream env (default: --episodes; 0: no Dream row)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    dream_n = a.episodes if a.dream_episodes is None else a.dream_episodes
    if a.episodes == dream_n == 0:
        p.error("--episodes 0 and --dream-episodes 0: nothing to measure")
    torch.set_num_threads(a.threads)
    card = read_card(a.policy)
    gt_id, dream_id = card.env_id, card.env_id.replace("SanaWorld/", "SanaWorld/Dream")
    policy = load_policy(a.policy)
    kw, size, task = dict(card.env_kwargs), int(card.env_kwargs["width"]), task_kwargs(card.env_kwargs)
    common = dict(seed=0, max_steps=a.max_steps, scene_start=HELDOUT_START)
    rows = {}
    runs = [("ppo / GT", policy, gt_id, kw, None, a.episodes),  # name, agent, env, env kwargs, obs size, episodes
            ("ppo / GT 128 area-averaged", policy, gt_id, task, size, a.episodes),
            ("ppo blind (frames zeroed) / GT", Blind(policy), gt_id, kw, None, a.episodes),
            ("random / GT", Constant("random", policy.action_space), gt_id, kw, None, a.episodes),
            ("ppo / dream 128 area-averaged", policy, dream_id, task, size, dream_n)]
    if policy.action_space.shape == (6,):  # standing still is a twist of zeros
        runs.insert(4, ("still / GT", Constant("still", policy.action_space), gt_id, kw, None, a.episodes))
    for name, agent, env_id, env_kw, obs_size, n in runs:  # 1. every agent and env asked for
        if n == 0:
            continue
        t0 = time.perf_counter()
        rows[name] = {**evaluate(agent, env_id, env_kw, n, obs_size=obs_size, **common), "env": env_id,
                      "env_kwargs": env_kw, "obs_size": obs_size, "seconds": time.perf_counter() - t0}
        print(f"{name:<12} {rows[name]}", flush=True)
    result = {"benchmark": "agent_transfer", "date": date.today().isoformat(), "hardware": f"cpu{a.threads}",
              "platform": platform.platform(), "torch": torch.__version__, "policy": str(a.policy),
              "policy_card": card.__dict__, "episodes": a.episodes, "dream_episodes": dream_n,
              "max_steps": a.max_steps,
              "scenes": f"held-out scene seeds {HELDOUT_START}..", "rows": rows}
    write_result(a.out, "agent_transfer", f"cpu{a.threads}", result)


if __name__ == "__main__":
    main()
