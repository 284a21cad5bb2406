"""Geometry of the torch ray caster: closed-form ray/primitive tests, hit normals and the pixel stages.

Each primitive group of :class:`~sana_world.render.torch_packing.PackedScenes` has its own test:
axis-aligned boxes (slab test), oriented boxes (slab test in the local yaw frame), ellipsoids and spheres
(unit-sphere transform), vertical capped cylinders and capped cones (both circular with radius
``size[0]``; their yaw does not matter).

Tests work on *bundles* of rays that share an origin: every ray of a camera starts at the camera, and
shadow rays are cast from each light towards the normal-offset surface point with t in (0, 1), so the
per (origin, primitive) terms are computed once and the per (ray, primitive) work is a few
multiply-adds. Nothing here syncs with the host or branches on data, so it runs under ``torch.compile``.
"""

from __future__ import annotations

import torch

from sana_world.render.base import ID_MISS
from sana_world.render.shading import albedo_from, shade_lit
from sana_world.render.torch_packing import (COL_CENTER, COL_CS, COL_HALF, COL_OBJ, COL_RGB, COL_RGB2,
                                             COL_SCALE, COL_TEX, GROUPS, SURF_COLUMNS, PackedScenes)

Tensor = torch.Tensor

EPS_T = 1e-4  # primary hits closer than this to the camera are ignored
EPS_SHADOW = 1e-6  # shadow segments from the light start at this fraction of the way
INF = float("inf")

# ---------------------------------------------------------------------------------------------------------
# Ray / primitive tests. Bundles of rays share an origin ``o`` (..., 3); ``d`` (..., N, 3) are the ray
# directions, group parameters are (..., P, k). Each test returns (near, far, ok) of shape (..., N, P):
# the ray is inside the solid for near <= t <= far where ok.
# ---------------------------------------------------------------------------------------------------------


