"""PPO on the native batched vector envs: how fast rollouts and training run, and whether a policy trained
only in the dream acts well in the GT world.

1. Speed (same run, same machine): env steps/s of random rollouts and of PPO training (rollouts + updates)
   through SB3's DummyVecEnv of single GT envs on the CPU (what ``ppo train`` does without ``--vector``),
   the native GT vector env and the native Dream vector env on ``--device``.
2. Dream -> GT: PPO trains in ``--dream-env`` for ``--dream-seconds`` (native vector env), a twin trains
   on its GT env for the same number of steps; both, and a uniformly random policy, are scored on the GT
   env's held-out scenes (deterministic actions, one episode per scene, batched).

    python benchmarks/vector_ppo.py --device cuda --num-envs 64 --dream-seconds 240
    python benchmarks/vector_ppo.py --smoke          # a CPU check of the whole script in about a minute
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, steps_per_s, write_result  # noqa: E402

from sana_world.agents.ppo import gt_twin, policy_class  # noqa: E402
from sana_world.agents.sb3_vec import make_sb3_vec_env  # noqa: E402
from sana_world.envs.world import HELDOUT_START  # noqa: E402


def time_limit(seconds: float):
    """An SB3 callback that stops ``learn`` after ``seconds`` of wall time."""
    from stable_baselines3.common.callbacks import BaseCallback

    class TimeLimit(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            return time.perf_counter() - self.t0 < seconds

    return TimeLimit()


def make_env(kind: str, env_id: str, n: int, size: int, device: str, kwargs: dict[str, Any]):
    """An SB3 VecEnv: ``dummy`` (single envs on the CPU, as ``ppo train`` without --vector) or ``vector``."""
    from stable_baselines3.common.vec_env import VecMonitor

    from sana_world.agents.ppo import PPOTrainConfig, make_train_env

    if kind == "dummy":
        cfg = PPOTrainConfig(env_id=env_id, size=size, num_envs=n, action_mode=kwargs.get("action_mode", "twist"))
        return make_train_env(cfg)  # SB3's Monitor wraps each env
    obs_size = size if env_id != gt_twin(env_id) else None
    env_kwargs = dict(kwargs) if obs_size else {**kwargs, "width": size, "height": size}
    return VecMonitor(make_sb3_vec_env(env_id, n, obs_size=obs_size, device=device, **env_kwargs))


def rollout_speed(venv, steps: int) -> float:
    """Env steps/s of uniformly random actions (after a few warm-up steps)."""
    venv.reset()
    return steps_per_s(lambda: venv.step(np.stack([venv.action_space.sample() for _ in range(venv.num_envs)])),
                       steps, venv.num_envs)


def ppo(venv, env_id: str, a: argparse.Namespace):
    from stable_baselines3 import PPO

    return PPO(policy_class(env_id), venv, n_steps=a.n_steps, batch_size=a.batch_size, n_epochs=a.n_epochs,
               learning_rate=a.lr, seed=0, verbose=0, device="cuda" if torch.cuda.is_available() else "cpu")


def train_speed(venv, env_id: str, a: argparse.Namespace) -> float:
    """Env steps/s of PPO training (rollouts and updates) over two rollouts after a first one."""
    model = ppo(venv, env_id, a)
    model.learn(a.n_steps * venv.num_envs)  # the first rollout and update (warm-up)
    t0 = time.perf_counter()
    model.learn(2 * a.n_steps * venv.num_envs, reset_num_timesteps=False)
    return 2 * a.n_steps * venv.num_envs / (time.perf_counter() - t0)


def fixed_actions(action_mode: str) -> dict[str, np.ndarray]:
    """The fixed-action baselines: always straight ahead, always turning left (a scan in place)."""
    if action_mode == "nav":
        return {"always forward": np.array(0), "always turn left": np.array(1)}
    if action_mode == "twist":
        return {"always forward": np.array([1, 0, 0, 0, 0, 0], np.float32),
                "always turn left": np.array([0, 0, 0, 1, 0, 0], np.float32)}
    return {"always forward": np.array([1, 0, 0, 0, 0, 0, 0, 0], np.int8),
            "always turn left": np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int8)}


def evaluate(policy, env_id: str, scenes: int, size: int, device: str, kwargs: dict[str, Any],
             render_size: int | None = None) -> dict[str, float]:
    """One episode in each of ``scenes`` held-out scenes of GT ``env_id``, all envs as one batch; ``policy``
    None acts uniformly at random, a numpy array is one fixed action. Mean return (± std over scenes),
    success rate, and how often each action was taken (discrete actions)."""
    side = render_size or size  # GT rendered at this side, area-averaged to ``size`` (as a dream is)
    venv = make_sb3_vec_env(env_id, scenes, obs_size=size, device=device, width=side, height=side, **kwargs)
    venv.set_options({"scene_seed": list(range(HELDOUT_START, HELDOUT_START + scenes))})
    venv.seed(12345)
    obs = venv.reset()
    ret, done, success = np.zeros(scenes), np.zeros(scenes, bool), np.zeros(scenes, bool)
    counts = np.zeros(getattr(venv.action_space, "n", 0), np.int64)
    while not done.all():  # 1. step every env until each has ended its first episode
        if policy is None:
            action = np.stack([venv.action_space.sample() for _ in range(scenes)])
        elif isinstance(policy, np.ndarray):
            action = np.stack([policy] * scenes)
        else:
            action, _ = policy.predict(obs, deterministic=True)
        if counts.size:
            counts += np.bincount(np.asarray(action)[~done], minlength=counts.size)
        obs, r, d, infos = venv.step(action)
        ret += np.where(done, 0.0, r)
        for i in np.flatnonzero(d & ~done):
            success[i] = bool(infos[i].get("success", False))
        done |= d
    venv.close()
    out = {"mean_return": float(ret.mean()), "std_return": float(ret.std()),
           "success_rate": float(success.mean()), "episodes": scenes}
    if counts.size:
        out["action_share"] = (counts / counts.sum()).round(4).tolist()
    return out


def score_on_gt(models: dict[str, Any], gt_id: str, a: argparse.Namespace, kwargs: dict[str, Any]) -> dict:
    """Random, fixed-action baselines and each trained model on the GT env's held-out scenes."""
    policies = {"random": None, **fixed_actions(a.action_mode), **models}
    evals = {name: evaluate(m, gt_id, a.eval_scenes, a.size, a.device, kwargs, a.eval_render_size)
             for name, m in policies.items()}
    for name, ev in evals.items():
        print(f"{name:28s} GT return {ev['mean_return']:7.3f} ± {ev['std_return']:.3f}  "
              f"success {ev['success_rate']:.2f}  actions {ev.get('action_share')}")
    return evals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-envs", type=int, default=64, help="envs of the native vector envs")
    p.add_argument("--dummy-envs", type=int, default=8, help="single envs of the DummyVecEnv baseline")
    p.add_argument("--dream-env", default="SanaWorld/DreamRooms-v0")
    p.add_argument("--action-mode", default="nav")
    p.add_argument("--size", type=int, default=64, help="frame side the agent sees")
    p.add_argument("--episode-steps", type=int, default=250, help="max_episode_steps of every env")
    p.add_argument("--speed-steps", type=int, default=20, help="vector steps of each rollout-speed row")
    p.add_argument("--dream-seconds", type=float, default=240.0)
    p.add_argument("--eval-scenes", type=int, default=64)
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--n-epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--bf16", action="store_true", help="dream under bf16 autocast")
    p.add_argument("--renderer", default="auto", choices=["auto", "torch", "open3d"],
                   help="GT renderer (auto: open3d on a CPU, the torch ray caster on CUDA; pass torch on a CPU to "
                        "score zips on the frames a GPU run trained on)")
    p.add_argument("--save-dir", type=Path, default=None, help="write the trained zips here")
    p.add_argument("--eval-render-size", type=int, default=None,
                   help="score on GT frames rendered at this side and area-averaged to --size, as the dream's 128² "
                        "frames were in training (default: rendered at --size)")
    p.add_argument("--eval-only", type=Path, default=None,
                   help="score the zips a run saved (ppo_dream.zip, ppo_gt.zip in this folder) and the baselines "
                        "on GT held-out scenes; nothing is trained or timed")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, CPU: checks the script end to end")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    if a.smoke:
        a.device, a.num_envs, a.dummy_envs, a.speed_steps, a.dream_seconds = "cpu", 2, 2, 2, 5.0
        a.eval_scenes, a.n_steps, a.batch_size, a.n_epochs, a.episode_steps = 2, 8, 16, 1, 12
    check_device(p, a.device)
    gt_id = gt_twin(a.dream_env)
    kwargs: dict[str, Any] = {"max_episode_steps": a.episode_steps, "action_mode": a.action_mode,
                              "renderer": a.renderer}
    # the dream trains on the training scenes' split (a Dream env's default is the held-out one, scored below)
    dream_kwargs = {**kwargs, "split": "train", **({"bf16": True} if a.bf16 else {})}
    if a.eval_only is not None:
        from stable_baselines3 import PPO

        models = {f"PPO trained {where}": PPO.load(a.eval_only / f"ppo_{key}.zip", device="cpu")
                  for key, where in (("dream", "in the dream"), ("gt", "on GT"))}
        evals = score_on_gt(models, gt_id, a, kwargs)
        result = {"benchmark": "vector_ppo_eval", "date": str(date.today()), "hardware": hardware(a.device),
                  "torch": torch.__version__, "args": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(a).items()},
                  "rows": [{"policy": k, **v} for k, v in evals.items()]}
        write_result(a.out, "vector_ppo_eval", result["hardware"], result, a.suffix)
        return
    result: dict[str, Any] = {"benchmark": "vector_ppo", "date": str(date.today()), "hardware": hardware(a.device),
                              "platform": platform.platform(), "torch": torch.__version__, "args": {
                                  k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "rows": []}
    # 1. speed: random rollouts and PPO training, three ways
    cases = [("dummy (CPU single envs)", "dummy", gt_id, a.dummy_envs, kwargs),
             (f"GT vector ({a.device})", "vector", gt_id, a.num_envs, kwargs),
             (f"Dream vector ({a.device})", "vector", a.dream_env, a.num_envs, dream_kwargs)]
    for name, kind, env_id, n, kw in cases:
        venv = make_env(kind, env_id, n, a.size, a.device, kw)
        row = {"case": name, "env_id": env_id, "num_envs": n, "rollout_steps_per_s": rollout_speed(venv, a.speed_steps),
               "ppo_steps_per_s": train_speed(venv, env_id, a)}
        venv.close()
        result["rows"].append(row)
        print(f"{name:28s} rollout {row['rollout_steps_per_s']:9.1f} steps/s   "
              f"PPO {row['ppo_steps_per_s']:9.1f} steps/s")
    if a.dream_seconds <= 0:  # speed only
        write_result(a.out, "vector_ppo", result["hardware"], result, a.suffix)
        return
    # 2. dream -> GT: train in the dream for a time, on GT for as many steps, score both on GT held-out scenes
    venv = make_env("vector", a.dream_env, a.num_envs, a.size, a.device, dream_kwargs)
    t0 = time.perf_counter()
    dream_model = ppo(venv, a.dream_env, a).learn(10**9, callback=time_limit(a.dream_seconds))
    dream_s, steps = time.perf_counter() - t0, int(dream_model.num_timesteps)
    dream_curve = [float(e["r"]) for e in dream_model.ep_info_buffer]
    venv.close()
    venv = make_env("vector", gt_id, a.num_envs, a.size, a.device, kwargs)
    t0 = time.perf_counter()
    gt_model = ppo(venv, gt_id, a).learn(steps)
    gt_s = time.perf_counter() - t0
    venv.close()
    if a.save_dir is not None:
        a.save_dir.mkdir(parents=True, exist_ok=True)
        dream_model.save(a.save_dir / "ppo_dream.zip")
        gt_model.save(a.save_dir / "ppo_gt.zip")
    evals = score_on_gt({"PPO trained in the dream": dream_model, "PPO trained on GT": gt_model}, gt_id, a, kwargs)
    result["transfer"] = {"train_env": a.dream_env, "eval_env": gt_id, "timesteps": steps,
                          "dream_train_s": dream_s, "gt_train_s": gt_s,
                          "dream_last_100_episode_returns_mean": float(np.mean(dream_curve)) if dream_curve else None,
                          "eval": evals,
                          "scenes": f"held-out scene seeds {HELDOUT_START}..{HELDOUT_START + a.eval_scenes - 1}"}
    if not a.smoke:
        write_result(a.out, "vector_ppo", result["hardware"], result, a.suffix)


if __name__ == "__main__":
    main()
