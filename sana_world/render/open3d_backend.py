"""Renderer 2: open3d's Embree ray caster on the CPU, for procedural worlds and user meshes.

Procedural worlds (:class:`SceneSpec`) are tessellated by :func:`sana_world.worlds.mesh.spec_to_mesh`;
every hit is mapped back to its primitive, gets the analytic normal of that primitive and is shaded by
:mod:`sana_world.render.shading` exactly like the torch renderer, with shadow rays tested by
``RaycastingScene.test_occlusions``. With ``fast`` (the default when numba imports) the per-pixel work
after the cast runs in the fused kernels of :mod:`sana_world.render.fast_shading`, which compute the same
normals, ids and (to within rare 1/255 steps) colours as the torch shading path. User meshes
(:class:`MeshWorld`, from :func:`load_user_mesh`) carry vertex colours or a texture image and are lit by
a simple Lambertian headlight.

Rays come from :func:`sana_world.render.fast_shading.pinhole_rays` (both shading paths and user meshes):
pixel centres at +0.5 and camera-space z = 1, so ``t_hit`` is z-depth (the convention of
:func:`sana_world.camera.camera_rays`), computed in float64 and rounded to float32 once.
"""

from __future__ import annotations

from collections import OrderedDict

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sana_world.render import fast_shading
from sana_world.render.base import ID_MISS, ID_STRUCTURE, RenderOutput
from sana_world.render.open3d_import import import_open3d
from sana_world.render.shading import MISS_RGB, PrimitiveTable, primitive_table, shade, shadow_rays
from sana_world.worlds.collision import SegmentCull, segment_cull
from sana_world.worlds.mesh import SURFACE_FLAT, SceneMesh, analytic_normals, spec_to_mesh
from sana_world.worlds.spec import SceneSpec

USER_MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf")


@dataclass(frozen=True)
class Open3DConfig:
    """Settings of :class:`Open3DRenderer`."""

    shadows: bool = True
    n_threads: int = 0  # 0 = all cores (open3d's choice)
    segments: int = 64  # tessellation of curved primitives
    cache_size: int = 4  # RaycastingScenes kept per renderer (keyed by object identity)
    headlight_ambient: float = 0.3  # user meshes: rgb = albedo * (ambient + (1 - ambient) * |n . v|)
    fast: bool | None = None  # SceneSpec shading in numba kernels; None = when numba imports
    cull_shadows: bool = True  # fast path: trace no shadow ray that provably reaches its light (same image)

    def __post_init__(self) -> None:
        if self.n_threads < 0:
            raise ValueError(f"n_threads must be >= 0 (0 = automatic), got {self.n_threads}")
        if self.cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {self.cache_size}")
        if not 0.0 <= self.headlight_ambient <= 1.0:
            raise ValueError(f"headlight_ambient must lie in [0, 1], got {self.headlight_ambient}")
        if self.fast and not fast_shading.available():
            raise ValueError("Open3DConfig(fast=True) needs numba (pip install numba); "
                             "use fast=None to fall back to torch shading")


# ---------------------------------------------------------------------------------------------------------
# User meshes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshPart:
    """One geometry of a user mesh with a single material."""

    vertices: np.ndarray  # (V, 3) float32
    triangles: np.ndarray  # (F, 3) int32
    base_colour: np.ndarray  # (3,) float32 material colour (multiplies the texture)
    vertex_colours: np.ndarray | None = None  # (V, 3) float32 in [0, 1]
    vertex_normals: np.ndarray | None = None  # (V, 3) float32
    triangle_uvs: np.ndarray | None = None  # (F, 3, 2) float32, v = 0 at the bottom of the image
    texture: np.ndarray | None = None  # (Ht, Wt, 3) float32 in [0, 1], row 0 = top of the image


