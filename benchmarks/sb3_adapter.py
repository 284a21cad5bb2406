"""What the SB3 adapter costs: env steps/s of random rollouts through a native vector env itself (actions
and observations stay device tensors), through ``SB3VecEnv`` (one host copy of each batched info a step),
and through its first version (each env's info entries copied to the host one by one: thousands of tiny
device-to-host copies a step on a GPU), for the GT and the Dream vector env, in one run.

    python benchmarks/sb3_adapter.py --device cuda --num-envs 512
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, steps_per_s, write_result  # noqa: E402

from sana_world.agents.sb3_vec import SB3VecEnv, make_sb3_vec_env  # noqa: E402


class PerEnvInfos(SB3VecEnv):
    """The adapter's first version: every entry of every env's info brought to the host on its own."""

    def _env_infos(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for i in range(self.num_envs):
            row = {}
            for k, v in info.items():
                if k.startswith(("_", "final_")):
                    continue
                x = v[i]
                row[k] = x.cpu().numpy() if isinstance(x, torch.Tensor) and x.ndim else (
                    x.item() if isinstance(x, (torch.Tensor, np.generic)) else x)
            out.append(row)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-envs", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--envs", nargs="+", default=["SanaWorld/Rooms-v0", "SanaWorld/DreamRooms-v0"])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    rows = []
    for env_id in a.envs:
        dream = "Dream" in env_id
        kw: dict[str, Any] = {"action_mode": "nav", "max_episode_steps": 64, "device": a.device,
                              **({"bf16": True, "split": "train"} if dream else {"width": 64, "height": 64})}
        sb3 = make_sb3_vec_env(env_id, a.num_envs, obs_size=64 if dream else None, **kw)
        native, n = sb3.venv, a.num_envs
        old = PerEnvInfos(native, 64 if dream else None)
        rng = np.random.default_rng(0)
        acts = lambda: rng.integers(0, 3, n)  # noqa: E731
        sb3.reset()
        row = {"env_id": env_id, "num_envs": n, "episode_steps": 64,
               "native_steps_per_s": steps_per_s(lambda: native.step(torch.as_tensor(acts(), device=dev)), a.steps, n),
               "sb3vecenv_steps_per_s": steps_per_s(lambda: sb3.step(acts()), a.steps, n),
               "first_version_steps_per_s": steps_per_s(lambda: old.step(acts()), a.steps, n)}
        rows.append(row)
        print(f"{env_id:28s} native {row['native_steps_per_s']:8.1f}  SB3VecEnv {row['sb3vecenv_steps_per_s']:8.1f}"
              f"  first version {row['first_version_steps_per_s']:8.1f} env steps/s")
        sb3.close()
    write_result(a.out, "sb3_adapter", hardware(a.device), {
        "benchmark": "sb3_adapter", "date": str(date.today()), "hardware": hardware(a.device),
        "platform": platform.platform(), "torch": torch.__version__, "rows": rows}, a.suffix)


if __name__ == "__main__":
    main()
