"""load_autoencoder is strict: another model's folder, an edited config or an in-house export raise (naming
the folder) instead of returning randomly initialised layers; zoo.load turns that into a ZooError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sana_world.generators.autoencoder import autoencoder_folder, load_autoencoder
from sana_world.zoo import ZOO_ROOT, ZooError, entry, write_manifest

ZOO_AE = ZOO_ROOT / "rooms-128" / "autoencoder"


def test_the_shipped_autoencoder_loads() -> None:
    ae = load_autoencoder(ZOO_AE)
    assert type(ae).__name__ == "AutoencoderDC" and ae.config.latent_channels == 16


def test_a_transformer_folder_is_not_an_autoencoder(tmp_path: Path) -> None:
    """A diffusers SanaTransformer2DModel folder: diffusers builds a default AutoencoderDC and only warns."""
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "SanaTransformer2DModel"}))
    save_file({"patch_embed.proj.weight": torch.zeros(8, 32, 1, 1)},
              str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match=r"transformer.*'SanaTransformer2DModel'.*not an 'AutoencoderDC'"):
        load_autoencoder(folder)


def test_an_edited_config_or_an_inhouse_export_raises(tmp_path: Path) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(ZOO_AE, edited)
    cfg = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**cfg, "decoder_layers_per_block": [1, 1, 3, 3]}))
    with pytest.raises(ValueError, match=r"edited.*30 missing"):  # new layers would stay random
        load_autoencoder(edited)
    (edited / "config.json").write_text(json.dumps({**cfg, "decoder_block_out_channels": [16, 32, 64, 256]}))
    with pytest.raises(ValueError, match=r"of another shape"):  # not torch's size-mismatch wall
        load_autoencoder(edited)
    inhouse = tmp_path / "inhouse"
    inhouse.mkdir()
    (inhouse / "config.json").write_text(json.dumps({"_class_name": "AutoencoderDC", "config": cfg}))
    shutil.copyfile(ZOO_AE / "diffusion_pytorch_model.safetensors", inhouse / "model.safetensors")
    with pytest.raises(ValueError, match=r"in-house checkpoint export.*export_folder"):
        load_autoencoder(inhouse)


def test_zoo_load_refuses_an_entry_whose_autoencoder_config_was_edited(tmp_path: Path) -> None:
    """The entry verifies (its manifest was rewritten after the edit), but its autoencoder does not load."""
    from sana_world.generators import zoo

    copy = tmp_path / "cand"
    shutil.copytree(ZOO_ROOT / "rooms-128", copy)
    cfg = json.loads((copy / "autoencoder" / "config.json").read_text())
    edited = {**cfg, "decoder_layers_per_block": [1, 1, 3, 3]}
    (copy / "autoencoder" / "config.json").write_text(json.dumps(edited))
    m = entry("rooms-128").manifest
    comps = {c: {"folder": v["folder"], "class": v["class"]} for c, v in m["components"].items()}
    write_manifest(copy, "cand", m["resolution"], comps, m["description"], m["dream"])
    with pytest.raises(ZooError, match=r"cand/autoencoder.*missing"):
        zoo.load(str(copy))


def test_autoencoder_folder_is_the_folder_itself_else_its_vae_subfolder(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    assert autoencoder_folder(tmp_path) == tmp_path / "vae"  # a SANA pipeline folder
    (tmp_path / "config.json").write_text("{}")
    assert autoencoder_folder(str(tmp_path)) == tmp_path  # its own config.json wins
    assert autoencoder_folder(tmp_path / "none") == tmp_path / "none"


def test_a_sharded_autoencoder_is_checked_across_its_shards(tmp_path: Path) -> None:
    """diffusers' sharded layout (an index and its shards): every shard's tensors count in the strict check."""
    ae = load_autoencoder(ZOO_AE)
    folder = tmp_path / "vae"
    ae.save_pretrained(folder, max_shard_size="1MB")
    assert len(list(folder.glob("diffusion_pytorch_model-*.safetensors"))) > 1
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = load_autoencoder(tmp_path).state_dict()  # the pipeline layout: tmp_path/vae
    assert loaded.keys() == ae.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in ae.state_dict().items())
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "decoder_layers_per_block": [1, 1, 3, 3]}))
    with pytest.raises(ValueError, match=r"vae: the weights do not fit.*\(30 missing"):
        load_autoencoder(tmp_path)