def _slab(lo: list[Tensor], hi: list[Tensor], inv: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Slab test: per-axis plane offsets ``lo``/``hi`` (relative to the origin) times 1 / direction."""
    near = far = None
    for a in range(3):  # 1. entry / exit parameter of each axis' slab, 2. intersect the intervals
        t0, t1 = lo[a] * inv[a], hi[a] * inv[a]
        n_a, f_a = torch.minimum(t0, t1), torch.maximum(t0, t1)
        near = n_a if near is None else torch.maximum(near, n_a)
        far = f_a if far is None else torch.minimum(far, f_a)
    assert near is not None and far is not None
    return near, far


def _hit_aabb(o: Tensor, inv: Tensor, lo: Tensor, hi: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    lo_rel = (lo - o.unsqueeze(-2)).unsqueeze(-3)  # (..., 1, P, 3)
    hi_rel = (hi - o.unsqueeze(-2)).unsqueeze(-3)
    near, far = _slab([lo_rel[..., a] for a in range(3)], [hi_rel[..., a] for a in range(3)],
                      [inv[..., a : a + 1] for a in range(3)])
    return near, far, (near <= far) & valid.unsqueeze(-2)


def _hit_obox(o: Tensor, d: Tensor, inv: Tensor, center: Tensor, half: Tensor, cs: Tensor,
              valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    c, s = cs[..., 0], cs[..., 1]  # (..., P)
    rel = o.unsqueeze(-2) - center  # (..., P, 3) origin in the box frame, before rotation
    ox, oy, oz = c * rel[..., 0] - s * rel[..., 2], rel[..., 1], s * rel[..., 0] + c * rel[..., 2]
    lo = [(-half[..., a] - o_a).unsqueeze(-2) for a, o_a in enumerate((ox, oy, oz))]  # (..., 1, P)
    hi = [(half[..., a] - o_a).unsqueeze(-2) for a, o_a in enumerate((ox, oy, oz))]
    c, s = c.unsqueeze(-2), s.unsqueeze(-2)  # (..., 1, P)
    dx, dz = d[..., 0:1], d[..., 2:3]  # (..., N, 1)
    inv_l = [1.0 / (c * dx - s * dz), inv[..., 1:2], 1.0 / (s * dx + c * dz)]
    near, far = _slab(lo, hi, inv_l)
    return near, far, (near <= far) & valid.unsqueeze(-2)


def _hit_ellipsoid(o: Tensor, d: Tensor, center: Tensor, inv_r: Tensor, cs: Tensor,
                   valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    c, s = cs[..., 0], cs[..., 1]
    rel = o.unsqueeze(-2) - center  # (..., P, 3)
    ox = (c * rel[..., 0] - s * rel[..., 2]) * inv_r[..., 0]  # origin in unit-sphere space
    oy = rel[..., 1] * inv_r[..., 1]
    oz = (s * rel[..., 0] + c * rel[..., 2]) * inv_r[..., 2]
    cc = (ox * ox + oy * oy + oz * oz - 1.0).unsqueeze(-2)  # (..., 1, P)
    m00, m02 = (c * inv_r[..., 0]).unsqueeze(-2), (-s * inv_r[..., 0]).unsqueeze(-2)
    m20, m22 = (s * inv_r[..., 2]).unsqueeze(-2), (c * inv_r[..., 2]).unsqueeze(-2)
    dx, dy, dz = d[..., 0:1], d[..., 1:2], d[..., 2:3]  # (..., N, 1)
    ux, uy, uz = m00 * dx + m02 * dz, dy * inv_r[..., 1].unsqueeze(-2), m20 * dx + m22 * dz  # (..., N, P)
    a = ux * ux + uy * uy + uz * uz
    b = ux * ox.unsqueeze(-2) + uy * oy.unsqueeze(-2) + uz * oz.unsqueeze(-2)
    disc = b * b - a * cc
    sq = torch.sqrt(disc.clamp_min(0.0))
    inv_a = 1.0 / a
    return (-b - sq) * inv_a, (-b + sq) * inv_a, (disc >= 0.0) & valid.unsqueeze(-2)


def _hit_cylinder(o: Tensor, d: Tensor, inv: Tensor, center: Tensor, size: Tensor,
                  valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    rel = o.unsqueeze(-2) - center  # (..., P, 3)
    r, hh = size[..., 0], size[..., 1]
    cc = (rel[..., 0] ** 2 + rel[..., 2] ** 2 - r * r).unsqueeze(-2)  # (..., 1, P)
    dx, dz = d[..., 0:1], d[..., 2:3]
    a = (dx * dx + dz * dz).clamp_min(1e-12)  # (..., N, 1)
    inv_a = 1.0 / a
    b = rel[..., 0].unsqueeze(-2) * dx + rel[..., 2].unsqueeze(-2) * dz  # (..., N, P)
    disc = b * b - a * cc
    sq = torch.sqrt(disc.clamp_min(0.0))
    oy = rel[..., 1]
    near_y, far_y = _slab_1d((-hh - oy).unsqueeze(-2), (hh - oy).unsqueeze(-2), inv[..., 1:2])
    near = torch.maximum((-b - sq) * inv_a, near_y)
    far = torch.minimum((-b + sq) * inv_a, far_y)
    return near, far, (disc >= 0.0) & (near <= far) & valid.unsqueeze(-2)


def _hit_cone(o: Tensor, d: Tensor, inv: Tensor, center: Tensor, size: Tensor,
              valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    rel = o.unsqueeze(-2) - center  # (..., P, 3)
    r, hh = size[..., 0], size[..., 1]
    k2 = (r / (2.0 * hh)) ** 2  # radius at height y is k * (y - apex_y)
    Y = rel[..., 1] + hh  # origin height below the apex
    cc = (rel[..., 0] ** 2 + rel[..., 2] ** 2 - k2 * Y * Y).unsqueeze(-2)  # (..., 1, P)
    dx, dy, dz = d[..., 0:1], d[..., 1:2], d[..., 2:3]  # (..., N, 1)
    k2u = k2.unsqueeze(-2)
    a = (dx * dx + dz * dz) - k2u * (dy * dy)  # (..., N, P)
    b = rel[..., 0].unsqueeze(-2) * dx + rel[..., 2].unsqueeze(-2) * dz - (k2 * Y).unsqueeze(-2) * dy
    disc = b * b - a * cc
    sq = torch.sqrt(disc.clamp_min(0.0))
    r1, r2 = (-b - sq) / a, (-b + sq) / a
    lo, hi = torch.minimum(r1, r2), torch.maximum(r1, r2)
    # 1. the interval inside the lower nappe: [lo, hi] when a > 0; a half line when the ray crosses both
    pos, has, down = a > 0.0, disc >= 0.0, dy > 0.0
    c_near = torch.where(pos, lo, torch.where(down & has, hi, -INF))
    c_far = torch.where(pos, hi, torch.where(down | ~has, INF, lo))
    # 2. clip by the slab between apex and base
    oy = rel[..., 1]
    near_y, far_y = _slab_1d((-hh - oy).unsqueeze(-2), (hh - oy).unsqueeze(-2), inv[..., 1:2])
    near, far = torch.maximum(c_near, near_y), torch.minimum(c_far, far_y)
    return near, far, (has | ~pos) & (near <= far) & valid.unsqueeze(-2)


def _slab_1d(lo: Tensor, hi: Tensor, inv: Tensor) -> tuple[Tensor, Tensor]:
    t0, t1 = lo * inv, hi * inv
    return torch.minimum(t0, t1), torch.maximum(t0, t1)


def group_test(group: str, p: PackedScenes, sel: tuple, o: Tensor, d: Tensor, inv: Tensor,
                slots: slice = slice(None), shadow: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(near, far, ok, index map) of one group's ``slots`` for bundles ``o`` (..., 3), ``d`` (..., N, 3).

    ``sel`` indexes the packed per-scene tensors so that they broadcast against the bundle dims;
    ``shadow`` leaves out the slabs that cast no shadow.
    """
    def g(name: str) -> Tensor:
        return getattr(p, name)[:, slots][sel]

    if group == "aabb":
        valid = g("aabb_valid") & g("aabb_caster") if shadow else g("aabb_valid")
        return (*_hit_aabb(o, inv, g("aabb_lo"), g("aabb_hi"), valid), g("aabb_index"))
    if group == "obox":
        return (*_hit_obox(o, d, inv, g("obox_center"), g("obox_half"), g("obox_cs"), g("obox_valid")),
                g("obox_index"))
    if group == "ellipsoid":
        return (*_hit_ellipsoid(o, d, g("ell_center"), g("ell_inv_radii"), g("ell_cs"), g("ell_valid")),
                g("ell_index"))
    if group == "cylinder":
        return (*_hit_cylinder(o, d, inv, g("cyl_center"), g("cyl_size"), g("cyl_valid")), g("cyl_index"))
    return (*_hit_cone(o, d, inv, g("cone_center"), g("cone_size"), g("cone_valid")), g("cone_index"))


_VALID = {"aabb": "aabb_valid", "obox": "obox_valid", "ellipsoid": "ell_valid", "cylinder": "cyl_valid",
          "cone": "cone_valid"}


def _slot_chunks(p: PackedScenes, group: str, shadow: bool = False) -> list[slice]:
    """The group's slots in one piece, or (``split_pow2``) in power-of-two pieces, which compile to
    reductions without masked lanes; shadow rays skip the trailing aabb slots that cast no shadow."""
    n = getattr(p, _VALID[group]).shape[1] if p.group_sizes[GROUPS.index(group)] else 0
    if shadow and group == "aabb":
        n = p.aabb_casters
    if not p.split_pow2:
        return [slice(0, n)] if n else []
    out, start = [], 0
    for bit in reversed(range(n.bit_length())):
        if n & (1 << bit):
            out.append(slice(start, start + (1 << bit)))
            start += 1 << bit
    return out


def nearest_hit(p: PackedScenes, sel: tuple, o: Tensor, d: Tensor,
                inv: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Nearest hit parameter t (..., N) (inf on miss) and the hit primitive's index in its scene.

    ``inv`` = 1 / d when the caller has it (under ``torch.compile`` a precomputed one saves a division
    per ray and primitive).
    """
    inv = 1.0 / d if inv is None else inv
    best_t: Tensor | None = None
    best_i: Tensor | None = None
    for group in GROUPS:  # 1. nearest hit inside each group piece, 2. keep the nearest over pieces
        for slots in _slot_chunks(p, group):
            near, far, ok, index = group_test(group, p, sel, o, d, inv, slots)
            t = torch.where(near > EPS_T, near, far)
            t = torch.where(ok & (t > EPS_T), t, INF)
            t_g, arg = t.min(dim=-1)  # (..., N)
            full_index = index.unsqueeze(-2).expand(*arg.shape, index.shape[-1])
            i_g = torch.gather(full_index, -1, arg.unsqueeze(-1))[..., 0]
            if best_t is None or best_i is None:
                best_t, best_i = t_g, i_g
            else:
                closer = t_g < best_t
                best_t, best_i = torch.where(closer, t_g, best_t), torch.where(closer, i_g, best_i)
    if best_t is None or best_i is None:  # a scene without primitives
        best_t = torch.full(d.shape[:-1], INF, dtype=d.dtype, device=d.device)
        best_i = torch.zeros(d.shape[:-1], dtype=torch.int64, device=d.device)
    return best_t, best_i


def any_hit(p: PackedScenes, sel: tuple, o: Tensor, d: Tensor, inv: Tensor | None = None) -> Tensor:
    """Whether each segment o + t d, t in (0, 1), touches any primitive: bool (..., N)."""
    inv = 1.0 / d if inv is None else inv
    blocked: Tensor | None = None
    for group in GROUPS:
        for slots in _slot_chunks(p, group, shadow=True):
            near, far, ok, _ = group_test(group, p, sel, o, d, inv, slots, shadow=True)
            b_g = (ok & (far > EPS_SHADOW) & (near < 1.0)).any(dim=-1)
            blocked = b_g if blocked is None else blocked | b_g
    if blocked is None:  # nothing can cast a shadow
        blocked = torch.zeros(d.shape[:-1], dtype=torch.bool, device=d.device)
    return blocked


# ---------------------------------------------------------------------------------------------------------
# Normals and the per-chunk renderer
# ---------------------------------------------------------------------------------------------------------


def surface_normals(cols: Tensor, pos: Tensor, d: Tensor) -> Tensor:
    """Unit world normals (..., 3) facing against ``d`` at hit points ``pos`` (..., 3); ``cols``
    (SURF_COLUMNS, ...) are the hit primitives' rows of ``PackedScenes.surf``.

    Each shape's local normal is blended in with its 0/1 shape weight (no ``where``: that is slow on CPU).
    """
    is_box, is_ell, is_cyl, is_cone = cols[0], cols[1], cols[2], cols[3]
    cy, sy = cols[COL_CS], cols[COL_CS + 1]
    hx, hy, hz = cols[COL_HALF], cols[COL_HALF + 1], cols[COL_HALF + 2]
    px = pos[..., 0] - cols[COL_CENTER]
    qy = pos[..., 1] - cols[COL_CENTER + 1]
    pz = pos[..., 2] - cols[COL_CENTER + 2]
    qx, qz = cy * px - sy * pz, sy * px + cy * pz  # local frame
    f = pos.dtype
    # 1. box: the face whose slab the point is closest to; cylinder / cone: cap or side, whichever is closer
    ax, ay, az = qx.abs() / hx, qy.abs() / hy, qz.abs() / hz
    bx = (ax >= ay) & (ax >= az)
    by = ~bx & (ay >= az)
    bz = (~(bx | by)).to(f)
    rad = torch.sqrt(qx * qx + qz * qz)
    cyl_cap = ((hy - qy.abs()).abs() < (rad - hx).abs()).to(f)
    w = 0.5 * (qy / hy + 1.0)  # cone radius fraction: 0 at the apex, 1 at the base
    cone_cap = ((hy - qy).abs() < (rad - hx * w).abs()).to(f)
    inv_r2 = 1.0 / (hx * hx)
    # 2. local normal = (qx * sx, ny, qz * sz), per shape: box axis pick, ellipsoid gradient q / h^2,
    #    cylinder side (qx, 0, qz) or cap (0, qy, 0), cone side gradient or base cap (0, 1, 0)
    side_k = is_cone * (1.0 - cone_cap)
    sx = is_box * bx.to(f) + is_ell * inv_r2 + is_cyl * (1.0 - cyl_cap) + side_k * (2.0 * inv_r2)
    sz = is_box * bz + is_ell / (hz * hz) + is_cyl * (1.0 - cyl_cap) + side_k * (2.0 * inv_r2)
    ny = qy * (is_box * by.to(f) + is_ell / (hy * hy) + is_cyl * cyl_cap)
    ny = ny + is_cone * cone_cap - side_k * w / hy
    lx, lz = qx * sx, qz * sz
    nx, nz = cy * lx + sy * lz, -sy * lx + cy * lz
    inv_len = torch.rsqrt((nx * nx + ny * ny + nz * nz).clamp_min(1e-20))
    # 3. turn towards the camera
    flip = 1.0 - 2.0 * ((nx * d[..., 0] + ny * d[..., 1] + nz * d[..., 2]) > 0.0).to(f)
    s = inv_len * flip
    return torch.stack([nx * s, ny * s, nz * s], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Pixel stages shared by the brute-force and the culled renderer
# ---------------------------------------------------------------------------------------------------------


def camera_rays_uv(c2w: Tensor, K: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """Origins (b, 3) and directions (b, ..., 3) with camera-z = 1 through pixel positions ``uv`` (..., 2)."""
    view = (-1,) + (1,) * (uv.ndim - 1)
    x = (uv[..., 0] - K[:, 0, 2].view(view)) / K[:, 0, 0].view(view)  # (b, ...)
    y = (uv[..., 1] - K[:, 1, 2].view(view)) / K[:, 1, 1].view(view)
    col = (-1,) + (1,) * (uv.ndim - 1) + (3,)
    R = c2w[:, :3, :3]
    d = x.unsqueeze(-1) * R[:, :, 0].view(col) + y.unsqueeze(-1) * R[:, :, 1].view(col) + R[:, :, 2].view(col)
    return c2w[:, :3, 3], d


def hit_surface(p: PackedScenes, scene_index: Tensor, o: Tensor, d: Tensor, t: Tensor, prim: Tensor,
                only_used_textures: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """From nearest hits t (inf on miss), prim (b, n) of rays o (b, 3), d (b, n, 3): hit mask, position,
    normal, hit primitives' ``surf`` rows (SURF_COLUMNS, b, n) and surface colour (b, n, 3).

    ``only_used_textures`` skips the patterns no scene of ``p`` uses (a Python-level choice per packed
    batch: good eagerly, a recompile per texture set under ``torch.compile``).
    """
    hit = t < INF
    pos = o.unsqueeze(1) + torch.nan_to_num(t, posinf=0.0).unsqueeze(-1) * d  # (b, n, 3); misses at o
    fi = scene_index.unsqueeze(1) * p.prims_max + prim.clamp(0, p.prims_max - 1)  # (b, n)
    cols = p.surf.index_select(0, fi.reshape(-1)).T.contiguous().view(SURF_COLUMNS, *fi.shape)
    n = surface_normals(cols, pos, d)
    codes = p.texture_codes if only_used_textures else None
    c1, c2 = cols[COL_RGB : COL_RGB + 3].movedim(0, -1), cols[COL_RGB2 : COL_RGB2 + 3].movedim(0, -1)
    base = albedo_from(pos, n, c1, c2, cols[COL_TEX], cols[COL_SCALE], codes)
    return hit, pos, n, cols, base


def finish_pixels(p: PackedScenes, scene_index: Tensor, t: Tensor, hit: Tensor, pos: Tensor, n: Tensor,
                  cols: Tensor, base: Tensor, vis: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Shade and assemble rgb (b, n, 3) uint8, depth (b, n), normal (b, n, 3), ids (b, n) int32.

    ``t`` must be inf on misses; ``vis`` (b, n, L) is the light visibility (None: no shadows).
    """
    light_pos, light_rgb = p.table.light_pos[scene_index], p.table.light_rgb[scene_index]  # (b, L, 3)
    if vis is None:
        vis = torch.ones((*t.shape, light_pos.shape[1]), dtype=pos.dtype, device=pos.device)
    rgb = shade_lit(pos, n, base, hit, light_pos.unsqueeze(1), light_rgb.unsqueeze(1),
                    p.table.ambient[scene_index].unsqueeze(1), vis)  # (b, n, 3)
    rgb8 = (rgb * 255.0 + 0.5).to(torch.uint8)
    hit_f = hit.to(pos.dtype)
    ids = ((cols[COL_OBJ] - ID_MISS) * hit_f + ID_MISS).round().to(torch.int32)
    return rgb8, t, n * hit_f.unsqueeze(-1), ids
