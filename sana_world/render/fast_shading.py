"""Fused per-pixel shading for the open3d renderer: numba kernels that match :mod:`shading` bit for bit.

The torch reference (:func:`sana_world.render.shading.albedo_from` / :func:`shade_lit`) evaluates all
eight texture patterns on every pixel and pays torch's per-op overhead dozens of times per frame; here
one compiled loop per frame computes, per pixel, exactly the same formulas (float32 where the
reference is float32, float64 where :func:`sana_world.worlds.mesh.analytic_normals` is float64) but only
the pattern of the pixel's own texture code. Besides :func:`pinhole_rays` (the primary rays of both
open3d shading paths), two kernels run per frame:

1. :func:`surface_kernel`: hit mask, world position, analytic normal turned to the camera, object ids
   and the shadow rays (one per hit and light) for ``RaycastingScene.test_occlusions``;
2. :func:`shade_kernel`: albedo, Lambert lighting with the light visibility, tone map and the uint8
   quantisation of the whole image.

Rounding that the reference does through SIMD fused multiply-adds (``torch.lerp``) is reproduced with an
exact float64 product; ``sin`` and ``pow`` come from libm instead of SLEEF and can differ by one ulp, so
a handful of pixels per frame may differ by 1/255.

numba is optional: :func:`available` says whether it imports, and callers fall back to the torch path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sana_world.render.shading import DEFAULT_SHADING, MISS_RGB, SHADOW_OFFSET, ShadingConfig
from sana_world.worlds.collision import CULL_LIFT
from sana_world.worlds.mesh import SURFACE_CONE, SURFACE_CYLINDER, SURFACE_FLAT, SceneMesh
from sana_world.worlds.palette import TEXTURES
from sana_world.worlds.spec import SceneSpec

try:  # pragma: no cover - depends on the machine
    from numba import njit

    _NUMBA_ERROR: str | None = None
except ImportError as err:  # pragma: no cover - depends on the machine
    _NUMBA_ERROR = str(err)

    def njit(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        """Stand-in decorator: the kernels exist but :func:`available` is False."""
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


def available() -> bool:
    """True when numba imports, i.e. the fused kernels can run."""
    return _NUMBA_ERROR is None


# ---------------------------------------------------------------------------------------------------------
# Per-scene tables (numpy, built once per cached scene)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastTables:
    """Per-triangle and per-primitive arrays of one scene, in the dtypes the kernels expect."""

    tri_prim: np.ndarray  # (F,) int64 primitive index of each triangle
    tri_surface: np.ndarray  # (F,) int8 SURFACE_* code
    tri_object: np.ndarray  # (F,) int32 object id (-1 = structure)
    face_normals: np.ndarray  # (F, 3) float64 unit
    center: np.ndarray  # (P, 3) float64
    size: np.ndarray  # (P, 3) float64 half extents
    cos_yaw: np.ndarray  # (P,) float64
    sin_yaw: np.ndarray  # (P,) float64
    rgb: np.ndarray  # (P, 3) float32
    rgb2: np.ndarray  # (P, 3) float32
    texture: np.ndarray  # (P,) int64 texture code
    inv_scale: np.ndarray  # (P,) float32 1 / scale, rounded as torch's ``1.0 / scale`` rounds it
    light_pos: np.ndarray  # (L, 3) float32
    light_rgb: np.ndarray  # (L, 3) float32 colour * intensity
    ambient: np.float32

    @property
    def num_lights(self) -> int:
        return int(self.light_pos.shape[0])


def fast_tables(spec: SceneSpec, mesh: SceneMesh, face_normals: np.ndarray) -> FastTables:
    """Build the :class:`FastTables` of ``spec`` tessellated as ``mesh`` (face normals (F, 3))."""
    prims = [p for p, _ in spec.primitives()]
    f32, f64 = np.float32, np.float64
    yaws = np.array([p.yaw for p in prims], dtype=f64)

    def arr(values: list, dtype: Any, width: int = 0) -> np.ndarray:
        a = np.array(values, dtype=dtype)
        return np.ascontiguousarray(a.reshape(-1, width) if width else a.reshape(-1))

    lights = spec.lights
    return FastTables(
        tri_prim=np.ascontiguousarray(mesh.prim_index, dtype=np.int64),
        tri_surface=np.ascontiguousarray(mesh.surface, dtype=np.int8),
        tri_object=np.ascontiguousarray(mesh.object_id, dtype=np.int32),
        face_normals=np.ascontiguousarray(face_normals, dtype=f64),
        center=arr([p.center for p in prims], f64, 3),
        size=arr([p.size for p in prims], f64, 3),
        cos_yaw=np.cos(yaws),  # as analytic_normals computes them (numpy, float64)
        sin_yaw=np.sin(yaws),
        rgb=arr([p.material.rgb() for p in prims], f32, 3),
        rgb2=arr([p.material.rgb2() for p in prims], f32, 3),
        texture=arr([TEXTURES[p.material.texture] for p in prims], np.int64),
        inv_scale=f32(1.0) / arr([p.material.scale for p in prims], f32),
        light_pos=arr([lt.position for lt in lights], f32, 3),
        light_rgb=arr([tuple(c * lt.intensity for c in lt.colour) for lt in lights], f32, 3),
        ambient=f32(spec.ambient),
    )


# ---------------------------------------------------------------------------------------------------------
# Kernel 0: primary rays
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False, error_model="numpy")
def _pinhole_rays_kernel(c2w, K, height, width, out):  # pragma: no cover - compiled
    """Fill ``out`` (B * H * W, 6) float32 with [origin, direction] of every pixel; see pinhole_rays."""
    r = 0
    for b in range(c2w.shape[0]):
        fx, fy, cx, cy = K[b, 0, 0], K[b, 1, 1], K[b, 0, 2], K[b, 1, 2]
        ox, oy, oz = np.float32(c2w[b, 0, 3]), np.float32(c2w[b, 1, 3]), np.float32(c2w[b, 2, 3])
        r00, r01, r02 = c2w[b, 0, 0], c2w[b, 0, 1], c2w[b, 0, 2]
        r10, r11, r12 = c2w[b, 1, 0], c2w[b, 1, 1], c2w[b, 1, 2]
        r20, r21, r22 = c2w[b, 2, 0], c2w[b, 2, 1], c2w[b, 2, 2]
        for y in range(height):
            yc = (np.float64(y) + 0.5 - cy) / fy
            by0, by1, by2 = r01 * yc + r02, r11 * yc + r12, r21 * yc + r22
            for x in range(width):
                xc = (np.float64(x) + 0.5 - cx) / fx
                out[r, 0], out[r, 1], out[r, 2] = ox, oy, oz
                out[r, 3] = np.float32(r00 * xc + by0)
                out[r, 4] = np.float32(r10 * xc + by1)
                out[r, 5] = np.float32(r20 * xc + by2)
                r += 1
    return out


def pinhole_rays(c2w: np.ndarray, K: np.ndarray, height: int, width: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Primary rays (B * H * W, 6) float32 [origin, direction] of cameras ``c2w`` (B, 4, 4) float64 with
    intrinsics ``K`` (B, 3, 3) float64, in the convention of :func:`sana_world.camera.camera_rays`: pixel
    centres at +0.5, camera-space z = 1 (so a hit's ``t`` is its z-depth), computed in float64 and rounded
    once. ``out`` (B * H * W, 6) float32 is filled and returned when given.

    With numba a compiled loop fills the rays; without it numpy evaluates the same float64 formulas in the
    same order, so both give bit-identical rays.
    """
    B = c2w.shape[0]
    if out is None:
        out = np.empty((B * height * width, 6), dtype=np.float32)
    if available():
        return _pinhole_rays_kernel(c2w, K, height, width, out)
    view = out.reshape(B, height, width, 6)
    xs = np.arange(width, dtype=np.float64) + 0.5  # (W,)
    ys = np.arange(height, dtype=np.float64) + 0.5  # (H,)
    for b in range(B):
        xc = ((xs - K[b, 0, 2]) / K[b, 0, 0])[None, :]  # (1, W)
        yc = ((ys - K[b, 1, 2]) / K[b, 1, 1])[:, None]  # (H, 1)
        view[b, :, :, :3] = c2w[b, :3, 3].astype(np.float32)
        for a in range(3):
            view[b, :, :, 3 + a] = c2w[b, a, 0] * xc + (c2w[b, a, 1] * yc + c2w[b, a, 2])
    return out


