"""Fused numba shading of the open3d renderer: same images as the torch-shaded path, and it is used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sana_world.render import fast_shading
from sana_world.render.open3d_import import import_open3d

if not fast_shading.available():  # pragma: no cover - depends on the machine
    pytest.skip("numba unavailable", allow_module_level=True)
try:
    import_open3d()
except ImportError as err:  # pragma: no cover - depends on the machine
    pytest.skip(f"open3d unavailable: {err}", allow_module_level=True)

from sana_world.camera import intrinsics_from_fov  # noqa: E402
from sana_world.render.open3d_backend import Open3DConfig, Open3DRenderer  # noqa: E402
from sana_world.worlds.palette import TEXTURES  # noqa: E402
from sana_world.worlds.sampler import sample_scene  # noqa: E402
from sana_world.worlds.spec import SceneSpec  # noqa: E402

from test_render_open3d import _cameras  # noqa: E402  (tests/core is on sys.path under pytest)

SIZE = 48


def _every_texture(spec: SceneSpec) -> SceneSpec:
    """``spec`` with the textures of rooms and object parts cycled so that every texture code occurs."""
    names = list(TEXTURES)
    k = iter(range(10_000))

    def mat(m):  # type: ignore[no-untyped-def]
        return dataclasses.replace(m, texture=names[next(k) % len(names)], colour2="black")

    rooms = tuple(dataclasses.replace(r, wall=mat(r.wall), floor=mat(r.floor), ceiling=mat(r.ceiling))
                  for r in spec.rooms)
    objects = tuple(dataclasses.replace(o, parts=tuple(dataclasses.replace(p, material=mat(p.material))
                                                       for p in o.parts)) for o in spec.objects)
    return dataclasses.replace(spec, rooms=rooms, objects=objects)


def test_fast_path_matches_torch_shading() -> None:
    K = intrinsics_from_fov(SIZE, SIZE, 75.0)
    fast, ref = Open3DRenderer(fast=True), Open3DRenderer(fast=False)
    assert fast.fast and not ref.fast
    n_pix = n_exact = n_close = 0
    specs = [sample_scene(0), sample_scene(3), _every_texture(sample_scene(2))]  # seed 0: three rooms
    used = {p.material.texture for s in specs for p, _ in s.primitives()}
    assert used == set(TEXTURES), f"textures never rendered: {set(TEXTURES) - used}"
    for spec in specs:
        c2w = _cameras(spec)
        a = ref.render(spec, c2w, K, SIZE, SIZE)
        b = fast.render(spec, c2w, K, SIZE, SIZE)
        assert b.rgb.shape == a.rgb.shape and b.rgb.dtype == torch.uint8
        assert (b.depth.dtype, b.normal.dtype, b.ids.dtype) == (torch.float32, torch.float32, torch.int32)
        assert torch.equal(a.depth, b.depth)
        assert torch.equal(a.ids, b.ids)
        assert (a.normal - b.normal).abs().max().item() <= 1e-5
        diff = (a.rgb.int() - b.rgb.int()).abs().amax(-1)  # (B, H, W) worst channel
        n_pix += diff.numel()
        n_exact += int((diff == 0).sum())
        n_close += int((diff <= 1).sum())
    assert n_exact >= 0.995 * n_pix, f"rgb identical on {n_exact / n_pix:.5f} of pixels"
    assert n_close >= 0.999 * n_pix, f"rgb within 1/255 on {n_close / n_pix:.5f} of pixels"


def test_fast_path_without_shadows_and_counter() -> None:
    spec = sample_scene(3)
    c2w = _cameras(spec)[:2]
    K = intrinsics_from_fov(16, 16, 60.0)
    fast = Open3DRenderer(config=Open3DConfig(shadows=False, fast=True))
    ref = Open3DRenderer(config=Open3DConfig(shadows=False, fast=False))
    assert fast.fast_frames == 0
    b = fast.render(spec, c2w, K, 16, 16)
    assert fast.fast_frames == 2 and ref.fast_frames == 0  # the kernels shaded both images
    a = ref.render(spec, c2w, K, 16, 16)
    assert ref.fast_frames == 0
    assert (a.rgb.int() - b.rgb.int()).abs().max().item() <= 1
    assert torch.equal(a.depth, b.depth) and torch.equal(a.ids, b.ids)


def test_default_uses_numba() -> None:
    assert Open3DRenderer().fast  # numba imports here, so None means fast
    assert not Open3DRenderer(fast=False).fast


def test_quantisation_table_is_exact() -> None:
    consts = fast_shading.shade_constants()
    inv_gamma = np.float32(1.0 / 1.5)
    levels = consts.levels
    assert levels.shape == (255,) and (np.diff(levels) > 0).all()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random(20_000, dtype=np.float32), levels, np.nextafter(levels, np.float32(0)),
                        np.float32([0.0, 1.0, 1e-30])])
    want = np.array([fast_shading.quantise(v, inv_gamma) for v in x])
    assert np.array_equal(np.searchsorted(levels, x, side="right"), want)


def test_pinhole_rays_follow_camera_rays(monkeypatch: pytest.MonkeyPatch) -> None:
    from sana_world.camera import camera_rays

    c2w = _cameras(sample_scene(3)).double()  # (B, 4, 4)
    K = intrinsics_from_fov(20, 16, 70.0).double()  # W = 20, H = 16: not square
    Ks = np.ascontiguousarray(np.broadcast_to(K.numpy(), (c2w.shape[0], 3, 3)))
    rays = fast_shading.pinhole_rays(c2w.numpy(), Ks, 16, 20)  # (B * H * W, 6) float32
    assert rays.shape == (c2w.shape[0] * 16 * 20, 6) and rays.dtype == np.float32
    o, d = camera_rays(c2w, K, 16, 20)  # float64 reference: pixel centres at +0.5, camera z = 1
    want = torch.cat([o, d], dim=-1).reshape(-1, 6).numpy()
    assert np.abs(rays - want).max() <= 1e-6
    monkeypatch.setattr(fast_shading, "available", lambda: False)  # the numpy fallback: the same bits
    assert np.array_equal(fast_shading.pinhole_rays(c2w.numpy(), Ks, 16, 20), rays)
