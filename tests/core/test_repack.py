"""Swapping a few scenes of a packed batch (a vector env's autoresets) without packing the others again."""

import dataclasses

import numpy as np
import torch

from sana_world.render.torch_caster import TorchRenderer
from sana_world.render.torch_packing import PackedScenes, pack_scenes, packed_sizes, repack_slots
from sana_world.worlds import WorldConfig, sample_scene


def _same(a: PackedScenes, b: PackedScenes) -> None:
    for f in dataclasses.fields(PackedScenes):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f.name
        elif f.name == "table":
            for g in dataclasses.fields(x):
                assert torch.equal(getattr(x, g.name), getattr(y, g.name)), g.name
        else:
            assert x == y, f.name


def test_repacked_slots_equal_a_full_pack_at_the_same_sizes():
    world = WorldConfig(layout="multi")
    scenes = [sample_scene(s, world) for s in range(6)]
    packed = pack_scenes(scenes)
    swapped = list(scenes)
    # new scenes that fit the padded sizes (the emptiest of a few candidates)
    candidates = [sample_scene(100 + s, world) for s in range(20)]
    fits = [c for c in candidates if repack_slots(packed, [0], [c]) is not None][:2]
    assert len(fits) == 2
    swapped[1], swapped[4] = fits
    out = repack_slots(packed, [1, 4], fits)
    _same(out, pack_scenes(swapped, min_sizes=packed_sizes(packed)))
    _same(packed, pack_scenes(scenes))  # the old pack is left as it was
    # and it renders as a fresh pack of the new scenes does
    r = TorchRenderer(shadows=True)
    K = torch.tensor([[24.0, 0, 24], [0, 24, 24], [0, 0, 1]])
    c2w = torch.eye(4).expand(6, 4, 4).clone()
    c2w[:, 1, 3] = 1.5
    idx = torch.arange(6)
    a, b = r.render_packed(out, idx, c2w, K, 48, 48), r.render_packed(pack_scenes(swapped), idx, c2w, K, 48, 48)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.ids, b.ids)
    assert torch.allclose(a.depth, b.depth, equal_nan=True)


def test_a_scene_too_large_for_the_padding_asks_for_a_full_pack():
    world = WorldConfig(layout="multi")
    scenes = [sample_scene(s, world) for s in range(8)]
    counts = [len(s.primitives()) for s in scenes]
    small, large = int(np.argmin(counts)), int(np.argmax(counts))
    packed = pack_scenes([scenes[small]])
    assert repack_slots(packed, [0], [scenes[large]]) is None
    assert repack_slots(packed, [0], [scenes[small]]) is not None


def test_gt_world_autoresets_render_as_a_fresh_world(monkeypatch):
    """A GT world whose few envs reset repacks only their scenes and renders every env as a world built from
    scratch with the same scenes and cameras (the torch renderer)."""
    import sana_world.render.torch_packing as packing
    from sana_world.envs.world import GTConfig, GTWorld

    cfg = GTConfig(width=32, height=32, renderer="torch", task="explore")
    world = GTWorld(cfg, 5)
    world.reset_slots(list(range(5)), [np.random.default_rng(i) for i in range(5)])
    fit = next(c for c in (sample_scene(200 + s, cfg.world) for s in range(20))
               if repack_slots(world._packed, [2], [c]) is not None)
    packs = []
    full_pack = packing.pack_scenes
    monkeypatch.setattr(packing, "pack_scenes", lambda scenes, *a, **k: packs.append(len(scenes)) or
                        full_pack(scenes, *a, **k))
    world.reset_slots([2], [np.random.default_rng(77)], [fit])
    assert packs == [1]  # the new scene alone
    fresh = GTWorld(cfg, 5)
    fresh.reset_slots(list(range(5)), [np.random.default_rng(i) for i in range(5)], list(world.specs))
    fresh.position, fresh.angles = world.position.clone(), world.angles.clone()
    fresh._c2w = fresh._c2w32 = None
    a, b = world.render(), fresh.render()
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.ids, b.ids)
    assert torch.equal(world._sdf.boxes, fresh._sdf.boxes) and torch.equal(world._sdf.rooms, fresh._sdf.rooms)


def test_rendering_a_few_envs_onto_the_last_frames_equals_a_full_render():
    """``GTWorld.render(slots, onto=...)`` (an autoreset's render) gives the rows a full render gives."""
    from sana_world.envs.world import GTConfig, GTWorld

    for renderer in ("torch", "open3d"):
        if renderer == "open3d":
            import pytest

            pytest.importorskip("open3d")
        world = GTWorld(GTConfig(width=24, height=24, renderer=renderer, task="explore"), 4)
        world.reset_slots(list(range(4)), [np.random.default_rng(i) for i in range(4)])
        before = world.render()
        world.reset_slots([1, 3], [np.random.default_rng(40), np.random.default_rng(41)])
        part, full = world.render([3, 1], onto=before), world.render()
        for f in ("rgb", "ids", "normal"):
            assert torch.equal(getattr(part, f), getattr(full, f)), (renderer, f)
        assert torch.equal(part.depth.nan_to_num(-1), full.depth.nan_to_num(-1))
        assert torch.equal(before.rgb[0], part.rgb[0]) and not torch.equal(before.rgb[1], part.rgb[1])
