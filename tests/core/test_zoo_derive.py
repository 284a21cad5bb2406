"""`zoo derive` / `zoo add` / `zoo.load` refuse entries the Dream envs cannot run or that mix latent spaces,
and a derived manifest describes what it was built from."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sana_world.generators import zoo, zoo_derive
from sana_world.zoo import ZOO_ROOT, ZooError, entry, write_manifest

BASE = ZOO_ROOT / "rooms-128"


def wm_export(folder: Path, *, stride: int = 1, chunk: int | None = 1, resolution: int = 128,
              shift: float = 3.0, autoencoder: str | Path = "sana_world/zoo/rooms-128/autoencoder") -> Path:
    """A tiny SanaWM in the format `export_folder` writes (weights + model config + training config)."""
    from sana_world.world_model import SanaWM
    from sana_world.world_model.config import tiny

    cfg = dataclasses.replace(tiny(), in_channels=16, caption_channels=256, plucker_stride=stride)
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    weights = {k: v.contiguous() for k, v in SanaWM(cfg).state_dict().items()}
    save_file(weights, str(folder / "model.safetensors"))
    training = {"_class_name": "SanaWM", "_trainer": "sana_world.generators.train.world_model",
                "preset": "tiny", "temporal_stride": stride, "chunk_size": chunk,
                "chunk_causal": chunk is not None, "anchor_frame": True, "resolution": resolution,
                "shift": shift, "autoencoder": str(autoencoder), "text_encoder": "procedural",
                "context_sigma_prob": 0.0, "self_forcing_prob": 0.0,
                "model": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    config = {"_class_name": "SanaWM", "config": training["model"], "step": 7, "ema": True,
              "training": training}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def ae_export(folder: Path, *, encoder: bool = True, scale: float | None = None) -> Path:
    """The shipped autoencoder as a trainer's diffusers export (fp32), its encoder (or its decoder) moved."""
    shutil.copytree(BASE / "autoencoder", folder)
    (folder / "eval.json").unlink(missing_ok=True)
    f = folder / "diffusion_pytorch_model.safetensors"
    w = {k: v.float() for k, v in load_file(str(f)).items()}
    key = sorted(k for k in w if k.startswith("encoder." if encoder else "decoder."))[0]
    w[key] = w[key] + 0.5
    save_file(w, str(f))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["scaling_factor"] = cfg["scaling_factor"] if scale is None else scale
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_a_world_model_with_default_trainer_settings_is_refused_by_derive_and_load(tmp_path: Path) -> None:
    """Temporal stride 2 and chunks of 3 (the tiny preset's defaults) cannot stream one frame per env step:
    derive refuses naming the trainer flags, and an entry that has such a world model fails at load, before
    any model pass, with the same message."""
    bad = wm_export(tmp_path / "wm", stride=2, chunk=3)
    out = tmp_path / "cand"
    with pytest.raises(ZooError, match=r"--temporal-stride 1 --chunk-size 1") as e:
        zoo.derive_entry("rooms-128", out, {"world_model": bad})
    assert "temporal stride 2" in str(e.value) and "chunk_size 3" in str(e.value) and not out.exists()
    with pytest.raises(SystemExit) as exit_:
        zoo.main(["derive", "rooms-128", str(out), "--world-model", str(bad)])
    assert exit_.value.code == 1 and not out.exists()
    # an existing entry holding it (written by hand / an older derive): load and the Dream env refuse it
    shutil.copytree(BASE, out)
    shutil.rmtree(out / "world_model")
    shutil.copytree(bad, out / "world_model")
    m = json.loads((out / "manifest.json").read_text())
    write_manifest(out, "cand", 128, {c: {"folder": v["folder"], "class": v["class"]}
                                      for c, v in m["components"].items()}, m["description"], m["dream"])
    with pytest.raises(ZooError, match=r"temporal stride 2.*--temporal-stride 1 --chunk-size 1"):
        zoo.load(str(out))
    import gymnasium as gym

    import sana_world  # noqa: F401  (registers the envs)

    with pytest.raises(ZooError, match="--temporal-stride 1"):
        gym.make("SanaWorld/DreamRooms-v0", model=str(out))


