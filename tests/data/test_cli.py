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
    assert "pass --overwrite" in capsys.readouterr().err  # the flag, not the Python keyword


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
        (["render", "--seed", "1", "--out", "a.mp4", "--device", "foo"], "invalid device 'foo'"),
        (["render", "--seed", "1", "--out", "a.mp4", "--device", "cuda:99"],
         "CUDA is not available|no cuda:99"),
        (["data", "generate", "--out", "x", "--trajectories", "2", "--device", "cuda:99"],
         "CUDA is not available|no cuda:99"),
        (["data", "generate", "--out", "x", "--trajectories", "2", "--seed", "999999"], "--allow-heldout"),
        (["render", "--seed", "1", "--out", "a.gif", "--fps", "1000"], "at most 100 fps"),
        (["demo", "--prompt-steps", "0", "--prompt", "a red room"], "--prompt has no effect"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out paths: nothing a regression writes lands in the repository
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert any(m in err for m in message.split("|")), err  # "a|b": either message


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


def test_heldout_scenes_need_the_flag(tmp_path, capsys) -> None:
    """Scene seeds reaching 1,000,000 are held out: refused by default, written with --allow-heldout."""
    from sana_world.data.generate import HELDOUT_START, generate
    from sana_world.data.shards import load_manifest
    from sana_world.envs.world import HELDOUT_START as ENV_HELDOUT_START

    assert HELDOUT_START is ENV_HELDOUT_START  # one definition (sana_world.worlds.sampler)
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="allow_heldout=True"):
        generate(data, 2, 1, 8, 8, seed=HELDOUT_START - 1, progress=False)
    assert not (data / "manifest.json").exists()
    args = ["data", "generate", "--out", str(data), "--trajectories", "2", "--steps", "1", "--size", "8",
            "--seed", str(HELDOUT_START - 1), "--no-progress"]
    with pytest.raises(SystemExit):
        main(args)
    assert "--allow-heldout" in capsys.readouterr().err and not (data / "manifest.json").exists()
    assert main([*args, "--allow-heldout"]) == 0
    assert load_manifest(data)["num_trajectories"] == 2
    assert main(["data", "generate", "--out", str(tmp_path / "train"), "--trajectories", "1", "--steps", "1",
                 "--size", "8", "--seed", str(HELDOUT_START - 1), "--no-progress"]) == 0  # last train scene
    assert "1,000,000" in build_parser_help(["data", "generate"])


def build_parser_help(path: list[str]) -> str:
    """The help text of the sub-command ``path``."""
    from sana_world.cli import build_parser

    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a.choices, dict))
        parser = sub.choices[name]
    return parser.format_help()


def test_render_reports_the_written_size_and_checks_paths(tmp_path, capsys) -> None:
    out = tmp_path / "s3.mp4"
    assert main(["render", "--seed", "3", "--steps", "2", "--size", "33", "--out", str(out),
                 "--no-progress"]) == 0
    assert read_video(out).shape == (3, 34, 68, 3)  # rgb | depth at 33 px: 68x33, padded to 68x34
    assert "68x34" in capsys.readouterr().out
    lone = tmp_path / "lone" / "shard-00000.safetensors"
    lone.parent.mkdir()
    lone.write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main(["render", "--shard", str(lone), "--out", str(tmp_path / "a.mp4")])
    assert e.value.code == 2 and "manifest.json" in capsys.readouterr().err
    assert "dataset folder" in build_parser_help(["render"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        main(["render", "--seed", "3", "--out", str(blocker / "a.mp4")])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err