# ---------------------------------------------------------------------------------------------------------
# Kernel 1: surfaces, normals, ids and shadow rays
# ---------------------------------------------------------------------------------------------------------

_FLAT, _CYL, _CONE = SURFACE_FLAT, SURFACE_CYLINDER, SURFACE_CONE
_F = np.float32
_0, _HALF, _1, _2, _3 = _F(0.0), _F(0.5), _F(1.0), _F(2.0), _F(3.0)
_OFFSET32 = _F(SHADOW_OFFSET)
_TINY32 = _F(1e-12)
_CULL_LIFT32 = _F(CULL_LIFT)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def segment_free(ox, oy, oz, li, skip_prim, light_pos, grid, start, prims, box_c,
                 box_e):  # pragma: no cover - compiled
    """Whether the segment from (ox, oy, oz) to light ``li`` provably misses every primitive box of its
    cube-map cell of a :class:`~sana_world.worlds.collision.SegmentCull` (float64 separating-axis tests),
    ignoring primitive ``skip_prim`` (-1: none). In this module, so numba's cache of surface_kernel sees
    every change to it."""
    lx, ly, lz = light_pos[li, 0], light_pos[li, 1], light_pos[li, 2]
    wx, wy, wz = ox - lx, oy - ly, oz - lz
    ax, ay, az = abs(wx), abs(wy), abs(wz)
    # 1. the cube-map cell of the direction light -> point
    if ax >= ay and ax >= az:
        face, t, wb, wc = (0 if wx >= 0 else 1), ax, wy, wz
    elif ay >= az:
        face, t, wb, wc = (2 if wy >= 0 else 3), ay, wx, wz
    else:
        face, t, wb, wc = (4 if wz >= 0 else 5), az, wx, wy
    if not t > 0.0:
        return False
    half = 0.5 * grid
    inv_t = half / t
    i = min(max(int(wb * inv_t + half), 0), grid - 1)
    j = min(max(int(wc * inv_t + half), 0), grid - 1)
    cell = (face * grid + i) * grid + j
    # 2. separating-axis tests of the segment (midpoint m, half vector h) against the listed boxes (centre c,
    #    half extents e): the box axes, then the cross products of the segment with them
    hx, hy, hz = 0.5 * (lx - ox), 0.5 * (ly - oy), 0.5 * (lz - oz)
    mx, my, mz = ox + hx, oy + hy, oz + hz
    ahx, ahy, ahz = abs(hx), abs(hy), abs(hz)
    for k in range(start[li, cell], start[li, cell + 1]):
        p = prims[k]
        if p == skip_prim:
            continue
        cx, cy, cz = mx - box_c[p, 0], my - box_c[p, 1], mz - box_c[p, 2]
        ex, ey, ez = box_e[p, 0], box_e[p, 1], box_e[p, 2]
        if abs(cx) > ex + ahx or abs(cy) > ey + ahy or abs(cz) > ez + ahz:
            continue
        if (abs(cy * hz - cz * hy) > ey * ahz + ez * ahy or abs(cz * hx - cx * hz) > ex * ahz + ez * ahx
                or abs(cx * hy - cy * hx) > ex * ahy + ey * ahx):
            continue
        return False  # no separating axis: the segment meets the box
    return True


