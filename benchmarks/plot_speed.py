"""One picture of the batched dream's speed against its goal and its floor, from committed results files.

Bars: measured env / dream steps/s (eager and compiled) from a ``dream_env`` file; lines: the goal and the
bound of a ``step_flops`` file (steps/s if every FLOP of a step ran at the machine's best bf16 GEMM rate).

    python benchmarks/plot_speed.py \
        --speed benchmarks/results/dream_env_nvidia-h100-80gb-hbm3_20261206_compiled.json \
        --flops benchmarks/results/step_flops_nvidia-h100-80gb-hbm3_20261206_b512_bf16.json \
        --out benchmarks/results/dream_speed_nvidia-h100-80gb-hbm3_20261206.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def bars(speed: dict) -> list[tuple[str, float]]:
    """(label, steps/s) of every measured row, in file order."""
    return [(f"{r['kind']}\nbatch {r['batch']}", r["steps_per_s"]) for r in speed["rows"] if "steps_per_s" in r]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", type=Path, required=True, help="a dream_env results file")
    p.add_argument("--flops", type=Path, required=True, help="a step_flops results file of the same hardware")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    speed, flops = json.loads(a.speed.read_text()), json.loads(a.flops.read_text())
    if speed["hardware"] != flops["hardware"]:
        raise ValueError(f"{a.speed} is {speed['hardware']}, {a.flops} is {flops['hardware']}: one machine only")
    rows = bars(speed)
    if not rows:
        raise ValueError(f"{a.speed} has no measured rows")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    colors = ["tab:green" if "compiled" in label else "tab:gray" for label, _ in rows]
    ax.bar(range(len(rows)), [v for _, v in rows], color=colors)
    for i, (_, v) in enumerate(rows):  # 1. the value on each bar
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    goal, floor = flops["target_env_steps_per_s"], flops["floor_env_steps_per_s"]["bfloat16"]
    ax.axhline(goal, color="tab:red", ls="--", label=f"goal {goal:,.0f}")
    ax.axhline(floor, color="tab:blue", ls=":", label=f"bound: every FLOP at the best bf16 GEMM rate, {floor:,.0f}")
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(top=max(floor, goal) * 5)  # room above the lines for the legend
    ax.set_ylabel("env steps/s (log)")
    ax.set_title(f"{speed['model']} dream, {speed['hardware']}, "
                 f"{flops['gflops_per_env_step_total']:.2f} GFLOP a step", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
