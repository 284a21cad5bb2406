"""Renderer 2 (open3d): agreement with the analytic torch caster, user meshes, tessellation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sana_world.render.open3d_import import import_open3d

try:
    o3d = import_open3d()
except ImportError as err:  # pragma: no cover - depends on the machine
    pytest.skip(f"open3d unavailable: {err}", allow_module_level=True)

from sana_world.camera import intrinsics_from_fov, look_at  # noqa: E402
from sana_world.render.base import ID_MISS, ID_STRUCTURE  # noqa: E402
from sana_world.render.open3d_backend import MeshWorld, Open3DRenderer, load_user_mesh  # noqa: E402
from sana_world.worlds.mesh import save_mesh, spec_to_mesh  # noqa: E402
from sana_world.worlds.sampler import sample_scene  # noqa: E402
from sana_world.worlds.spec import SceneSpec  # noqa: E402

SIZE = 64
SEEDS = (0, 2, 3)  # seed 0 has three rooms, 2 and 3 one room each


def _free_spots(spec: SceneSpec, room_index: int, n: int) -> list[tuple[float, float]]:
    """Up to ``n`` eye positions (x, z) in a room, clear of walls and of every object's footprint."""
    r = spec.rooms[room_index]
    spots = []
    for fx in (0.25, 0.75, 0.5, 0.15, 0.85):
        for fz in (0.2, 0.8, 0.5, 0.15, 0.85):
            x, z = r.x0 + fx * (r.x1 - r.x0), r.z0 + fz * (r.z1 - r.z0)
            clear = all(math.hypot(x - o.center()[0], z - o.center()[2]) > o.radius_xz() + 0.3
                        for o in spec.objects)
            if clear and r.contains_xz(x, z, margin=0.4):
                spots.append((x, z))
    return spots[:n]


def _cameras(spec: SceneSpec) -> torch.Tensor:
    """(B, 4, 4) cameras at eye height (y = -1.5) in every room: across the room and at one object."""
    poses = []
    for i, r in enumerate(spec.rooms):
        cx, cz = (r.x0 + r.x1) / 2, (r.z0 + r.z1) / 2
        for x, z in _free_spots(spec, i, 2):
            # look past the room centre (or at a wall when standing on it), 0.3 m lower than the eye
            tx, tz = (2 * cx - x, 2 * cz - z) if math.hypot(cx - x, cz - z) > 0.5 else (r.x1, cz)
            poses.append(look_at(torch.tensor([x, -1.5, z]), torch.tensor([tx, -1.2, tz])))
        # one more camera per room that looks straight at an object of the room, so curved parts fill pixels
        inside = [o for o in spec.objects if r.contains_xz(o.center()[0], o.center()[2])]
        spots = _free_spots(spec, i, 1)
        if inside and spots:
            x, z = spots[0]
            poses.append(look_at(torch.tensor([x, -1.5, z]), torch.tensor(inside[0].center())))
    assert poses, "no free camera spot found"
    return torch.stack(poses)


