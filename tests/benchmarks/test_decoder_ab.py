"""benchmarks/decoder_ab.py on a tiny run: the zoo decoder against itself scores the same to the last digit
(one dream, two decodes of its latents), and a decoder of another latent space is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]
ZOO_AE = ROOT / "sana_world" / "zoo" / "rooms-128" / "autoencoder"


def _run(tmp_path: Path, decoder_b: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, ROOT / "benchmarks" / "decoder_ab.py", "--b", decoder_b, "--scenes", "2",
            "--horizon", "2", "--batch", "2", "--repeats", "1", "--out", tmp_path]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT / "benchmarks", timeout=600)


@pytest.mark.slow
def test_same_decoder_scores_the_same(tmp_path: Path) -> None:
    res = _run(tmp_path, ZOO_AE)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads(next(tmp_path.glob("decoder_ab_*.json")).read_text())
    a, b = data["decoders"]["A"], data["decoders"]["B"]
    assert a["dream_psnr"] == b["dream_psnr"] and a["ceiling_psnr"] == b["ceiling_psnr"]
    assert 10.0 < a["dream_psnr"]["1"] < 60.0 and a["decoder_params"] == b["decoder_params"]
    assert set(data["hold_psnr"]) == {"1"} and a["decode_ms_batch1"] > 0


def test_a_decoder_of_other_latents_is_refused(tmp_path: Path) -> None:
    """An autoencoder whose encoder differs from the zoo's reads other latents: the script says so."""
    from sana_world.generators.autoencoder import AE_PRESETS, build_autoencoder

    other = tmp_path / "other"
    build_autoencoder(AE_PRESETS["f8c16_lite"]()).save_pretrained(other)
    res = _run(tmp_path, other)
    assert res.returncode != 0 and "encoder is not the zoo's" in res.stderr
