"""profile_dream_env.py on the CPU: the parts of a Dream vector env's step, an autoreset included, are each
measured and add up to the loop's own clock."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_parts_add_up_to_the_step(tmp_path: Path, monkeypatch) -> None:
    import profile_dream_env

    argv = ["profile_dream_env.py", "--device", "cpu", "--batch", "2", "--warmup", "1", "--steps", "3",
            "--episode-steps", "2", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    profile_dream_env.main()
    (path,) = tmp_path.glob("profile_dream_env_cpu*.json")
    ms = json.loads(path.read_text())["ms_per_step"]
    for part in ("move", "gt render", "score", "dream", "reset", "step"):
        assert ms[part] > 0, part  # the episodes of 2 steps end inside the timed steps: a reset is timed
    assert 0 < ms["rest"] < ms["step"] and ms["dream"] < ms["step"]
    assert abs(ms["step"] - ms["wall"]) < 0.1 * ms["wall"] + 5  # nothing counted twice or left out
