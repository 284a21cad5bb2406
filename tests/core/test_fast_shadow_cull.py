"""Shadow-ray culling of the open3d fast path: the same images as tracing every shadow ray, with far fewer rays."""

import numpy as np
import pytest
import torch

from sana_world.camera import euler_to_rotation, intrinsics_from_fov
from sana_world.render import fast_shading
from sana_world.render.base import ID_MISS
from sana_world.worlds import WorldConfig
from sana_world.worlds.collision import free_positions
from sana_world.worlds.sampler import sample_scene

pytest.importorskip("open3d")
pytestmark = pytest.mark.skipif(not fast_shading.available(), reason="needs numba")


def _renderers():
    from sana_world.render.open3d_backend import Open3DConfig, Open3DRenderer

    return (Open3DRenderer(config=Open3DConfig(cull_shadows=True, n_threads=1)),
            Open3DRenderer(config=Open3DConfig(cull_shadows=False, n_threads=1)))


def _poses(spec, rng: np.random.Generator, n: int) -> list[torch.Tensor]:
    out = []
    for p in free_positions(spec, rng, n, height=float(rng.uniform(0.4, 2.2)), clearance=0.3):
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = euler_to_rotation(*torch.tensor(rng.uniform([-3.1, -1.4, -0.6], [3.1, 1.4, 0.6])))
        c2w[:3, 3] = torch.from_numpy(p)
        out.append(c2w.float()[None])
    return out


@pytest.mark.parametrize("layout", ["single", "multi"])
def test_culled_shadows_give_identical_frames(layout):
    """Every output of every frame is bitwise equal with and without culling (random scenes and poses,
    cameras looking up at lamps and down at the floor, in one room and across rooms)."""
    culled, traced = _renderers()
    K = intrinsics_from_fov(64, 48, 90.0)
    rng = np.random.default_rng(11)
    for seed in range(5):
        spec = sample_scene(100 + seed, WorldConfig(layout=layout))
        for c2w in _poses(spec, rng, 6):
            a, b = culled.render(spec, c2w, K, 48, 64), traced.render(spec, c2w, K, 48, 64)
            for field in ("rgb", "depth", "normal", "ids"):
                assert torch.equal(getattr(a, field), getattr(b, field)), (seed, field)


def test_culling_traces_few_rays_and_keeps_occluded_pixels():
    """Most shadow rays of a room view are proven clear; the ones that remain include every occluded one."""
    culled, _ = _renderers()
    spec = sample_scene(0, WorldConfig(layout="single"))
    K = intrinsics_from_fov(64, 64, 90.0)
    rng = np.random.default_rng(0)
    entry = culled._spec_entry(spec)
    c2w = _poses(spec, rng, 1)[0]
    culled.render(spec, c2w, K, 64, 64)  # builds the tables
    tab, cull = entry.fast, entry.cull
    from sana_world.render.open3d_backend import _batch

    c2ws, Ks = _batch(c2w, K)
    rays = fast_shading.pinhole_rays(c2ws, Ks, 64, 64)
    hits = entry.scene.cast_rays(culled._o3d.core.Tensor.from_numpy(rays))
    t, tri = hits["t_hit"].numpy().reshape(-1), hits["primitive_ids"].numpy().reshape(-1)
    counts = {}
    for mode in (fast_shading.SHADOWS_ALL, fast_shading.SHADOWS_CULLED):
        out = fast_shading.surface_kernel(
            rays, t, tri, tab.tri_prim, tab.tri_surface, tab.tri_object, tab.face_normals, tab.center, tab.size,
            tab.cos_yaw, tab.sin_yaw, tab.light_pos, ID_MISS, mode, cull.light_pos, cull.grid, cull.start,
            cull.prims, cull.box_c, cull.box_e, cull.face_out, cull.face_in)
        slot, shadow = out[-2], out[-1]
        occluded = entry.scene.test_occlusions(culled._o3d.core.Tensor.from_numpy(shadow), tnear=0.0,
                                               tfar=1.0).numpy().reshape(-1)
        counts[mode] = (len(shadow), int(occluded.sum()), int((slot == fast_shading.SLOT_LIT).sum()))
    n_all, occ_all, _ = counts[fast_shading.SHADOWS_ALL]
    n_cull, occ_cull, lit = counts[fast_shading.SHADOWS_CULLED]
    assert occ_cull == occ_all  # no occluded ray was culled
    assert n_cull + lit == n_all and n_cull < 0.5 * n_all


def test_box_faces_support_their_box():
    """Flat faces of convex primitives are marked as supporting planes; curved surfaces never are."""
    from sana_world.worlds.collision import segment_cull
    from sana_world.worlds.mesh import SURFACE_FLAT, spec_to_mesh

    spec = sample_scene(3, WorldConfig(layout="single"))
    mesh = spec_to_mesh(spec, 64)
    v, f = mesh.vertices, mesh.triangles
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    flat = mesh.surface == SURFACE_FLAT
    cull = segment_cull(v, f, mesh.prim_index, flat, n, np.array([[1.0, -2.0, 1.0]]))
    assert not (cull.face_out | cull.face_in)[~flat].any()
    prims = [p for p, _ in spec.primitives()]
    box_tris = np.array([prims[i].shape == "box" for i in mesh.prim_index])
    assert (cull.face_out | cull.face_in)[box_tris].all()
