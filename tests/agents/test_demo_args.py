"""The demo's arguments fail before any model loads; the module runs as ``python -m`` with --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sana_world.agents import demo
from sana_world.agents.demo import DemoConfig, run_demo
from sana_world.cli import main


def _no_models(*args, **kwargs):
    raise AssertionError("models were loaded before the arguments were checked")


def test_an_existing_file_as_out_fails_before_loading(tmp_path, monkeypatch, capsys) -> None:
    import gymnasium

    monkeypatch.setattr(gymnasium, "make", _no_models)
    monkeypatch.setattr(demo, "run_demo", _no_models)
    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        run_demo(DemoConfig(out=taken, steps=1, prompt_steps=0, ppo_steps=0, progress=False))
    with pytest.raises(SystemExit) as e:
        main(["demo", "--steps", "1", "--prompt-steps", "0", "--ppo-steps", "0", "--out", str(taken)])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a file further up the path
        main(["demo", "--out", str(taken / "sub")])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err


def test_module_prints_help() -> None:
    run = subprocess.run([sys.executable, "-m", "sana_world.agents.demo", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "--prompt-steps" in run.stdout, run.stderr


def test_a_missing_model_fails_before_loading(tmp_path, monkeypatch, capsys) -> None:
    import gymnasium

    monkeypatch.setattr(gymnasium, "make", _no_models)
    monkeypatch.setattr(demo, "run_demo", _no_models)
    with pytest.raises(SystemExit) as e:
        main(["demo", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--model" in err and "nope" in err


def test_policy_argument_is_checked_before_loading(tmp_path, monkeypatch, capsys) -> None:
    import json
    import shutil

    import gymnasium

    from sana_world.agents.ppo import shipped_policy

    monkeypatch.setattr(gymnasium, "make", _no_models)
    monkeypatch.setattr(demo, "run_demo", _no_models)
    with pytest.raises(SystemExit) as e:
        main(["demo", "--policy", "no-such-agent", "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "pointnav-64" in capsys.readouterr().err  # lists the shipped ones
    odd = tmp_path / "odd"
    shutil.copytree(shipped_policy("pointnav-64"), odd)
    card = json.loads((odd / "config.json").read_text())
    card["env_kwargs"].update(width=48, height=48)
    (odd / "config.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit) as e:
        main(["demo", "--policy", str(odd), "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "48" in capsys.readouterr().err
    rooms = tmp_path / "rooms"  # a card of another task (ppo export writes Rooms-v0 CnnPolicy cards too)
    shutil.copytree(shipped_policy("pointnav-64"), rooms)
    card["env_kwargs"].update(width=64, height=64)
    card["env_id"] = "SanaWorld/Rooms-v0"
    (rooms / "config.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit) as e:
        main(["demo", "--policy", str(rooms), "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "Rooms-v0" in capsys.readouterr().err
