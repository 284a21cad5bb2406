"""The shared diffusers-folder loader: single file, sharded index, pipeline root and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from sana_world.checkpoints import (
    CheckpointFormatError,
    build_on_meta,
    diffusers_source,
    load_safetensors_weights,
    read_diffusers_dir,
    resolve_model_dir,
    take,
)

CLASS = "SomeTransformer"
CONFIG = {"_class_name": CLASS, "num_layers": 2}


def _weights() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"blocks.{i}.weight": torch.randn(3, 4, generator=g) for i in range(4)}


def _write_single(folder, weights) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    save_file(weights, str(folder / "model.safetensors"))


def _write_sharded(folder, weights) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    names = sorted(weights)
    weight_map = {}
    for s, part in enumerate((names[:2], names[2:])):
        shard = f"model-{s + 1:05d}-of-00002.safetensors"
        save_file({k: weights[k] for k in part}, str(folder / shard))
        weight_map.update({k: shard for k in part})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("layout", ["single", "sharded", "pipeline_root"])
def test_reads_every_layout(tmp_path, layout) -> None:
    weights = _weights()
    if layout == "single":
        _write_single(tmp_path, weights)
    elif layout == "sharded":
        _write_sharded(tmp_path, weights)
        assert len(list(tmp_path.glob("*.safetensors"))) == 2
    else:
        _write_sharded(tmp_path / "transformer", weights)
    config, sd = read_diffusers_dir(tmp_path, CLASS)
    assert config == CONFIG
    _assert_same(sd, weights)
    want = tmp_path / "transformer" if layout == "pipeline_root" else tmp_path
    assert resolve_model_dir(tmp_path) == want
    config, sd, copy = diffusers_source(str(tmp_path), CLASS)  # a folder given as a string
    assert config == CONFIG and copy is False
    _assert_same(sd, weights)


def test_missing_folder_or_config_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        read_diffusers_dir(missing, CLASS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no config.json in {tmp_path / 'empty'}"):
        read_diffusers_dir(tmp_path / "empty", CLASS)


def test_wrong_class_and_ambiguous_weights_raise(tmp_path) -> None:
    _write_single(tmp_path, _weights())
    with pytest.raises(ValueError, match="expected 'OtherModel'"):
        read_diffusers_dir(tmp_path, "OtherModel")
    save_file(_weights(), str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="expected one .safetensors file .* found 2"):
        read_diffusers_dir(tmp_path, CLASS)
    with pytest.raises(TypeError, match="expected a SanaTransformer2DModel or a directory"):
        diffusers_source(torch.nn.Linear(2, 2), "SanaTransformer2DModel")


def test_missing_or_corrupted_shard_raises_clearly(tmp_path) -> None:
    _write_sharded(tmp_path, _weights())
    shard = tmp_path / "model-00002-of-00002.safetensors"
    blob = shard.read_bytes()
    shard.write_bytes(blob[:20])  # truncated: not a safetensors file any more
    with pytest.raises(CheckpointFormatError, match=f"{shard}: unreadable safetensors"):
        load_safetensors_weights(tmp_path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"weight file {shard} is missing"):
        load_safetensors_weights(tmp_path)
    # a shard that lacks tensors the index assigns to it
    save_file({"blocks.2.weight": torch.zeros(3, 4)}, str(shard))
    with pytest.raises(CheckpointFormatError, match="1 listed tensors are in no shard"):
        load_safetensors_weights(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        load_safetensors_weights(tmp_path)


def test_state_dict_helpers() -> None:
    sd = {"a": torch.ones(1)}
    assert torch.equal(take(sd, "a", "diffusers"), torch.ones(1)) and sd == {}
    with pytest.raises(KeyError, match="SanaDiT state dict lacks 'b'"):
        take(sd, "b", "SanaDiT")
    weights = {"weight": torch.full((2, 3), 2.0), "bias": torch.zeros(2)}
    layer = build_on_meta(lambda: torch.nn.Linear(3, 2), weights)
    assert not layer.weight.is_meta and torch.equal(layer.weight, weights["weight"])