def test_derive_writes_the_world_models_settings_into_the_manifest(tmp_path: Path) -> None:
    """A world model trained with shift 3.0 at 64x64: the candidate's manifest takes its resolution, dream
    shift and a description of the exports (not the base's), and says what it was derived from; the kept image
    model (trained at 128) must be replaced or dropped."""
    wm = wm_export(tmp_path / "wm", resolution=64, shift=3.0)
    with pytest.raises(ZooError, match=r"image model .* trained at 128x128.*--drop-image"):
        zoo.derive_entry("rooms-128", tmp_path / "c0", {"world_model": wm})
    dest = zoo.derive_entry("rooms-128", tmp_path / "cand", {"world_model": wm}, drop=["image"])
    m = entry(str(dest)).manifest
    assert m["resolution"] == 64 and m["dream"]["shift"] == 3.0
    assert m["dream"] != entry("rooms-128").manifest["dream"]
    assert "image" not in m["components"] and not (dest / "image").exists()
    assert m["description"] != entry("rooms-128").manifest["description"] and str(wm) in m["description"]
    d = m["derived_from"]
    assert d["base"] == "rooms-128" and d["components"]["world_model"]["export"] == str(wm.resolve())
    assert d["components"]["world_model"]["step"] == 7 and d["components"]["image"] == {"from": "dropped"}
    assert d["components"]["autoencoder"] == {"from": "base"}
    assert d["components"]["world_model"]["autoencoder_checked"]  # its training AE is the entry's
    models = zoo.load(str(dest))
    assert models.image is None and models.resolution == 64
    zoo.main(["derive", "rooms-128", str(tmp_path / "cli"), "--world-model", str(wm), "--drop-image"])
    assert entry(str(tmp_path / "cli")).manifest["resolution"] == 64


def test_an_autoencoder_swap_needs_every_model_trained_on_its_latents(tmp_path: Path) -> None:
    """A new latent space: the base's world and image models cannot stay; a world model trained on another
    autoencoder than the entry's is refused; with a world model of the new latents and the image model
    dropped the entry builds. A decoder-only autoencoder (same encoder and scale) may replace the old one
    alone."""
    ae = ae_export(tmp_path / "ae", scale=0.5)
    out = tmp_path / "cand"
    with pytest.raises(ZooError, match=r"latent space.*world model kept from 'rooms-128'.*--world-model") \
            as e:  # fmt: skip
        zoo.derive_entry("rooms-128", out, {"autoencoder": ae})
    assert "image model kept from 'rooms-128'" in str(e.value) and "--drop-image" in str(e.value)
    on_old = wm_export(tmp_path / "wm_old")  # trained on the shipped autoencoder's latents
    with pytest.raises(ZooError, match=r"trained on the latents of autoencoder"):
        zoo.derive_entry("rooms-128", out, {"autoencoder": ae, "world_model": on_old}, drop=["image"])
    on_new = wm_export(tmp_path / "wm_new", autoencoder=ae)
    with pytest.raises(ZooError, match=r"image model kept"):
        zoo.derive_entry("rooms-128", out, {"autoencoder": ae, "world_model": on_new})
    assert not out.exists()
    dest = zoo.derive_entry("rooms-128", out, {"autoencoder": ae, "world_model": on_new}, drop=["image"])
    m = entry(str(dest)).manifest
    assert m["derived_from"]["components"]["autoencoder"]["same_latents_as_base"] is False
    assert zoo.load(str(dest)).codec.scaling_factor == 0.5
    decoder_only = ae_export(tmp_path / "ae_dec", encoder=False)
    dest = zoo.derive_entry("rooms-128", tmp_path / "dec", {"autoencoder": decoder_only})
    assert set(entry(str(dest)).manifest["components"]) == {"autoencoder", "world_model", "image"}


