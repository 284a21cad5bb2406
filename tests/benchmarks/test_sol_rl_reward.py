"""sol_rl_reward.py on the CPU: a policy equal to the base scores exactly the base's rewards (paired delta 0),
an fp32 preview at the reference's step count ranks exactly as the reference, FP8 ranks close to it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_the_base_as_policy_and_the_fp32_preview_reproduce_themselves(tmp_path: Path, monkeypatch) -> None:
    import sol_rl_reward

    from sana_world.zoo import ZOO_ROOT

    image = ZOO_ROOT / "rooms-128" / "image"
    argv = ["sol_rl_reward.py", "--policy", str(image), "--prompts", "3", "--seeds", "1", "--guidance", "1.0",
            "--steps", "2", "--candidates", "4", "--keep", "1", "--preview-steps", "2", "--sample-steps", "2",
            "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    sol_rl_reward.main()
    (path,) = tmp_path.glob("sol_rl_reward_cpu*.json")
    res = json.loads(path.read_text())
    base, same = res["rows"]
    assert 0 < base["reward"] <= 1 and same["reward"] == base["reward"] and same["delta_vs_base"] == 0.0
    fm_base, fm_same = res["heldout_fm_loss"]
    assert 0 < fm_base["fm_loss"] == fm_same["fm_loss"] and fm_same["delta_vs_base"] == 0.0
    rank = {r["precision"]: r for r in res["ranking"]["rows"] if not r.get("reference")}
    assert abs(rank["fp32"]["spearman"] - 1.0) < 1e-9 and rank["fp32"]["topk_hit"] == 1.0
    assert rank["fp8"]["spearman"] > 0.5 and all(r["ms"] > 0 for r in rank.values())
    assert path.with_suffix(".png").is_file()
