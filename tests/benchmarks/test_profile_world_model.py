"""benchmarks/profile_world_model.py --smoke: every block child is timed once per block, kernels are listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sana_world.world_model import tiny

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_profile_smoke(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, BENCHMARKS / "profile_world_model.py", "--smoke", "--calls", "2",
                           "--out", tmp_path], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = tmp_path.glob("profile_world_model_cpu*_*.json")  # cpu<cores>
    report = json.loads(path.read_text())
    assert report["preset"] == "tiny" and report["latent_frames"] == 5
    calls = report["module_calls_per_forward"]
    # every block's children are timed once per forward (tiny: GDN blocks and softmax every n-th)
    cfg = tiny()
    assert calls["softmax.ffn"] == cfg.num_layers // cfg.softmax_every_n >= 1
    assert calls["gdn.ffn"] + calls["softmax.ffn"] == cfg.num_layers and calls["top.patch_embed"] == 1
    ms = report["modules_ms"]
    assert all(v >= 0 for v in ms.values()) and ms["gdn.attn"] > 0
    # children of a block run inside the forward: their sum cannot exceed it by much (timer noise)
    blocks = sum(v for k, v in ms.items() if k.count(".") == 1 and not k.startswith("top."))
    assert blocks <= 1.2 * report["hooked_forward_ms"]
    assert report["top_kernels"] and report["kernels_per_forward"] > 0