def test_derive_refuses_an_autoencoder_export_that_does_not_load(tmp_path: Path) -> None:
    """An in-house checkpoint export (config nested under "config", model.safetensors) of an autoencoder,
    and one whose config describes other layers than its weights, are refused before anything is written."""
    inhouse = tmp_path / "inhouse"
    inhouse.mkdir()
    cfg = json.loads((BASE / "autoencoder" / "config.json").read_text())
    (inhouse / "config.json").write_text(json.dumps({"_class_name": "AutoencoderDC", "config": cfg}))
    shutil.copyfile(BASE / "autoencoder" / "diffusion_pytorch_model.safetensors",
                    inhouse / "model.safetensors")
    with pytest.raises(ZooError, match="export_folder"):
        zoo.derive_entry("rooms-128", tmp_path / "a", {"autoencoder": inhouse})
    edited = ae_export(tmp_path / "edited", encoder=False)
    cfg["decoder_layers_per_block"] = [1, 1, 3, 3]
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZooError, match="missing"):
        zoo.derive_entry("rooms-128", tmp_path / "b", {"autoencoder": edited})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_add_refuses_to_overwrite_a_component_without_overwrite(tmp_path: Path, monkeypatch) -> None:
    """`zoo add` on an entry that has the component: refused (the entry unchanged) unless --overwrite."""
    root = tmp_path / "zoo"
    shutil.copytree(BASE, root / "rooms-128")
    before = (root / "rooms-128" / "manifest.json").read_text()
    wm = wm_export(tmp_path / "wm", shift=2.5)
    monkeypatch.setattr(zoo_derive, "ZOO_ROOT", root)  # the command line's zoo: a copy, never the package's
    with pytest.raises(SystemExit) as e:
        zoo.main(["add", "rooms-128", "world_model", str(wm)])
    assert e.value.code == 1 and (root / "rooms-128" / "manifest.json").read_text() == before
    with pytest.raises(FileExistsError, match="--overwrite"):
        zoo.replace_component("rooms-128", "world_model", wm, root=root)
    zoo.main(["add", "rooms-128", "world_model", str(wm), "--overwrite"])
    m = entry("rooms-128", root).manifest  # verifies
    assert m["dream"]["shift"] == 2.5 and m["derived_from"]["components"]["world_model"]["from"] == "export"
    assert entry("rooms-128").manifest["dream"]["shift"] == 2.0  # the package's entry is untouched


def test_derive_records_the_gt_frames_and_checks_the_autoencoders(tmp_path: Path) -> None:
    """--supersample writes the manifest's frames (ZooEntry.supersample; the base's kept otherwise); an
    autoencoder export whose trainer's eval.json (beside export/) scored other frames is refused."""
    assert entry(BASE, verify=False).supersample == entry("rooms-128", verify=False).manifest.get(
        "frames", {}).get("supersample", 1)
    run = tmp_path / "run"
    dec = ae_export(run / "export", encoder=False)  # a decoder-only fine-tune: the latent space is kept
    (run / "eval.json").write_text(json.dumps({"heldout_psnr_db": 30.0, "supersample": 2}))
    base_ss = entry(BASE, verify=False).supersample
    if base_ss != 2:
        with pytest.raises(ZooError, match="pass --supersample 2"):
            zoo.derive_entry(BASE, tmp_path / "refused", {"autoencoder": dec})
        assert not (tmp_path / "refused").exists()
    cand = zoo.derive_entry(BASE, tmp_path / "cand", {"autoencoder": dec}, supersample=2)
    assert entry(cand).supersample == 2 and entry(cand).manifest["frames"] == {"supersample": 2}
    again = zoo.derive_entry(cand, tmp_path / "again", {"world_model": wm_export(tmp_path / "wm")})
    assert entry(again).supersample == 2  # kept from the base
    with pytest.raises(ZooError, match="supersample 2"):
        zoo.derive_entry(cand, tmp_path / "back", {"autoencoder": dec}, supersample=1)
    with pytest.raises(SystemExit):
        zoo_derive.main(["derive", str(BASE), str(tmp_path / "bad"), "--supersample", "0"])
    bad = dict(entry(cand).manifest, frames={"supersample": 0})
    with pytest.raises(ZooError, match="frames.supersample"):
        _ = dataclasses.replace(entry(cand), manifest=bad).supersample


