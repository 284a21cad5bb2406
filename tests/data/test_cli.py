"""The sana-world command line: generate -> verify -> render, and clear errors for bad arguments."""

from __future__ import annotations

import pytest

from sana_world.cli import main
from sana_world.video import read_video


def test_generate_verify_render(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["data", "generate", "--out", str(data), "--trajectories", "2", "--steps", "5",
                 "--size", "24", "--shard-size", "1", "--seed", "3", "--policy", "explore",
                 "--no-progress"]) == 0
    assert "wrote 2 trajectories in 2 shard(s)" in capsys.readouterr().out
    assert main(["data", "verify", str(data)]) == 0
    assert "ok: 2 trajectories" in capsys.readouterr().out

    # a new trajectory: RGB | depth | normal
    out = tmp_path / "gt.mp4"
    sheet = tmp_path / "sheet.png"
    assert main(["render", "--seed", "3", "--steps", "5", "--size", "24", "--out", str(out), "--layout",
                 "rgb,depth,normal", "--contact-sheet", str(sheet), "--sheet-frames", "4",
                 "--no-progress"]) == 0
    frames = read_video(out)
    assert frames.shape == (6, 24, 3 * 24 + 2 * 2, 3)
    assert sheet.is_file()

    # a stored trajectory as a gif
    gif = tmp_path / "stored.gif"
    assert main(["render", "--shard", str(data / "shard-00001.safetensors"), "--index", "0",
                 "--out", str(gif)]) == 0
    assert read_video(gif).shape[1:] == (24, 2 * 24 + 2, 3)
    assert "scene 4" in capsys.readouterr().out  # shard 1 holds trajectory 1: scene seed 3 + 1


def test_verify_reports_a_corrupted_shard(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["data", "generate", "--out", str(data), "--trajectories", "1", "--steps", "2", "--size", "8",
                 "--no-progress"]) == 0
    shard = data / "shard-00000.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0x01
    shard.write_bytes(bytes(raw))
    assert main(["data", "verify", str(data)]) == 1
    err = capsys.readouterr().err
    assert "shard-00000.safetensors" in err and "sha256" in err
    # an existing dataset is not overwritten by accident
    assert main(["data", "generate", "--out", str(data), "--trajectories", "1", "--steps", "2", "--size", "8",
                 "--no-progress"]) == 1
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "generate", "--out", "x", "--trajectories", "0"], "positive integer"),
        (["data", "generate", "--out", "x", "--trajectories", "2", "--policy", "fly"], "invalid choice"),
        (["data", "generate", "--trajectories", "2"], "--out"),
        (["render", "--out", "a.mp4"], "exactly one of --seed"),
        (["render", "--seed", "1", "--shard", "s.safetensors", "--out", "a.mp4"], "exactly one of --seed"),
        (["render", "--seed", "1", "--out", "a.avi"], ".mp4 or .gif"),
        (["render", "--seed", "1", "--out", "a.mp4", "--layout", "rgb,sky"], "--layout"),
        (["render", "--seed", "1", "--out", "a.mp4", "--fov", "200"], "field of view"),
        (["render", "--shard", "missing.safetensors", "--out", "a.mp4"], "does not exist"),
        (["render", "--seed", "1", "--out", "a.mp4", "--contact-sheet", "s.jpg"], "--contact-sheet"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_every_flag_has_help() -> None:
    from sana_world.cli import build_parser

    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):  # sub-commands
                stack.extend(action.choices.values())
            elif action.dest not in ("help", "subparser"):
                assert action.help, f"{p.prog}: {action.option_strings or action.dest} has no help"
