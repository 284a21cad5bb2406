"""benchmarks/step_flops.py: the FLOP counter's arithmetic on known ops (the CPU attention kernel included,
which torch itself does not count), and the script end to end on the shipped model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from step_flops import count_flops  # noqa: E402


def test_known_ops_are_counted_exactly() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == {"matmul": 2 * 8 * 16 * 4}
    x, w = torch.randn(1, 3, 10, 10), torch.randn(5, 3, 3, 3)  # valid conv: 8 x 8 outputs
    assert count_flops(lambda: F.conv2d(x, w)) == {"convolution": 2 * 5 * 3 * 9 * 64}
    q, k = torch.randn(2, 4, 32, 16), torch.randn(2, 4, 48, 16)  # (B, H, N, D)
    mask = torch.ones(32, 48, dtype=torch.bool)
    for m in (None, mask):  # the CPU kernel, with and without a mask
        flops = count_flops(lambda m=m: F.scaled_dot_product_attention(q, k, k, attn_mask=m))
        assert flops == {"attention": 2 * (2 * 2 * 4 * 32 * 48 * 16)}  # QK^T and PV


@pytest.mark.slow
def test_script_on_the_shipped_model(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, BENCHMARKS / "step_flops.py", "--repeats", "1", "--gemm-size", "256",
                           "--out", tmp_path], capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = tmp_path.glob("step_flops_*.json")
    r = json.loads(path.read_text())
    parts = r["gflops_per_env_step"]
    assert set(parts) == {"matmul", "attention", "convolution"}
    assert r["gflops_per_env_step_total"] == pytest.approx(sum(parts.values()))
    # one 256-token frame (the fused step of context sigma 1) through an 11 M-parameter model, attention over
    # 12 frames and the decode: well above 2 x 256 x 11e6, below the two-frame pass of stage 8 (18.6)
    assert 6 < r["gflops_per_env_step_total"] < 14 and 0 < r["gflops_per_env_decode"] < parts["convolution"]
    achieved = r["gflops_per_env_step_total"] * r["env_steps_per_s"] / 1e3
    assert r["achieved_tflops"] == pytest.approx(achieved) and r["batch"] == 1