def moved_encoder(folder: Path, rel: float, seed: int = 0) -> Path:
    """The shipped autoencoder as a trainer export, every encoder tensor moved by ``rel`` times its own RMS
    of Gaussian noise (an anchored fine-tune's small drift, or a free one's large)."""
    shutil.copytree(BASE / "autoencoder", folder)
    (folder / "eval.json").unlink(missing_ok=True)
    f = folder / "diffusion_pytorch_model.safetensors"
    g = torch.Generator().manual_seed(seed)
    w = {k: v.float() for k, v in load_file(str(f)).items()}
    for k in sorted(w):
        if k.startswith("encoder.") and w[k].is_floating_point():
            w[k] = w[k] + rel * w[k].square().mean().sqrt() * torch.randn(w[k].shape, generator=g)
    save_file(w, str(f))
    return folder


def test_max_latent_drift_keeps_the_models_only_for_latents_that_near(tmp_path: Path, monkeypatch) -> None:
    """An encoder that moved a little (an anchored fine-tune) may keep the entry's world and image models
    with --max-latent-drift: derive measures the drift on held-out GT frames and records it; one that moved
    more than the bar is refused with the measured value, and without the flag any new encoder is."""
    monkeypatch.setattr(zoo_derive, "DRIFT_TRAJECTORIES", 2)  # 32 frames: the test's speed
    near, far = moved_encoder(tmp_path / "near", 0.002), moved_encoder(tmp_path / "far", 0.2)
    with pytest.raises(ZooError, match=r"latent space.*world model kept"):
        zoo.derive_entry("rooms-128", tmp_path / "plain", {"autoencoder": near})
    with pytest.raises(ZooError, match=r"above --max-latent-drift 3.00 %.*world model kept") as e:
        zoo.derive_entry("rooms-128", tmp_path / "far_c", {"autoencoder": far}, max_latent_drift=0.03)
    assert "image model kept" in str(e.value) and not (tmp_path / "far_c").exists()
    far_pct = float(str(e.value).split("its latents lie ")[1].split(" %")[0])
    dest = zoo.derive_entry("rooms-128", tmp_path / "near_c", {"autoencoder": near}, max_latent_drift=0.03)
    m = entry(str(dest)).manifest
    info = m["derived_from"]["components"]["autoencoder"]
    drift = info["latent_drift"]
    assert info["same_latents_as_base"] is False and drift["heldout_frames"] == 32 and drift["max"] == 0.03
    assert 0 < drift["rms_relative"] < 0.03 and 100 * drift["rms_relative"] < far_pct
    assert set(m["components"]) == {"autoencoder", "world_model", "image"} and "kept" in m["description"]
    models = zoo.load(str(dest))
    enc = load_file(str(dest / "autoencoder" / "diffusion_pytorch_model.safetensors"))
    key = sorted(k for k in enc if k.startswith("encoder."))[0]
    assert torch.equal(models.codec.ae.state_dict()[key], enc[key].float())  # the new encoder is in use
    with pytest.raises(SystemExit) as exit_:  # a drift bar is a fraction
        zoo_derive.main(["derive", "rooms-128", str(tmp_path / "bad"), "--autoencoder", str(near),
                         "--max-latent-drift", "3"])
    assert exit_.value.code == 2 and not (tmp_path / "bad").exists()
    zoo_derive.main(["derive", "rooms-128", str(tmp_path / "cli"), "--autoencoder", str(near),
                     "--max-latent-drift", "0.03"])
    assert entry(str(tmp_path / "cli")).manifest["derived_from"]["components"]["autoencoder"]["latent_drift"]
