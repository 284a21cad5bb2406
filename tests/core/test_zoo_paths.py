"""Zoo names versus folders, and `zoo derive` that fails without leaving a candidate behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sana_world.generators import zoo, zoo_derive
from sana_world.zoo import ZOO_ROOT, ZooError


def test_a_bare_name_is_the_zoo_entry_even_if_a_folder_of_that_name_is_here(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rooms-128").mkdir()  # an unrelated folder that shadowed the shipped entry
    e = zoo.entry("rooms-128", verify=False)
    assert e.root == ZOO_ROOT / "rooms-128"
    with pytest.raises(ZooError, match="no zoo entry"):
        zoo.entry("./rooms-128", verify=False)  # an explicit path is the folder (it has no manifest)
    (tmp_path / "cand").mkdir()
    with pytest.raises(ZooError, match=r"pass './cand'"):
        zoo.entry("cand", verify=False)  # a bare name not in the zoo says how to name the folder


def test_paths_name_folders(tmp_path, monkeypatch) -> None:
    copy = tmp_path / "runs" / "cand"
    shutil.copytree(ZOO_ROOT / "rooms-128", copy)
    monkeypatch.chdir(tmp_path)
    for name in ("runs/cand", "./runs/cand", copy, str(copy)):  # relative with a slash, ./, Path, absolute
        assert zoo.entry(name, verify=False).root.resolve() == copy.resolve(), name
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.entry("~/runs/cand", verify=False).root.resolve() == copy.resolve()
    with pytest.raises(ZooError, match="not a folder"):
        zoo.entry("runs/missing", verify=False)
    assert [zoo.is_path(n) for n in ("rooms-128", "a/b", ".x", "~x", Path("x"))] == [False] + [True] * 4


def test_derive_checks_every_export_before_copying(tmp_path) -> None:
    good = tmp_path / "export"
    shutil.copytree(ZOO_ROOT / "rooms-128" / "world_model", good)
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        zoo.derive_entry("rooms-128", out, {"world_model": good, "image": tmp_path / "nonexistent"})
    assert not out.exists()
    with pytest.raises(ZooError, match="'SanaWM'"):  # a world model export passed as the image model
        zoo.derive_entry("rooms-128", out, {"image": good})
    assert not out.exists()
    # the command line: an error message, exit status 1, no folder
    with pytest.raises(SystemExit) as e:
        zoo.main(["derive", "rooms-128", str(out), "--world-model", str(tmp_path / "nonexistent")])
    assert e.value.code == 1 and not out.exists()


def test_derive_removes_its_copy_if_writing_fails(tmp_path, monkeypatch) -> None:
    good = tmp_path / "export"
    shutil.copytree(ZOO_ROOT / "rooms-128" / "world_model", good)

    def broken(*args, **kwargs) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zoo_derive, "_write_component", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        zoo.derive_entry("rooms-128", out, {"world_model": good})
    assert not out.exists()
