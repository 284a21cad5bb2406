"""What every benchmark script checks before it measures (benchmarks/results_io.py): a device this machine
lacks is a usage error before anything loads, a result with no rows is never written (it would replace the
day's real file), results are named ``cpu<cores>`` or after the CUDA card and go to ``results/`` beside the
scripts whatever the working directory; and a few scripts' own flags."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from results_io import check_device, hardware, write_result  # noqa: E402

SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
CUDA = torch.cuda.is_available()


def test_a_result_without_rows_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows measured"):
        write_result(tmp_path, "bench", "cpu2", {"rows": []})
    assert not any(tmp_path.iterdir())
    path = write_result(tmp_path, "bench", "cpu2", {"rows": [{"ms": 1.0}]}, "_b1", quiet=True)
    assert path == tmp_path / f"bench_cpu2_{date.today():%Y%m%d}_b1.json"
    assert json.loads(path.read_text()) == {"rows": [{"ms": 1.0}]}
    assert write_result(tmp_path, "flops", "cpu2", {"gemm": [1]}, quiet=True).is_file()  # no rows to check


def test_cpu_hardware_is_named_by_cores() -> None:
    assert hardware("cpu") == hardware(torch.device("cpu")) == f"cpu{os.cpu_count()}"
    if not CUDA:
        assert hardware() == f"cpu{os.cpu_count()}"


@pytest.mark.parametrize("name, reason", [("cuda:x", "not a torch device"), ("mps", "run on cpu or cuda")]
                         + ([] if CUDA else [("cuda", "needs a CUDA device")]))  # fmt: skip
def test_a_missing_device_is_a_usage_error(name: str, reason: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        check_device(argparse.ArgumentParser(prog="bench"), name)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: bench") and reason in err
    assert check_device(argparse.ArgumentParser(), "cpu") == torch.device("cpu")


# each asks for CUDA (or for GPU rows only): on a machine without it, a usage error and no file
NEEDS_CUDA = [["sdpa_window.py"], ["dream_env.py", "--device", "cuda"], ["dream_resets.py", "--device", "cuda"],
              ["step_flops.py", "--device", "cuda"], ["fidelity.py", "--device", "cuda"],
              ["teacher_forced.py", "--device", "cuda"], ["decoder_ab.py", "--b", "x", "--device", "cuda"],
              ["profile_dream_gpu.py"], ["render.py", "--only", "cuda"], ["env_speed.py", "--no-cpu"],
              ["vector_env_gpu.py"]]


@pytest.mark.skipif(CUDA, reason="checks a machine without CUDA")
@pytest.mark.parametrize("args", NEEDS_CUDA, ids=lambda a: " ".join(a))
def test_cuda_is_refused_before_anything_runs(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, BENCHMARKS / args[0], *args[1:], "--out", tmp_path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error:" in proc.stderr and "needs a CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_and_results_folder(script: Path) -> None:
    """--help shows the docstring's whole first paragraph (not its first line), and no --out defaults to a
    folder relative to the working directory."""
    src = script.read_text()
    assert '__doc__.split("\\n")[0]' not in src
    assert 'default="benchmarks/results"' not in src and 'Path("benchmarks/results")' not in src
    first = (ast.get_docstring(ast.parse(src)) or "").split("\n\n")[0]
    assert first.rstrip().endswith((".", "?")), first


def test_smoke_training_profile_is_eager() -> None:
    """--smoke never compiles (compiling does not finish in minutes on 2 CPU cores)."""
    from profile_training import parse_args

    assert parse_args([]).compile and not parse_args(["--no-compile"]).compile
    assert not parse_args(["--smoke"]).compile
    assert Path(parse_args([]).out) == BENCHMARKS / "results"


def test_agent_transfer_takes_shipped_names_and_folders(tmp_path: Path) -> None:
    from agent_transfer import policy_folder

    from sana_world.agents.ppo import shipped_policy

    assert policy_folder("pointnav-64-nav") == shipped_policy("pointnav-64-nav")
    assert policy_folder(str(shipped_policy())) == shipped_policy()
    with pytest.raises(argparse.ArgumentTypeError, match="neither an exported policy folder.*pointnav-64-nav"):
        policy_folder(str(tmp_path))
