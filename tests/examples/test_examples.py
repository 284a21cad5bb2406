"""The example scripts run end to end (tiny settings) and write what they say they write."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _main(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_dream_keys_writes_a_paired_video(tmp_path, capsys):
    from sana_world.video import read_video

    _main("dream_keys")(["--keys", "w-2,j-1", "--out", str(tmp_path / "k.mp4")])
    frames = read_video(tmp_path / "k.mp4")
    assert frames.shape[0] == 4 and frames.shape[1] == 128 and frames.shape[2] > 256  # start + 3 steps, GT | dream
    assert (tmp_path / "k.png").is_file()
    assert "3 steps of 'w-2,j-1': PSNR to GT" in capsys.readouterr().out
    with pytest.raises(ValueError, match="segment"):
        _main("dream_keys")(["--keys", "q-3", "--out", str(tmp_path / "bad.mp4")])


def test_dream_from_prompt_and_from_image(tmp_path, capsys):
    from PIL import Image

    main = _main("dream_from_prompt")
    main(["--steps", "2", "--out", str(tmp_path / "p.png")])
    assert "(prompt), 2 dreamed steps" in capsys.readouterr().out
    picture = np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)  # not square, not 128²
    Image.fromarray(picture).save(tmp_path / "in.png")
    main(["--image", str(tmp_path / "in.png"), "--steps", "2", "--out", str(tmp_path / "i.png")])
    assert "(image), 2 dreamed steps" in capsys.readouterr().out
    sheet = np.asarray(Image.open(tmp_path / "i.png"))
    assert sheet.ndim == 3 and sheet.shape[0] > 128 and sheet.std() > 5


def test_ppo_in_dream_trains_and_scores_on_gt(capsys):
    pytest.importorskip("stable_baselines3")
    _main("ppo_in_dream")(["--num-envs", "2", "--timesteps", "16", "--episode-steps", "8", "--eval-episodes", "1"])
    out = capsys.readouterr().out
    assert "PPO trained in the dream" in out and "random" in out and "mean GT return" in out
