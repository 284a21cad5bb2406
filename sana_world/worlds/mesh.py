"""Triangle meshes of a :class:`SceneSpec`: tessellated primitives for mesh ray casters and export.

Every primitive of ``spec.primitives()`` becomes its own closed, outward-wound (counter-clockwise seen
from outside) triangle set:

- box: 8 corners, 12 triangles;
- sphere / ellipsoid: a UV sphere with ``segments`` longitudes and ``segments // 2`` latitudes;
- cylinder: ``segments`` side quads plus two capping fans;
- cone: ``segments`` side triangles to the apex (top, smaller y) plus a base fan (bottom, larger y).

Vertices lie on the analytic surface, so a ray hits the mesh at most ``1 - cos(pi / n)`` of the radius
behind the true surface (0.12 % for n = 64, 0.48 % along latitudes with n / 2 = 32).
``SceneMesh.surface`` tells a caller which analytic normal belongs to each triangle (see ``SURFACE_*``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sana_world.worlds.spec import Primitive, SceneSpec

SURFACE_FLAT = 0  # box faces and caps: the triangle normal is exact
SURFACE_ELLIPSOID = 1  # sphere / ellipsoid: normal = R (q / s^2)
SURFACE_CYLINDER = 2  # cylinder side: normal = R (qx / sx^2, 0, qz / sz^2)
SURFACE_CONE = 3  # cone side (apex at local y = -sy, base at y = +sy)

MESH_SUFFIXES = (".ply", ".obj")


@dataclass(frozen=True)
class SceneMesh:
    """A triangle soup of a whole scene, every triangle tagged with the primitive it came from."""

    vertices: np.ndarray  # (V, 3) float64 world positions
    triangles: np.ndarray  # (F, 3) int64 vertex indices, counter-clockwise seen from outside
    prim_index: np.ndarray  # (F,) int64 index into spec.primitives()
    object_id: np.ndarray  # (F,) int64 object id (-1 = structure)
    surface: np.ndarray  # (F,) int8 SURFACE_* code of the analytic surface the triangle approximates
    vertex_colours: np.ndarray  # (V, 3) float64 base colour of the primitive's material in [0, 1]

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])


# ---------------------------------------------------------------------------------------------------------
# Unit templates in a primitive's local frame (scaled by the half extents afterwards)
# ---------------------------------------------------------------------------------------------------------


def _orient_outward(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Flip triangles of a convex template around the origin so that their normals point outward."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(b - a, c - a)  # (F, 3)
    inward = (n * (a + b + c)).sum(-1) < 0
    f = f.copy()
    f[inward] = f[inward][:, [0, 2, 1]]
    return f


def _ring(n: int, y: float, rho: float) -> np.ndarray:
    """``n`` points on a horizontal circle of radius ``rho`` at height ``y``, (n, 3)."""
    a = 2.0 * np.pi * np.arange(n) / n
    return np.stack([rho * np.cos(a), np.full(n, y), rho * np.sin(a)], axis=-1)


def _fan(centre: int, ring0: int, n: int) -> list[tuple[int, int, int]]:
    return [(centre, ring0 + k, ring0 + (k + 1) % n) for k in range(n)]


def _band(r0: int, r1: int, n: int) -> list[tuple[int, int, int]]:
    """Two triangles per quad between two rings of ``n`` vertices starting at r0 and r1."""
    out = []
    for k in range(n):
        k1 = (k + 1) % n
        out += [(r0 + k, r1 + k, r1 + k1), (r0 + k, r1 + k1, r0 + k1)]
    return out


@lru_cache(maxsize=32)
def _template(shape: str, segments: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit shape (vertices (V, 3), triangles (F, 3), surface codes (F,)) for half extents (1, 1, 1)."""
    n = segments
    if shape == "box":
        v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        f = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int64)
        codes = np.full(len(f), SURFACE_FLAT, dtype=np.int8)
    elif shape in ("sphere", "ellipsoid"):
        n_lat = max(n // 2, 4)
        theta = [math.pi * i / n_lat for i in range(1, n_lat)]
        rings = [_ring(n, -math.cos(a), math.sin(a)) for a in theta]
        v = np.concatenate([[[0.0, -1.0, 0.0]], *rings, [[0.0, 1.0, 0.0]]])
        tris = _fan(0, 1, n)
        for i in range(n_lat - 2):
            tris += _band(1 + i * n, 1 + (i + 1) * n, n)
        tris += _fan(len(v) - 1, 1 + (n_lat - 2) * n, n)
        f = np.array(tris, dtype=np.int64)
        codes = np.full(len(f), SURFACE_ELLIPSOID, dtype=np.int8)
    elif shape == "cylinder":
        v = np.concatenate([[[0.0, -1.0, 0.0]], _ring(n, -1.0, 1.0), _ring(n, 1.0, 1.0), [[0.0, 1.0, 0.0]]])
        side = _band(1, 1 + n, n)
        f = np.array(side + _fan(0, 1, n) + _fan(1 + 2 * n, 1 + n, n), dtype=np.int64)
        codes = np.array([SURFACE_CYLINDER] * len(side) + [SURFACE_FLAT] * (2 * n), dtype=np.int8)
    elif shape == "cone":
        v = np.concatenate([[[0.0, -1.0, 0.0]], _ring(n, 1.0, 1.0), [[0.0, 1.0, 0.0]]])
        side = _fan(0, 1, n)
        f = np.array(side + _fan(1 + n, 1, n), dtype=np.int64)
        codes = np.array([SURFACE_CONE] * n + [SURFACE_FLAT] * n, dtype=np.int8)
    else:
        raise ValueError(f"spec_to_mesh: unknown primitive shape {shape!r}")
    f = _orient_outward(v, f)
    for arr in (v, f, codes):
        arr.setflags(write=False)
    return v, f, codes


def yaw_matrix(yaw: float) -> np.ndarray:
    """Local -> world rotation Ry(yaw), (3, 3)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def primitive_mesh(p: Primitive, segments: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space (vertices (V, 3), triangles (F, 3), surface codes (F,)) of one primitive."""
    v, f, codes = _template(p.shape, segments)
    world = (v * np.asarray(p.size, dtype=np.float64)) @ yaw_matrix(p.yaw).T + np.asarray(p.center)  # (V, 3)
    return world, f, codes


def spec_to_mesh(spec: SceneSpec, segments: int = 64) -> SceneMesh:
    """Tessellate every primitive of ``spec`` (structure first, then objects, as in ``spec.primitives()``)."""
    if segments < 8:
        raise ValueError(f"spec_to_mesh: segments must be >= 8 for 1% depth accuracy, got {segments}")
    verts, tris, prim, obj, surf, cols = [], [], [], [], [], []
    offset = 0
    for i, (p, object_id) in enumerate(spec.primitives()):
        # 1. tessellate, 2. shift indices past earlier primitives, 3. tag every triangle
        v, f, codes = primitive_mesh(p, segments)
        verts.append(v)
        tris.append(f + offset)
        prim.append(np.full(len(f), i, dtype=np.int64))
        obj.append(np.full(len(f), object_id, dtype=np.int64))
        surf.append(codes)
        cols.append(np.broadcast_to(np.asarray(p.material.rgb(), dtype=np.float64), v.shape))
        offset += len(v)
    return SceneMesh(
        vertices=np.concatenate(verts),
        triangles=np.concatenate(tris),
        prim_index=np.concatenate(prim),
        object_id=np.concatenate(obj),
        surface=np.concatenate(surf),
        vertex_colours=np.concatenate(cols),
    )


def analytic_normals(spec: SceneSpec, points: np.ndarray, prim_index: np.ndarray, surface: np.ndarray,
                     face_normals: np.ndarray) -> np.ndarray:
    """Unit outward normals (N, 3) of the analytic primitives at hit ``points`` (N, 3).

    ``face_normals`` (N, 3) are used for flat triangles; curved ones get the gradient of their implicit
    surface evaluated at the hit point in the primitive's local frame.
    """
    prims = [p for p, _ in spec.primitives()]
    centers = np.array([p.center for p in prims], dtype=np.float64)  # (P, 3)
    sizes = np.array([p.size for p in prims], dtype=np.float64)  # (P, 3)
    yaws = np.array([p.yaw for p in prims], dtype=np.float64)  # (P,)
    out = np.array(face_normals, dtype=np.float64, copy=True)  # (N, 3)
    curved = surface != SURFACE_FLAT
    if not curved.any():
        return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    pi, code = prim_index[curved], surface[curved]
    c, s = np.cos(yaws[pi]), np.sin(yaws[pi])
    d = points[curved] - centers[pi]  # (M, 3)
    # local = Ry(yaw)^T d
    q = np.stack([c * d[:, 0] - s * d[:, 2], d[:, 1], s * d[:, 0] + c * d[:, 2]], axis=-1)  # (M, 3)
    sz = sizes[pi]  # (M, 3)
    n = q / sz**2  # ellipsoid gradient (M, 3)
    cyl = code == SURFACE_CYLINDER
    n[cyl, 1] = 0.0
    cone = code == SURFACE_CONE
    if cone.any():
        # f = sqrt((x/sx)^2 + (z/sz)^2) - (y + sy) / (2 sy)
        qc, sc = q[cone], sz[cone]
        rho = np.maximum(np.sqrt((qc[:, 0] / sc[:, 0]) ** 2 + (qc[:, 2] / sc[:, 2]) ** 2), 1e-9)
        n[cone] = np.stack([qc[:, 0] / (sc[:, 0] ** 2 * rho), -0.5 / sc[:, 1],
                            qc[:, 2] / (sc[:, 2] ** 2 * rho)], axis=-1)
    # back to world: Ry(yaw) n
    world = np.stack([c * n[:, 0] + s * n[:, 2], n[:, 1], -s * n[:, 0] + c * n[:, 2]], axis=-1)
    out[curved] = world
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def to_open3d(mesh: SceneMesh) -> Any:
    """A legacy ``open3d.geometry.TriangleMesh`` with vertex colours and vertex normals."""
    from sana_world.render.open3d_import import import_open3d

    o3d = import_open3d()
    out = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(mesh.triangles, dtype=np.int32)),
    )
    colours = np.ascontiguousarray(mesh.vertex_colours, dtype=np.float64)
    out.vertex_colors = o3d.utility.Vector3dVector(colours)
    out.compute_vertex_normals()
    return out


def save_mesh(spec: SceneSpec, path: str | Path, segments: int = 64) -> Path:
    """Write the tessellated scene to ``path`` (.ply or .obj, vertex colours = material base colours)."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"save_mesh: unsupported extension {path.suffix!r} for {path} "
                         f"(use one of {MESH_SUFFIXES})")
    if not path.parent.exists():
        raise FileNotFoundError(f"save_mesh: directory {path.parent} does not exist")
    from sana_world.render.open3d_import import import_open3d

    o3d = import_open3d()
    ok = o3d.io.write_triangle_mesh(str(path), to_open3d(spec_to_mesh(spec, segments)), write_ascii=False)
    if not ok:
        raise OSError(f"save_mesh: open3d failed to write {path}")
    return path
