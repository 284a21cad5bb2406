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
