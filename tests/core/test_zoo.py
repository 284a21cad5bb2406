"""The model zoo: the shipped entry verifies and loads; missing, truncated or corrupted files fail clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sana_world.zoo import ZooError, available, entry


def test_shipped_entry_verifies_and_loads() -> None:
    from sana_world.generators import zoo

    assert "rooms-128" in available()
    models = zoo.load("rooms-128")
    assert type(models.world_model).__name__ == "SanaWM" and type(models.image).__name__ == "SanaDiT"
    assert models.resolution == 128 and models.codec.latent_channels == 16
    assert models.world_model.cfg.plucker_stride == 1
    assert not any(p.requires_grad for p in models.world_model.parameters())
    total = sum(f.stat().st_size for f in Path(models.entry.root).rglob("*") if f.is_file())
    assert total <= 64e6 and max(f.stat().st_size for f in Path(models.entry.root).rglob("*")) <= 16 * 2**20


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    src = entry("rooms-128", verify=False).root
    dst = tmp_path / "rooms-128"
    shutil.copytree(src, dst)
    return dst


def test_corrupted_truncated_missing_files_raise(copy: Path) -> None:
    wm = sorted((copy / "world_model").glob("*.safetensors"))[0]
    data = bytearray(wm.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wm.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="sha256"):
        entry(str(copy))
    wm.write_bytes(bytes(data[:-10]))
    with pytest.raises(ZooError, match="bytes"):
        entry(str(copy))
    wm.unlink()
    with pytest.raises(ZooError, match="missing"):
        entry(str(copy))
    with pytest.raises(ZooError, match="no zoo entry"):
        entry("no-such-model")


def test_derive_entry_replaces_a_component(tmp_path: Path) -> None:
    """A candidate entry: a copy of rooms-128 whose world model comes from an export folder; it verifies,
    loads by path, and its new weights are the export's."""
    import torch

    from sana_world.generators import zoo

    export = tmp_path / "export"
    shutil.copytree(entry("rooms-128").folder("world_model"), export)
    ref = zoo.load_state_dict(export)
    with torch.no_grad():
        first = sorted(ref)[0]
        ref[first] = ref[first] + 1.0  # an export that differs from the shipped weights
    from safetensors.torch import save_file

    for f in export.glob("*.safetensors"):
        f.unlink()
    save_file({k: v.contiguous() for k, v in ref.items()}, str(export / "model.safetensors"))
    dest = zoo.derive_entry("rooms-128", tmp_path / "cand", {"world_model": export})
    models = zoo.load(str(dest))
    got = models.world_model.state_dict()[first]
    assert torch.allclose(got, ref[first].float()) and entry(str(dest)).manifest["dream"] == \
        entry("rooms-128").manifest["dream"]  # the export trained with the shipped shift (2.0)
    derived = entry(str(dest)).manifest["derived_from"]
    assert derived["base"] == "rooms-128"
    assert derived["components"]["world_model"]["export"] == str(export.resolve())
    assert derived["dream"]["shift"] == "the world model's training shift"
    with pytest.raises(FileExistsError):
        zoo.derive_entry("rooms-128", dest, {"world_model": export})
    with pytest.raises(ValueError, match="unknown components"):
        zoo.derive_entry("rooms-128", tmp_path / "other", {"decoder": export})


def test_replace_component_rewrites_the_manifest(tmp_path: Path) -> None:
    """`zoo add` on an existing entry: the component is swapped, the manifest rewritten (the entry verifies
    and loads the new weights), the dream settings kept; a component without an export folder raises."""
    import torch
    from safetensors.torch import save_file

    from sana_world.generators import zoo

    root = tmp_path / "zoo"
    shutil.copytree(entry("rooms-128").root, root / "rooms-128")
    export = tmp_path / "export"
    export.mkdir()
    shutil.copyfile(entry("rooms-128").folder("world_model") / "config.json", export / "config.json")
    ref = zoo.load_state_dict(entry("rooms-128").folder("world_model"))
    first = sorted(ref)[0]
    ref[first] = ref[first] + 1.0
    save_file({k: v.contiguous() for k, v in ref.items()}, str(export / "model.safetensors"))
    with pytest.raises(FileExistsError, match="overwrite"):  # it has a world model: no silent overwrite
        zoo.replace_component("rooms-128", "world_model", export, root=root)
    assert zoo.replace_component("rooms-128", "world_model", export, root=root,
                                 overwrite=True) == root / "rooms-128"
    new = entry("rooms-128", root)  # verifies every size and sha256
    assert new.manifest["dream"] == entry("rooms-128").manifest["dream"]  # trained with the shipped shift
    got = zoo.load_state_dict(new.folder("world_model"))[first]
    assert torch.equal(got, ref[first].to(got.dtype))
    with pytest.raises(FileNotFoundError, match="unchanged"):
        zoo.replace_component("rooms-128", "world_model", tmp_path / "nothing", root=root, overwrite=True)
    assert entry("rooms-128", root).manifest == new.manifest  # bad input loses nothing