@dataclass(frozen=True)
class MeshWorld:
    """A user-supplied triangle world; ``ids`` in renders are -1 (or the part index) on hits."""

    parts: tuple[MeshPart, ...]
    source: str = ""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        v = np.concatenate([p.vertices for p in self.parts])
        return v.min(0), v.max(0)

    @property
    def n_triangles(self) -> int:
        return sum(int(p.triangles.shape[0]) for p in self.parts)


def _image_to_float(image: Any) -> np.ndarray | None:
    """open3d Image -> (H, W, 3) float32 in [0, 1], or None if empty."""
    if image is None:
        return None
    a = np.asarray(image)
    if a.size == 0:
        return None
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 65535.0 if a.dtype == np.uint16 else 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def _part_from_legacy(mesh: Any, base: np.ndarray, texture: np.ndarray | None) -> MeshPart:
    """A :class:`MeshPart` from a legacy open3d TriangleMesh."""
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.triangles, dtype=np.int32)
    colours = np.asarray(mesh.vertex_colors, dtype=np.float32) if mesh.has_vertex_colors() else None
    normals = np.asarray(mesh.vertex_normals, dtype=np.float32) if mesh.has_vertex_normals() else None
    uvs = None
    if texture is not None and mesh.has_triangle_uvs():
        uvs = np.asarray(mesh.triangle_uvs, dtype=np.float32).reshape(-1, 3, 2)
    else:
        texture = None
    return MeshPart(v, f, base.astype(np.float32), colours, normals, uvs, texture)