SHADOWS_OFF, SHADOWS_ALL, SHADOWS_CULLED = 0, 1, 2  # surface_kernel's shadow_mode
SLOT_DARK, SLOT_LIT = -1, -2  # slots of (hit, light) pairs without a shadow ray


@njit(cache=True, fastmath=False, error_model="numpy")
def surface_kernel(rays, t_hit, tri_ids, tri_prim, tri_surface, tri_object, face_normals, center, size,
                   cos_yaw, sin_yaw, light_pos, id_miss, shadow_mode, cull_light, cull_grid, cull_start,
                   cull_prims, cull_c, cull_e, face_out, face_in):  # pragma: no cover - compiled
    """Per pixel: analytic normals, ids and shadow rays of the hits.

    rays (N, 6) float32, t_hit (N,) float32, tri_ids (N,) uint32 -> normal (N, 3) float32 (0 on misses),
    ids (N,) int32, hit_index (M,) int64, pos (M, 3) float32, nrm (M, 3) float32, prim (M,) int64,
    slot (M * L,) int64 row of each (hit, light) pair in ``shadow`` (S, 6) float32 rays [origin, to-light]
    to test with tnear = 0, tfar = 1; pairs that face away from their light (n . l <= 0, so the visibility
    is multiplied by a zero Lambert term) get no ray and slot SLOT_DARK.

    ``shadow_mode`` SHADOWS_OFF lights every facing pair without a ray (slot SLOT_LIT); SHADOWS_CULLED
    does so only for segments that :func:`~sana_world.worlds.collision.segment_free` proves clear of every
    triangle (tables ``cull_*`` and ``face_out`` / ``face_in`` of a SegmentCull): the primitive of a hit
    on a supporting flat face is skipped when the whole segment stays CULL_LIFT above that face. Such a
    segment has no hit for any any-hit query, so the image is the one SHADOWS_ALL gives.
    """
    n = t_hit.shape[0]
    n_lights = light_pos.shape[0]
    normal = np.zeros((n, 3), dtype=np.float32)
    ids = np.full(n, id_miss, dtype=np.int32)
    m = 0
    for i in range(n):
        if np.isfinite(t_hit[i]):
            m += 1
    hit_index = np.empty(m, dtype=np.int64)
    pos = np.empty((m, 3), dtype=np.float32)
    nrm = np.empty((m, 3), dtype=np.float32)
    prim = np.empty(m, dtype=np.int64)
    own_skip = np.full(m, -1, dtype=np.int64)  # primitive the hit's shadow segments may ignore, see below
    shadow = np.empty((m * n_lights if shadow_mode != SHADOWS_OFF else 0, 6), dtype=np.float32)
    slot = np.full(m * n_lights, SLOT_DARK, dtype=np.int64)
    j = 0
    for i in range(n):
        t = t_hit[i]
        if not np.isfinite(t):
            continue
        tri = np.int64(tri_ids[i])
        pi = tri_prim[tri]
        # 1. world position in float64, as the reference does it
        td = np.float64(t)
        dx, dy, dz = np.float64(rays[i, 3]), np.float64(rays[i, 4]), np.float64(rays[i, 5])
        px = np.float64(rays[i, 0]) + td * dx
        py = np.float64(rays[i, 1]) + td * dy
        pz = np.float64(rays[i, 2]) + td * dz
        # 2. analytic normal (mesh.analytic_normals), normalised, turned towards the camera
        code = tri_surface[tri]
        if code == _FLAT:
            nx, ny, nz = face_normals[tri, 0], face_normals[tri, 1], face_normals[tri, 2]
        else:
            c, s = cos_yaw[pi], sin_yaw[pi]
            ex, ey, ez = px - center[pi, 0], py - center[pi, 1], pz - center[pi, 2]
            qx, qy, qz = c * ex - s * ez, ey, s * ex + c * ez
            sx, sy, sz = size[pi, 0], size[pi, 1], size[pi, 2]
            if code == _CONE:
                a, b = qx / sx, qz / sz
                rho = max(math.sqrt(a * a + b * b), 1e-9)
                lx, ly, lz = qx / (sx * sx * rho), -0.5 / sy, qz / (sz * sz * rho)
            else:
                lx, ly, lz = qx / (sx * sx), qy / (sy * sy), qz / (sz * sz)
                if code == _CYL:
                    ly = 0.0
            nx, ny, nz = c * lx + s * lz, ly, -s * lx + c * lz
        norm = max(math.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
        nx, ny, nz = nx / norm, ny / norm, nz / norm
        flipped = nx * dx + ny * dy + nz * dz > 0.0
        if flipped:
            nx, ny, nz = -nx, -ny, -nz
        # 3. float32 outputs
        p32x, p32y, p32z = np.float32(px), np.float32(py), np.float32(pz)
        n32x, n32y, n32z = np.float32(nx), np.float32(ny), np.float32(nz)
        normal[i, 0], normal[i, 1], normal[i, 2] = n32x, n32y, n32z
        ids[i] = tri_object[tri]
        hit_index[j] = i
        pos[j, 0], pos[j, 1], pos[j, 2] = p32x, p32y, p32z
        nrm[j, 0], nrm[j, 1], nrm[j, 2] = n32x, n32y, n32z
        prim[j] = pi
        if shadow_mode == SHADOWS_CULLED and code == _FLAT and (face_in[tri] if flipped else face_out[tri]):
            own_skip[j] = pi  # the whole primitive lies behind this face's plane (normal side)
        j += 1
    # 4. shadow rays (shading.shadow_rays in float32): origin lifted off the surface, end at the light; in
    #    a loop of their own so that the divisions of independent pixels overlap in the pipeline
    r = 0
    for j in range(m):
        p32x, p32y, p32z = pos[j, 0], pos[j, 1], pos[j, 2]
        n32x, n32y, n32z = nrm[j, 0], nrm[j, 1], nrm[j, 2]
        ox, oy, oz = p32x + _OFFSET32 * n32x, p32y + _OFFSET32 * n32y, p32z + _OFFSET32 * n32z
        for li in range(n_lights):
            lx, ly, lz = light_pos[li, 0] - p32x, light_pos[li, 1] - p32y, light_pos[li, 2] - p32z
            lift_l = lx * n32x + ly * n32y + lz * n32z
            if not lift_l > _0:  # the same n . l as shade_kernel
                continue
            if shadow_mode == SHADOWS_OFF:
                slot[j * n_lights + li] = SLOT_LIT
                continue
            if shadow_mode == SHADOWS_CULLED:
                # the own primitive is ignored when the segment stays CULL_LIFT above its supporting face
                # at both ends (float32 heights: their rounding, < 1e-6 m, is far below the lift)
                lift_o = (ox - p32x) * n32x + (oy - p32y) * n32y + (oz - p32z) * n32z
                skip = own_skip[j] if min(lift_o, lift_l) >= _CULL_LIFT32 else -1
                if segment_free(np.float64(ox), np.float64(oy), np.float64(oz), li, skip, cull_light,
                                cull_grid, cull_start, cull_prims, cull_c, cull_e):
                    slot[j * n_lights + li] = SLOT_LIT
                    continue
            vx, vy, vz = light_pos[li, 0] - ox, light_pos[li, 1] - oy, light_pos[li, 2] - oz
            dist = np.sqrt(vx * vx + vy * vy + vz * vz)
            dd = max(dist, _TINY32)
            shadow[r, 0], shadow[r, 1], shadow[r, 2] = ox, oy, oz
            shadow[r, 3], shadow[r, 4], shadow[r, 5] = vx / dd * dist, vy / dd * dist, vz / dd * dist
            slot[j * n_lights + li] = r
            r += 1
    return normal, ids, hit_index, pos, nrm, prim, slot, shadow[:r]


# ---------------------------------------------------------------------------------------------------------
# Kernel 2: albedo, lighting, tone map, quantisation
# ---------------------------------------------------------------------------------------------------------

_289, _34, _INV288 = _F(289.0), _F(34.0), _F(1.0 / 288.0)
_THIRD = _F(1.0 / 3.0)
_TWO_PI, _PI = _F(2.0 * math.pi), _F(math.pi)
_PLAIN = TEXTURES["plain"]
_CHECKER, _STRIPES, _BRICK, _WOOD = (TEXTURES[n] for n in ("checker", "stripes", "brick", "wood"))
_TILES, _DOTS, _MARBLE = (TEXTURES[n] for n in ("tiles", "dots", "marble"))


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _fma(a, b, c):  # pragma: no cover - compiled
    """float32 fused multiply-add a * b + c (the float64 product of two float32 values is exact)."""
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _lerp(a, b, w):  # pragma: no cover - compiled
    """torch.lerp on float32 as ATen's SIMD kernel computes it (fused multiply-adds)."""
    if abs(w) < _HALF:
        return _fma(w, b - a, a)
    return _fma(w - _1, b - a, b)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _lerp_scalar(a, b, w):  # pragma: no cover - compiled
    """torch.lerp on float32 as ATen's scalar (non-SIMD) loop computes it."""
    if abs(w) < _HALF:
        return a + w * (b - a)
    return b - (b - a) * (_1 - w)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _mod289(x):  # pragma: no cover - compiled
    return x - _289 * np.floor(x / _289)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _perm(x):  # pragma: no cover - compiled
    return _mod289((_34 * x + _1) * x)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _hash(i, j):  # pragma: no cover - compiled
    return _perm(_perm(_mod289(i)) + _mod289(j)) * _INV288


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _value_noise(u, v):  # pragma: no cover - compiled
    iu, iv = np.floor(u), np.floor(v)
    su, sv = u - iu, v - iv
    su, sv = su * su * (_3 - _2 * su), sv * sv * (_3 - _2 * sv)
    pu0, pu1 = _perm(_mod289(iu)), _perm(_mod289(iu + _1))
    jv0, jv1 = _mod289(iv), _mod289(iv + _1)
    a, b = _perm(pu0 + jv0), _perm(pu1 + jv0)
    c, d = _perm(pu0 + jv1), _perm(pu1 + jv1)
    return _lerp(_lerp(a, b, su), _lerp(c, d, su), sv) * _INV288


@njit(cache=True, fastmath=False, error_model="numpy")
def _pattern(code, u, v):  # pragma: no cover - compiled
    """(mix factor m, brightness k) of texture ``code`` at pattern coordinates (u, v); see albedo_from.

    Each branch takes only the floors it needs (the same values the reference computes for all codes).
    """
    m, k = _0, _1
    if code == _CHECKER:
        iu, iv = np.floor(u), np.floor(v)
        m = (iu + iv) - _2 * np.floor(_HALF * (iu + iv))
    elif code == _STRIPES:
        m = _1 if (u - np.floor(u)) < _HALF else _0
    elif code == _BRICK:
        row = np.floor(_2 * v)
        bu = u + _HALF * (row - _2 * np.floor(_HALF * row))
        bfu, bfv = bu - np.floor(bu), _2 * v - row
        if bfu < _F(0.035) or bfv < _F(0.07):
            m = _1
        else:
            k = _F(0.82) + _F(0.18) * _hash(np.floor(bu), row)
    elif code == _WOOD:
        iu = np.floor(u)
        fu = u - iu
        wobble = _F(1.2) * _value_noise(_F(1.5) * u, _F(0.35) * v + _F(7.0) * iu)
        g = _HALF + _HALF * np.sin(_TWO_PI * (_F(5.0) * fu + wobble))
        m = _F(0.55) * g * g * g
        seam = _1 - _F(0.45) * (_1 if fu < _F(0.02) else _0)
        k = (_F(0.88) + _F(0.12) * _hash(iu, np.floor(v * _THIRD))) * seam
    elif code == _TILES:
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = u - iu, v - iv
        if fu < _F(0.045) or fv < _F(0.045):
            m = _1
        else:
            k = _F(0.93) + _F(0.07) * _hash(iu + _F(101.0), iv + _F(57.0))
    elif code == _DOTS:
        du, dv = (u - np.floor(u)) - _HALF, (v - np.floor(v)) - _HALF
        m = _1 if (du * du + dv * dv) < _F(0.09) else _0
    elif code == _MARBLE:
        n = (_F(0.65) * _value_noise(_F(0.9) * u, _F(0.9) * v)
             + _F(0.35) * _value_noise(_F(2.1) * u + _F(17.0), _F(2.1) * v + _F(5.0)))
        vein = abs(np.sin(_PI * (_F(0.8) * u + _F(0.6) * v) + _F(6.0) * n))
        x2 = (_1 - vein) * (_1 - vein)
        m = x2 * x2 * x2
        k = _F(0.92) + _F(0.08) * n
    return m, k


@njit(cache=True, fastmath=False, error_model="numpy")
def shade_kernel(hit_index, pos, nrm, prim, slot, visible, rgb1, rgb2, texture, inv_scale, light_pos,
                 light_rgb, ambient, exposure, falloff, levels, coarse, miss_u8,
                 n_pixels):  # pragma: no cover - compiled
    """Display rgb (n_pixels, 3) uint8 of hits (M,) at ``pos``/``nrm`` (M, 3) float32; ``visible`` (S,)
    bool (1 = lit) of the shadow rays ``slot`` (M * L,) from :func:`surface_kernel`; misses get ``miss_u8``.

    ``levels`` (255,) float32 from :func:`quantisation_levels` and ``coarse`` (C,) uint8, the number of
    levels <= the float whose bits are ``index << COARSE_SHIFT``, replace the per-channel ``pow``.
    """
    out = np.empty((n_pixels, 3), dtype=np.uint8)
    for i in range(n_pixels):
        out[i, 0], out[i, 1], out[i, 2] = miss_u8[0], miss_u8[1], miss_u8[2]
    n_lights = light_pos.shape[0]
    n_hits = hit_index.shape[0]
    # 1. Lambert irradiance, summed over the lights in order, in its own short loop (light-major, so
    #    that independent pixels overlap in the pipeline). A pair facing away (SLOT_DARK: n . l <= 0, so
    #    the Lambert term is 0) or whose ray is occluded adds exactly 0 and is skipped (adding +0 leaves
    #    every sum, hence every output byte, unchanged); SLOT_LIT pairs are visible without a ray.
    irr = np.zeros((n_hits, 3), dtype=np.float32)
    for li in range(n_lights):
        qx, qy, qz = light_pos[li, 0], light_pos[li, 1], light_pos[li, 2]
        cr, cg, cb = light_rgb[li, 0], light_rgb[li, 1], light_rgb[li, 2]
        for j in range(n_hits):
            s = slot[j * n_lights + li]
            if s == SLOT_DARK or (s >= 0 and not visible[s]):
                continue
            lx, ly, lz = qx - pos[j, 0], qy - pos[j, 1], qz - pos[j, 2]
            d2 = lx * lx + ly * ly + lz * lz
            ndotl = lx * nrm[j, 0] + ly * nrm[j, 1] + lz * nrm[j, 2]
            lam = max(ndotl, _0) * (_1 / np.sqrt(max(d2, _TINY32)))
            w = lam / (_1 + falloff * d2)  # lam * 1 (visible) is lam
            irr[j, 0] += w * cr
            irr[j, 1] += w * cg
            irr[j, 2] += w * cb
    fbuf = np.empty(1, dtype=np.float32)
    ubuf = fbuf.view(np.uint32)
    n_levels = levels.shape[0]
    for j in range(n_hits):
        p = prim[j]
        px, py, pz = pos[j, 0], pos[j, 1], pos[j, 2]
        nx, ny, nz = nrm[j, 0], nrm[j, 1], nrm[j, 2]
        # 2. texture coordinates on the plane orthogonal to the dominant normal axis
        ax, ay, az = abs(nx), abs(ny), abs(nz)
        x_dom = ax >= ay and ax >= az
        y_dom = (not x_dom) and ay >= az
        inv = inv_scale[p]
        u = (pz if x_dom else px) * inv
        v = (pz if y_dom else py) * inv
        code = texture[p]
        m, k = (_0, _1) if code == _PLAIN else _pattern(code, u, v)  # plain: no pattern
        # 3. tone map and quantise
        i = hit_index[j]
        for c in range(3):
            base = _lerp_scalar(rgb1[p, c], rgb2[p, c], m) * k
            x = min(max(base * (ambient + irr[j, c]) * exposure, _0), _1)
            q = 0
            if x > _0:  # quantise(x) = number of levels <= x: table look-up, then at most a step or two
                fbuf[0] = x
                q = np.int64(coarse[ubuf[0] >> COARSE_SHIFT])
                # a bucket holds at most one level for the default gamma: one branch-free step, then the
                # (practically never taken) loop for the general case
                lq = levels[q] if q < n_levels else _2  # x <= 1 < 2
                q += np.int64(lq <= x)
                while q < n_levels and levels[q] <= x:
                    q += 1
            out[i, c] = np.uint8(q)
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def quantise(x, inv_gamma):  # pragma: no cover - compiled
    """The reference's uint8 of clamped linear ``x`` (float32): round(255 * x ** (1 / gamma))."""
    y = min(max(x ** inv_gamma, _0), _1)
    return np.int64(np.rint(y * _F(255.0)))


@njit(cache=True, fastmath=False, error_model="numpy")
def quantisation_levels(inv_gamma):  # pragma: no cover - compiled
    """(255,) float32: entry k - 1 is the smallest x in [0, 1] with ``quantise(x) >= k``.

    ``quantise`` is monotone (powf, the product and rint are), so counting the levels <= x gives it
    exactly without a ``pow`` per channel.
    """
    bits = np.zeros(1, dtype=np.uint32)
    as_float = bits.view(np.float32)
    levels = np.empty(255, dtype=np.float32)
    for k in range(1, 256):
        lo, hi = np.uint32(0), np.uint32(0x3F800000)  # bit patterns of 0.0 and 1.0
        while lo < hi:
            mid = np.uint32(lo + (hi - lo) // np.uint32(2))
            bits[0] = mid
            if quantise(as_float[0], inv_gamma) >= k:
                hi = mid
            else:
                lo = np.uint32(mid + np.uint32(1))
        bits[0] = lo
        levels[k - 1] = as_float[0]
    return levels


COARSE_SHIFT = 14  # float32 bit patterns per coarse quantisation bucket: 2^14 (0.2 % of x, < 1 level)


@dataclass(frozen=True)
class ShadeConstants:
    """:class:`ShadingConfig` in the form :func:`shade_kernel` takes it."""

    exposure: np.float32
    falloff: np.float32
    levels: np.ndarray  # (255,) float32, see quantisation_levels
    coarse: np.ndarray  # (C,) uint8 number of levels <= the float with bits (index << COARSE_SHIFT)
    miss: np.ndarray  # (3,) uint8 colour of rays that hit nothing


def shade_constants(config: ShadingConfig = DEFAULT_SHADING) -> ShadeConstants:
    """The :class:`ShadeConstants` of ``config`` (compiles the kernels on the first call)."""
    miss = np.rint(np.clip(np.asarray(MISS_RGB, dtype=np.float32), 0, 1) * np.float32(255.0)).astype(np.uint8)
    levels = quantisation_levels(np.float32(1.0 / config.gamma))
    starts = (np.arange((0x3F800000 >> COARSE_SHIFT) + 1, dtype=np.uint32) << COARSE_SHIFT).view(np.float32)
    coarse = np.searchsorted(levels, starts, side="right").astype(np.uint8)  # levels <= bucket start
    return ShadeConstants(np.float32(config.exposure), np.float32(config.falloff), levels, coarse, miss)
