"""The paper-scale model benchmarks in --smoke mode (tiny fp32 configs on CPU): every row runs or says why
not, ours matches diffusers, the time budget skips and interrupts rows, and the JSON keeps everything."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = ("sana_image", "world_model")
REL_TOL = 1e-4  # fp32 parity of ours against diffusers (the models' parity tests use 1e-5 and 1e-4)
HAS_TRITON = importlib.util.find_spec("triton") is not None  # an optional extra ([triton]); CI has none
# Rows that cannot run on a CPU or that do not apply, by method suffix, with the starts of their reasons.
SKIPPED = {"cudagraph": ("skipped: needs CUDA",),
           "ours+triton": ("skipped: the Triton GDN scan needs CUDA",)
           + (() if HAS_TRITON else ("TritonUnavailableError",))}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Both scripts' --smoke JSON, plus sana_image with a zero budget; the processes run side by side."""
    out = tmp_path_factory.mktemp("bench")
    runs = {name: [name, "--smoke"] for name in SCRIPTS}
    runs["no_budget"] = ["sana_image", "--smoke", "--time-budget-s", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the two cores are shared by the processes
    procs = {
        key: subprocess.Popen([sys.executable, BENCHMARKS / f"{script}.py", *args, "--out", out / key],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for key, (script, *args) in runs.items()
    }  # fmt: skip
    data = {}
    for key, proc in procs.items():
        log, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, log[-3000:]
        (path,) = (out / key).glob(f"{runs[key][0]}_*_*.json")
        data[key] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("name", SCRIPTS)
def test_rows_run_and_match_diffusers(results, name):
    data = results[name]
    assert data["meta"]["benchmark"] == name and data["meta"]["torch"] and data["meta"]["diffusers"]
    rows = data["rows"]
    compared = 0
    for row in rows:
        reason = next((v for k, v in SKIPPED.items() if row["method"].endswith(k)), None)
        if reason is not None and row["error"] is not None:
            assert row["error"].startswith(reason), row
            continue
        assert row["error"] is None, row
        assert 0 < row["ms_min"] <= row["ms"] < math.inf and row["first_call_ms"] > 0, row
        assert row["info"]["finite"], row
        if row["rel_err"] is not None:
            compared += 1
            assert row["rel_err"] < REL_TOL and row["max_abs_err"] < REL_TOL, row
            assert row["speedup"] > 0, row
    methods = {row["method"] for row in rows}
    assert {"diffusers", "ours", "ours+compile"} <= methods
    assert compared >= 3
    assert data["summary"], "no bars / summary"


def test_image_rows_and_bars(results):
    rows = results["sana_image"]["rows"]
    triton = [r for r in rows if r["method"] == "ours+triton"]  # triton's CPU interpreter in smoke runs
    assert len(triton) == 3
    if HAS_TRITON:
        assert all(r["rel_err"] < REL_TOL for r in triton)
    else:  # recorded as not run, with the reason, and the table goes on
        assert all(r["ms"] is None and r["error"].startswith("TritonUnavailableError") for r in triton)
    decoder = [r for r in rows if r["group"].startswith("dc_ae")]
    assert {r["method"] for r in decoder} >= {"eager", "channels_last", "channels_last+compile"}
    bars = results["sana_image"]["summary"]
    assert len(bars) == 3 and all(b["met"] in (True, False) and b["value"] > 0 for b in bars)


def test_world_model_stream_row(results):
    (stream,) = [r for r in results["world_model"]["rows"] if "stream" in r["group"]]
    info = stream["info"]
    assert info["model_passes"] == 5 and info["video_frames"] == 3 * 2  # tiny: Plücker stride 2
    assert info["realtime_factor"] == pytest.approx(info["video_frames"] / info["fps"] / (stream["ms"] / 1e3))
    assert info["frames_streamed"] >= 3 * 4 and info["state_mib"] > 0


def test_zero_budget_skips_every_row_and_still_writes(results):
    data = results["no_budget"]
    assert data["rows"] and all(r["error"].startswith("skipped") for r in data["rows"])
    assert {r["group"] for r in data["rows"]} == {"tiny", "tiny_sprint", "dc_ae_f8c16_lite decode"}
    assert all(b["met"] is None for b in data["summary"])


def test_budget_alarm_interrupts_a_running_row(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from sana_image import Runner, smoke_config

    def slow_call() -> torch.Tensor:
        time.sleep(0.05)
        return torch.zeros(1)

    cfg = smoke_config(str(tmp_path))
    r = Runner("alarm", cfg, budget_s=0.3, warmup=1, reps=20, dtype="float32", row_s=0.0, out=cfg.out)
    try:
        slow = r.run("g", "slow", 1, slow_call)
        after = r.run("g", "next", 1, lambda: torch.zeros(1))
    finally:
        r.close()
    assert slow.error.startswith("BudgetExceeded: interrupted") and slow.ms is None
    assert after.error.startswith("skipped: time budget")
    assert [row["method"] for row in json.loads(r.path.read_text())["rows"]] == ["slow", "next"]