def load_user_mesh(path: str | Path) -> MeshWorld:
    """Load a .ply / .obj / .glb / .gltf mesh with its vertex colours or textures.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unsupported extension, or the file holds no triangles.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in USER_MESH_SUFFIXES:
        raise ValueError(f"load_user_mesh: unsupported mesh format {path.suffix!r} for {path} "
                         f"(supported: {', '.join(USER_MESH_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"load_user_mesh: mesh file not found: {path}")
    o3d = import_open3d()
    white = np.ones(3, dtype=np.float32)
    parts: list[MeshPart] = []
    if suffix == ".ply":
        mesh = o3d.io.read_triangle_mesh(str(path))
        if len(mesh.triangles) > 0:
            parts.append(_part_from_legacy(mesh, white, None))
    else:
        # read_triangle_model keeps one mesh per material; UVs have v = 0 at the image bottom
        model = o3d.io.read_triangle_model(str(path))
        for info in model.meshes:
            if len(info.mesh.triangles) == 0:
                continue
            base, texture = white, None
            if 0 <= info.material_idx < len(model.materials):
                mat = model.materials[info.material_idx]
                base = np.asarray(mat.base_color, dtype=np.float32)[:3]
                texture = _image_to_float(mat.albedo_img)
            parts.append(_part_from_legacy(info.mesh, base, texture))
    if not parts:
        raise ValueError(f"load_user_mesh: no triangles could be read from {path}")
    return MeshWorld(tuple(parts), str(path))


def _sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup of ``texture`` (Ht, Wt, 3) at ``uv`` (N, 2) with v up; (N, 3)."""
    th, tw = texture.shape[:2]
    x = uv[:, 0] * tw - 0.5
    y = (1.0 - uv[:, 1]) * th - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = x0 % tw, (x0 + 1) % tw
    ya, yb = y0 % th, (y0 + 1) % th
    top = texture[ya, xa] * (1 - fx) + texture[ya, xb] * fx
    bottom = texture[yb, xa] * (1 - fx) + texture[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


# ---------------------------------------------------------------------------------------------------------
# Renderer
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _SpecEntry:
    spec: SceneSpec
    scene: Any  # open3d.t.geometry.RaycastingScene
    mesh: SceneMesh
    face_normals: np.ndarray  # (F, 3) float64 unit
    table: PrimitiveTable
    fast: fast_shading.FastTables | None = None  # numpy tables of the fused kernels, built on first use
    cull: SegmentCull | None = None  # shadow-ray culling tables of the fast path, built on first use


@dataclass
class _MeshEntry:
    world: MeshWorld
    scene: Any
    face_normals: list[np.ndarray]  # per part (F, 3)


def _batch(c2w: torch.Tensor | np.ndarray, K: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 4, 4) float64 camera->world and (B, 3, 3) float64 intrinsics from c2w / K of rank 2 or 3."""
    c2w = np.asarray(c2w.detach().cpu() if isinstance(c2w, torch.Tensor) else c2w, dtype=np.float64)
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    if c2w.ndim == 2:
        c2w = c2w[None]
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"c2w must have shape (4, 4) or (B, 4, 4), got {c2w.shape}")
    if K.ndim == 2:
        K = np.broadcast_to(K, (c2w.shape[0], 3, 3))
    if K.shape != (c2w.shape[0], 3, 3):
        raise ValueError(f"K must have shape (3, 3) or ({c2w.shape[0]}, 3, 3), got {K.shape}")
    return np.ascontiguousarray(c2w), np.ascontiguousarray(K)


def _face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]).astype(np.float64)  # (F, 3)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-20)


class Open3DRenderer:
    """CPU ray caster on open3d's RaycastingScene; implements :class:`sana_world.render.base.Renderer`."""

    def __init__(self, shadows: bool = True, n_threads: int = 0, config: Open3DConfig | None = None,
                 fast: bool | None = None) -> None:
        self.config = config or Open3DConfig(shadows=shadows, n_threads=n_threads, fast=fast)
        self._o3d = import_open3d()
        self._cache: OrderedDict[int, tuple[object, Any]] = OrderedDict()  # id -> (key, entry), LRU order
        # SceneSpec renders go through the fused numba kernels (see Open3DConfig.fast)
        self.fast = fast_shading.available() if self.config.fast is None else self.config.fast
        self.fast_frames = 0  # images shaded by the fused kernels so far
        self._consts = fast_shading.shade_constants() if self.fast else None
        self._rays: np.ndarray | None = None  # primary-ray buffer of the fast path, reused across frames

    # --- caching ----------------------------------------------------------------------------------------
    def _ray_buffer(self, n: int) -> np.ndarray:
        """A reused (n, 6) float32 buffer for the primary rays of the fast path (only read during a render,
        so one renderer must not render from two threads at once)."""
        buf = self._rays
        if buf is None or buf.shape[0] != n:
            buf = self._rays = np.empty((n, 6), dtype=np.float32)
        return buf

    def _lookup(self, key: object) -> Any | None:
        hit = self._cache.get(id(key))
        if hit is None or hit[0] is not key:
            return None
        self._cache.move_to_end(id(key))  # most recently used last
        return hit[1]

    def _store(self, key: object, entry: Any) -> None:
        self._cache[id(key)] = (key, entry)  # the key is held, so its id is not reused while cached
        self._cache.move_to_end(id(key))
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def _spec_entry(self, spec: SceneSpec) -> _SpecEntry:
        entry = self._lookup(spec)
        if entry is None:
            mesh = spec_to_mesh(spec, self.config.segments)
            scene = self._o3d.t.geometry.RaycastingScene()
            scene.add_triangles(self._o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                                self._o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
            entry = _SpecEntry(spec, scene, mesh, _face_normals(mesh.vertices, mesh.triangles),
                               primitive_table(spec, "cpu"))
            self._store(spec, entry)
        return entry

    def _mesh_entry(self, world: MeshWorld) -> _MeshEntry:
        entry = self._lookup(world)
        if entry is None:
            scene = self._o3d.t.geometry.RaycastingScene()
            o3c = self._o3d.core
            for part in world.parts:
                scene.add_triangles(o3c.Tensor(np.ascontiguousarray(part.vertices, dtype=np.float32)),
                                    o3c.Tensor(np.ascontiguousarray(part.triangles, dtype=np.uint32)))
            entry = _MeshEntry(world, scene, [_face_normals(p.vertices, p.triangles) for p in world.parts])
            self._store(world, entry)
        return entry

    # --- shared ray casting -----------------------------------------------------------------------------
    def _cast(self, scene: Any, c2w: Any, K: Any, height: int,
              width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Primary rays (B, H, W, 6) float32 and open3d's hit dict as numpy arrays."""
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        c2ws, Ks = _batch(c2w, K)
        B = c2ws.shape[0]
        rays = fast_shading.pinhole_rays(c2ws, Ks, height, width).reshape(B, height, width, 6)
        hits = scene.cast_rays(self._o3d.core.Tensor.from_numpy(rays), nthreads=self.config.n_threads)
        return rays, {k: hits[k].numpy() for k in ("t_hit", "geometry_ids", "primitive_ids", "primitive_uvs")}

    def _visibility(self, scene: Any, position: torch.Tensor, normal: torch.Tensor,
                    table: PrimitiveTable) -> torch.Tensor:
        """Light visibility (N, L) float32 from any-hit shadow rays (1 = lit)."""
        origins, dirs, max_t = shadow_rays(position, normal, table)  # (N, L, 3), (N, L, 3), (N, L)
        # scale each direction by its light distance so that one scalar tfar = 1 ends every ray at its light
        rays = torch.cat([origins, dirs * max_t.unsqueeze(-1)], dim=-1).reshape(-1, 6)  # (N * L, 6)
        occluded = scene.test_occlusions(self._o3d.core.Tensor(rays.numpy().astype(np.float32)), tnear=0.0,
                                         tfar=1.0, nthreads=self.config.n_threads).numpy()
        return torch.from_numpy(~occluded.reshape(max_t.shape)).to(torch.float32)

    # --- procedural worlds ------------------------------------------------------------------------------
    def render(self, scene: SceneSpec, c2w: torch.Tensor, K: torch.Tensor, height: int,
               width: int) -> RenderOutput:
        """Render ``scene`` from cameras ``c2w`` (B, 4, 4) or (4, 4) with intrinsics ``K``."""
        if not isinstance(scene, SceneSpec):
            raise TypeError(f"Open3DRenderer.render expects a SceneSpec, got {type(scene).__name__} "
                            "(use render_mesh for a MeshWorld)")
        entry = self._spec_entry(scene)
        if self.fast:
            return self._render_fast(entry, c2w, K, height, width)
        rays, hits = self._cast(entry.scene, c2w, K, height, width)
        B = rays.shape[0]
        # 1. hit mask, z-depth and hit triangles
        t = hits["t_hit"].reshape(-1)  # (N,)
        hit = np.isfinite(t)
        tri = hits["primitive_ids"].reshape(-1)[hit].astype(np.int64)  # (M,)
        hit_rays = rays.reshape(-1, 6)[hit].astype(np.float64)  # (M, 6)
        o, d = hit_rays[:, :3], hit_rays[:, 3:]
        # 2. world position and the analytic normal of the hit primitive, turned towards the camera
        pos = o + t[hit, None].astype(np.float64) * d  # (M, 3)
        prim = entry.mesh.prim_index[tri]
        nrm = analytic_normals(scene, pos, prim, entry.mesh.surface[tri], entry.face_normals[tri])  # (M, 3)
        nrm = np.where(((nrm * d).sum(-1) > 0)[:, None], -nrm, nrm)
        # 3. shade the hit points (shadows through open3d any-hit queries)
        pos_t = torch.from_numpy(pos.astype(np.float32))
        nrm_t = torch.from_numpy(nrm.astype(np.float32))
        prim_t = torch.from_numpy(prim)
        vis = None
        if self.config.shadows and entry.table.num_lights > 0 and len(pos) > 0:
            vis = self._visibility(entry.scene, pos_t, nrm_t, entry.table)
        all_hit = torch.ones(len(pos), dtype=torch.bool)
        rgb_hit = shade(pos_t, nrm_t, prim_t, all_hit, entry.table, vis)  # (M, 3)
        # 4. scatter into full images
        N = t.shape[0]
        rgb = torch.tensor(MISS_RGB, dtype=torch.float32).expand(N, 3).clone()  # (N, 3)
        normal = torch.zeros(N, 3, dtype=torch.float32)
        ids = torch.full((N,), ID_MISS, dtype=torch.int32)
        hit_t = torch.from_numpy(hit)
        rgb[hit_t] = rgb_hit
        normal[hit_t] = nrm_t
        ids[hit_t] = torch.from_numpy(entry.mesh.object_id[tri].astype(np.int32))
        return RenderOutput(
            rgb=(rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).reshape(B, height, width, 3),
            depth=torch.from_numpy(t.astype(np.float32)).reshape(B, height, width),
            normal=normal.reshape(B, height, width, 3),
            ids=ids.reshape(B, height, width),
        )

    def _render_fast(self, entry: _SpecEntry, c2w: Any, K: Any, height: int, width: int) -> RenderOutput:
        """:meth:`render` with the per-pixel work in :mod:`fast_shading` (same outputs)."""
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if entry.fast is None:
            entry.fast = fast_shading.fast_tables(entry.spec, entry.mesh, entry.face_normals)
        tab, o3c, nthreads = entry.fast, self._o3d.core, self.config.n_threads
        mode = fast_shading.SHADOWS_OFF
        if self.config.shadows:
            mode = fast_shading.SHADOWS_CULLED if self.config.cull_shadows else fast_shading.SHADOWS_ALL
        if entry.cull is None:
            m = entry.mesh
            entry.cull = segment_cull(m.vertices, m.triangles, m.prim_index, m.surface == SURFACE_FLAT,
                                      entry.face_normals, tab.light_pos)
        cull = entry.cull
        # 1. primary rays (pinhole_rays, so rays and depths equal the torch-shaded path) and hits
        c2ws, Ks = _batch(c2w, K)
        B = c2ws.shape[0]
        rays = fast_shading.pinhole_rays(c2ws, Ks, height, width, self._ray_buffer(B * height * width))
        hits = entry.scene.cast_rays(o3c.Tensor.from_numpy(rays), nthreads=nthreads)
        t = hits["t_hit"].numpy().reshape(-1)  # (N,)
        tri = hits["primitive_ids"].numpy().reshape(-1)  # (N,) uint32
        # 2. normals, ids and shadow rays of the hits, 3. light visibility, 4. colours
        normal, ids, hit_index, pos, nrm, prim, slot, shadow = fast_shading.surface_kernel(
            rays, t, tri, tab.tri_prim, tab.tri_surface, tab.tri_object, tab.face_normals, tab.center,
            tab.size, tab.cos_yaw, tab.sin_yaw, tab.light_pos, ID_MISS, mode, cull.light_pos, cull.grid,
            cull.start, cull.prims, cull.box_c, cull.box_e, cull.face_out, cull.face_in)
        if len(shadow) > 0:
            occluded = entry.scene.test_occlusions(o3c.Tensor.from_numpy(shadow), tnear=0.0, tfar=1.0,
                                                   nthreads=nthreads).numpy()
            visible = ~occluded.reshape(-1)  # (S,) one per shadow ray
        else:
            visible = np.ones(len(shadow), dtype=np.bool_)
        k = self._consts
        assert k is not None
        rgb = fast_shading.shade_kernel(hit_index, pos, nrm, prim, slot, visible, tab.rgb, tab.rgb2,
                                        tab.texture, tab.inv_scale, tab.light_pos, tab.light_rgb, tab.ambient,
                                        k.exposure, k.falloff, k.levels, k.coarse, k.miss,
                                        t.shape[0])  # (N, 3) uint8
        self.fast_frames += B
        return RenderOutput(
            rgb=torch.from_numpy(rgb).reshape(B, height, width, 3),
            depth=torch.from_numpy(t.copy()).reshape(B, height, width),
            normal=torch.from_numpy(normal).reshape(B, height, width, 3),
            ids=torch.from_numpy(ids).reshape(B, height, width),
        )

    # --- user meshes ------------------------------------------------------------------------------------
    def render_mesh(self, world: MeshWorld, c2w: torch.Tensor, K: torch.Tensor, height: int, width: int,
                    part_ids: bool = False) -> RenderOutput:
        """Render a user mesh with a Lambertian headlight.

        ``ids`` are -1 on hits (the mesh counts as structure), or the part index when ``part_ids``; -2 on
        misses.
        """
        entry = self._mesh_entry(world)
        rays, hits = self._cast(entry.scene, c2w, K, height, width)
        B = rays.shape[0]
        t = hits["t_hit"].reshape(-1)  # (N,)
        geom = hits["geometry_ids"].reshape(-1).astype(np.int64)
        tri_all = hits["primitive_ids"].reshape(-1).astype(np.int64)
        uvs_all = hits["primitive_uvs"].reshape(-1, 2).astype(np.float64)
        dirs = rays.reshape(-1, 6)[:, 3:].astype(np.float64)
        hit = np.isfinite(t)
        N = t.shape[0]
        albedo = np.tile(np.asarray(MISS_RGB, dtype=np.float64), (N, 1))  # (N, 3)
        normal = np.zeros((N, 3), dtype=np.float64)
        light = np.ones(N, dtype=np.float64)
        for g, part in enumerate(world.parts):
            # 1. pixels of this part, their triangles and barycentric weights (1 - u - v, u, v)
            sel = np.nonzero(hit & (geom == g))[0]
            if sel.size == 0:
                continue
            tri = tri_all[sel]
            u, v = uvs_all[sel, 0:1], uvs_all[sel, 1:2]
            w = np.concatenate([1.0 - u - v, u, v], axis=-1)  # (M, 3)
            corners = part.triangles[tri]  # (M, 3)
            # 2. colour: texture, else vertex colours, else the material colour
            if part.texture is not None and part.triangle_uvs is not None:
                uv = (part.triangle_uvs[tri] * w[..., None]).sum(1)  # (M, 2)
                col = _sample_texture(part.texture, uv) * part.base_colour
            elif part.vertex_colours is not None:
                col = (part.vertex_colours[corners] * w[..., None]).sum(1)
            else:
                col = np.broadcast_to(part.base_colour, (sel.size, 3))
            # 3. normal: interpolated vertex normals if the file has them, else the face normal
            if part.vertex_normals is not None:
                n = (part.vertex_normals[corners] * w[..., None]).sum(1)
                n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
            else:
                n = entry.face_normals[g][tri]
            dd = dirs[sel] / np.linalg.norm(dirs[sel], axis=-1, keepdims=True)
            cos = (n * dd).sum(-1)
            n = np.where((cos > 0)[:, None], -n, n)
            a = self.config.headlight_ambient
            albedo[sel] = col
            normal[sel] = n
            light[sel] = a + (1.0 - a) * np.abs(cos)
        rgb = np.clip(albedo * light[:, None], 0.0, 1.0)
        ids = np.where(hit, geom if part_ids else ID_STRUCTURE, ID_MISS).astype(np.int32)
        return RenderOutput(
            rgb=torch.from_numpy(np.round(rgb * 255.0).astype(np.uint8)).reshape(B, height, width, 3),
            depth=torch.from_numpy(t.astype(np.float32)).reshape(B, height, width),
            normal=torch.from_numpy(normal.astype(np.float32)).reshape(B, height, width, 3),
            ids=torch.from_numpy(ids).reshape(B, height, width),
        )