def test_agrees_with_torch_renderer() -> None:
    from sana_world.render.torch_caster import TorchRenderer

    K = intrinsics_from_fov(SIZE, SIZE, 75.0)
    torch_r, o3d_r = TorchRenderer("cpu", shadows=True), Open3DRenderer(shadows=True)
    n_pix = n_depth_ok = n_id_ok = n_both_finite = n_object = 0
    rgb_diffs = []
    for seed in SEEDS:
        spec = sample_scene(seed)
        c2w = _cameras(spec)
        a = torch_r.render(spec, c2w, K, SIZE, SIZE)
        b = o3d_r.render(spec, c2w, K, SIZE, SIZE)
        assert b.rgb.shape == (c2w.shape[0], SIZE, SIZE, 3) and b.rgb.dtype == torch.uint8
        assert b.depth.shape == b.ids.shape == (c2w.shape[0], SIZE, SIZE)
        # 1. z-depth within 1 % where both renderers hit something
        finite = torch.isfinite(a.depth) & torch.isfinite(b.depth)
        rel = (a.depth - b.depth).abs() / a.depth.clamp_min(1e-6)
        n_both_finite += int(finite.sum())
        n_depth_ok += int((finite & (rel < 0.01)).sum())
        # 2. object ids and colours
        n_id_ok += int((a.ids == b.ids).sum())
        n_object += int((a.ids >= 0).sum())
        n_pix += a.ids.numel()
        rgb_diffs.append((a.rgb.float() - b.rgb.float()).abs().mean().item())
    assert n_object >= 0.03 * n_pix, "the cameras should see objects, not only walls"
    assert n_both_finite >= 0.99 * n_pix, f"only {n_both_finite / n_pix:.4f} of pixels hit in both renderers"
    assert n_depth_ok >= 0.99 * n_both_finite, f"depth within 1%: {n_depth_ok / n_both_finite:.4f}"
    assert n_id_ok >= 0.98 * n_pix, f"ids agree on {n_id_ok / n_pix:.4f}"
    assert float(np.mean(rgb_diffs)) < 6.0, f"mean |rgb| difference {np.mean(rgb_diffs):.2f}/255"


def test_render_conventions_and_cache() -> None:
    spec = sample_scene(3)
    r = spec.rooms[0]
    x, z = _free_spots(spec, 0, 1)[0]
    c2w = look_at(torch.tensor([x, -1.5, z]), torch.tensor([x, 0.0, z + 1e-3]))  # straight down
    renderer = Open3DRenderer(shadows=False)
    out = renderer.render(spec, c2w, intrinsics_from_fov(16, 16, 30.0), 16, 16)
    assert out.rgb.shape == (1, 16, 16, 3)
    # looking at the floor from 1.5 m: centre depth is 1.5 and the floor is structure, normal faces up (-y)
    assert out.depth[0, 8, 8].item() == pytest.approx(1.5, rel=1e-3)
    assert int(out.ids[0, 8, 8]) == ID_STRUCTURE
    floor = out.ids[0] == ID_STRUCTURE
    assert floor.any() and torch.allclose(out.normal[0][floor][:, 1], torch.tensor(-1.0), atol=1e-4)
    assert r.contains_xz(x, z)
    renderer.render(spec, c2w, intrinsics_from_fov(16, 16, 30.0), 16, 16)
    assert len(renderer._cache) == 1  # the RaycastingScene is built once per spec object


def test_mesh_tessellation_matches_primitives(tmp_path) -> None:
    spec = sample_scene(2)
    mesh = spec_to_mesh(spec, segments=32)
    prims = spec.primitives()
    assert mesh.triangles.shape[0] == mesh.prim_index.shape[0] == mesh.object_id.shape[0]
    assert set(np.unique(mesh.prim_index)) == set(range(len(prims)))
    assert np.array_equal(mesh.object_id, np.array([prims[i][1] for i in mesh.prim_index]))
    # closed, outward wound: every primitive's signed volume is positive
    v, f = mesh.vertices, mesh.triangles
    vol = np.einsum("ij,ij->i", np.cross(v[f[:, 0]], v[f[:, 1]]), v[f[:, 2]]) / 6.0
    assert (np.bincount(mesh.prim_index, weights=vol) > 0).all()
    path = save_mesh(spec, tmp_path / "scene.ply", segments=16)
    assert len(o3d.io.read_triangle_mesh(str(path)).triangles) == spec_to_mesh(spec, 16).n_triangles


def test_user_mesh_vertex_colours(tmp_path) -> None:
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)  # [0, 1]^3
    box.translate((-0.5, -0.5, 2.5))  # front face at z = 2.5, centred on the optical axis
    colour = np.array([0.2, 0.6, 0.8])
    box.vertex_colors = o3d.utility.Vector3dVector(np.tile(colour, (len(box.vertices), 1)))
    path = tmp_path / "box.ply"
    assert o3d.io.write_triangle_mesh(str(path), box)
    world = load_user_mesh(path)
    assert isinstance(world, MeshWorld) and world.n_triangles == 12
    out = Open3DRenderer().render_mesh(world, torch.eye(4), intrinsics_from_fov(32, 32, 60.0), 32, 32)
    # the face is square to the headlight, so the centre pixel shows the vertex colour unshaded
    assert out.depth[0, 16, 16].item() == pytest.approx(2.5, abs=1e-4)
    assert np.abs(out.rgb[0, 16, 16].numpy().astype(float) - colour * 255).max() <= 1.0
    assert int(out.ids[0, 16, 16]) == ID_STRUCTURE and int(out.ids[0, 0, 0]) == ID_MISS
    assert not torch.isfinite(out.depth[0, 0, 0])


QUAD_XYZ = np.array([[-1, 1, 2], [1, 1, 2], [1, -1, 2], [-1, -1, 2]], np.float32)  # z = 2, world -y is up
QUAD_UV_OBJ = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)  # OBJ: v = 1 at the image top


def _write_glb(path, png: bytes) -> None:
    """A minimal binary glTF of the textured quad (glTF: v = 0 at the image top)."""
    import json
    import struct

    blobs = [QUAD_XYZ.tobytes(), (QUAD_UV_OBJ * [1, -1] + [0, 1]).astype(np.float32).tobytes(),
             np.array([0, 1, 2, 0, 2, 3], np.uint16).tobytes(), png]
    views, binary = [], b""
    for blob in blobs:
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(blob)})
        binary += blob + b"\0" * (-len(blob) % 4)
    acc = [{"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
            "min": [-1, -1, 2], "max": [1, 1, 2]},
           {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2"},
           {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"}]
    gltf = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2,
                                        "material": 0}]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
            "textures": [{"source": 0}], "images": [{"bufferView": 3, "mimeType": "image/png"}],
            "accessors": acc, "bufferViews": views, "buffers": [{"byteLength": len(binary)}]}
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    head = struct.pack("<III", 0x46546C67, 2, 28 + len(js) + len(binary))
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js  # JSON chunk
    chunks += struct.pack("<II", len(binary), 0x004E4942) + binary  # BIN chunk
    path.write_bytes(head + chunks)


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_user_mesh_texture_orientation(tmp_path, suffix: str) -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    img[:4] = (255, 0, 0)  # top half red, bottom half blue
    img[4:] = (0, 0, 255)
    o3d.io.write_image(str(tmp_path / "tex.png"), o3d.geometry.Image(img))
    path = tmp_path / f"quad{suffix}"
    if suffix == ".obj":
        (tmp_path / "quad.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd tex.png\n")
        lines = ["mtllib quad.mtl", *(f"v {x} {y} {z}" for x, y, z in QUAD_XYZ),
                 *(f"vt {u} {v}" for u, v in QUAD_UV_OBJ),
                 "usemtl m", "f 1/1 2/2 3/3", "f 1/1 3/3 4/4"]
        path.write_text("\n".join(lines) + "\n")
    else:
        _write_glb(path, (tmp_path / "tex.png").read_bytes())
    K = intrinsics_from_fov(16, 16, 60.0)
    out = Open3DRenderer().render_mesh(load_user_mesh(path), torch.eye(4), K, 16, 16)
    top, bottom = out.rgb[0, 5, 8].numpy(), out.rgb[0, 11, 8].numpy()
    assert top[0] > 200 and top[2] < 50, top
    assert bottom[2] > 200 and bottom[0] < 50, bottom
    assert out.depth[0, 8, 8].item() == pytest.approx(2.0, abs=1e-4)


def test_user_mesh_errors(tmp_path) -> None:
    missing = tmp_path / "nope.ply"
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        load_user_mesh(missing)
    bad = tmp_path / "mesh.stl"
    bad.write_text("solid x\nendsolid x\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_user_mesh(bad)
    with pytest.raises(TypeError, match="render_mesh"):
        K = intrinsics_from_fov(8, 8)
        Open3DRenderer().render(MeshWorld(()), torch.eye(4), K, 8, 8)  # type: ignore[arg-type]
