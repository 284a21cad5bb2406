"""Geometry of the torch ray caster: packed scenes, closed-form ray/primitive tests and hit normals.

Primitives are split into five groups with their own test: axis-aligned boxes (walls, floors, ceilings
and boxes whose yaw is a multiple of 90 degrees), oriented boxes (slab test in the local yaw frame),
ellipsoids and spheres (unit-sphere transform), vertical capped cylinders and capped cones (both circular
with radius ``size[0]``; their yaw does not matter).

Tests work on *bundles* of rays that share an origin: every ray of a camera starts at the camera, and
shadow rays are cast from each light towards the normal-offset surface point with t in (0, 1), so the
per (origin, primitive) terms are computed once and the per (ray, primitive) work is a few
multiply-adds. Nothing here syncs with the host or branches on data, so it runs under ``torch.compile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sana_world.render.base import ID_MISS
from sana_world.render.shading import PrimitiveTable, albedo_from, primitive_table, shade_lit
from sana_world.worlds.palette import SHAPES
from sana_world.worlds.spec import SceneSpec

Tensor = torch.Tensor

EPS_T = 1e-4  # primary hits closer than this to the camera are ignored
EPS_SHADOW = 1e-6  # shadow segments from the light start at this fraction of the way
INF = float("inf")
GROUPS = ("aabb", "obox", "ellipsoid", "cylinder", "cone")

# ---------------------------------------------------------------------------------------------------------
# Packed scenes
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PackedScenes:
    """S scenes padded to common per-group sizes; ``*_valid`` marks real entries, ``*_index`` maps a
    group slot to its primitive's index in ``SceneSpec.primitives()``.

    ``table`` holds the shading fields of all scenes flattened to (S * prims_max, ...): primitive p of
    scene s sits at ``s * prims_max + p``; its light fields carry a scene axis: ``light_pos`` (S, L, 3),
    ``light_rgb`` (S, L, 3) (zero for padded lights), ``ambient`` (S,).
    """

    aabb_lo: Tensor  # (S, Pa, 3) box min corner
    aabb_hi: Tensor  # (S, Pa, 3)
    aabb_valid: Tensor  # (S, Pa) bool
    aabb_index: Tensor  # (S, Pa) int64
    obox_center: Tensor  # (S, Po, 3)
    obox_half: Tensor  # (S, Po, 3)
    obox_cs: Tensor  # (S, Po, 2) cos(yaw), sin(yaw)
    obox_valid: Tensor
    obox_index: Tensor
    ell_center: Tensor  # (S, Pe, 3)
    ell_inv_radii: Tensor  # (S, Pe, 3)
    ell_cs: Tensor  # (S, Pe, 2)
    ell_valid: Tensor
    ell_index: Tensor
    cyl_center: Tensor  # (S, Pc, 3)
    cyl_size: Tensor  # (S, Pc, 2) radius, half height
    cyl_valid: Tensor
    cyl_index: Tensor
    cone_center: Tensor  # (S, Pk, 3)
    cone_size: Tensor  # (S, Pk, 2) base radius, half height
    cone_valid: Tensor
    cone_index: Tensor
    prim_corners: Tensor  # (S, Pmax, 8, 3) world corners of each primitive's bounding box (for culling)
    prim_lo: Tensor  # (S, Pmax, 3) world axis-aligned bounds
    prim_hi: Tensor  # (S, Pmax, 3)
    prim_radius: Tensor  # (S, Pmax) bounding-sphere radius around table.center
    prim_valid: Tensor  # (S, Pmax) bool
    surf: Tensor  # (S * Pmax, SURF_COLUMNS) per-primitive values the pixel stages gather in one go
    table: PrimitiveTable
    prims_max: int
    num_scenes: int
    texture_codes: tuple[int, ...]  # texture codes used by any of the scenes

    @property
    def device(self) -> torch.device:
        return self.aabb_lo.device


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def pack_scenes(scenes: list[SceneSpec], device: torch.device | str = "cpu", pad_multiple: int = 1) -> PackedScenes:
    """Pad the primitives of ``scenes`` into per-group tensors on ``device``.

    ``pad_multiple`` rounds every padded size up (use e.g. 8 with ``torch.compile`` so that different
    scene batches share compiled shapes).
    """
    if not scenes:
        raise ValueError("pack_scenes: need at least one scene")
    tables = [primitive_table(s, "cpu") for s in scenes]
    S = len(scenes)
    groups: dict[str, list[list[int]]] = {g: [[] for _ in range(S)] for g in GROUPS}
    for s, tab in enumerate(tables):
        # 1. sort each scene's primitives into the five groups
        for p in range(tab.num_primitives):
            shape = int(tab.shape[p])
            if shape == SHAPES["box"]:
                yaw = float(tab.yaw[p])
                k = round(yaw / (math.pi / 2))
                groups["aabb" if abs(yaw - k * math.pi / 2) < 1e-6 else "obox"][s].append(p)
            elif shape in (SHAPES["sphere"], SHAPES["ellipsoid"]):
                groups["ellipsoid"][s].append(p)
            elif shape == SHAPES["cylinder"]:
                groups["cylinder"][s].append(p)
            elif shape == SHAPES["cone"]:
                groups["cone"][s].append(p)
            else:
                raise ValueError(f"pack_scenes: scene {s} primitive {p} has unknown shape code {shape}")
    sizes = {g: _round_up(max(len(lst) for lst in groups[g]), pad_multiple) for g in GROUPS}

    def gather(g: str, values: list[Tensor], fill: float) -> tuple[Tensor, Tensor, Tensor]:
        # 2. pad one group's per-primitive values (S, Pg, k) plus its valid mask and index map
        P = sizes[g]
        k = values[0].shape[-1]
        out = torch.full((S, P, k), fill, dtype=torch.float32)
        valid = torch.zeros((S, P), dtype=torch.bool)
        index = torch.zeros((S, P), dtype=torch.int64)
        for s in range(S):
            idx = groups[g][s]
            n = len(idx)
            if n:
                out[s, :n] = values[s][idx]
                valid[s, :n] = True
                index[s, :n] = torch.tensor(idx, dtype=torch.int64)
        return out, valid, index

    def cs(t: PrimitiveTable) -> Tensor:
        return torch.stack([torch.cos(t.yaw), torch.sin(t.yaw)], dim=-1)  # (P, 2)

    def aabb_half(t: PrimitiveTable) -> Tensor:
        odd = (torch.round(t.yaw / (math.pi / 2)).to(torch.int64) % 2) == 1
        h = t.size.clone()
        h[odd] = h[odd][:, [2, 1, 0]]
        return h

    aabb_lo, aabb_valid, aabb_index = gather("aabb", [t.center - aabb_half(t) for t in tables], 0.0)
    aabb_hi, _, _ = gather("aabb", [t.center + aabb_half(t) for t in tables], 0.0)
    obox_center, obox_valid, obox_index = gather("obox", [t.center for t in tables], 0.0)
    obox_half, _, _ = gather("obox", [t.size for t in tables], 1.0)
    obox_cs, _, _ = gather("obox", [cs(t) for t in tables], 0.0)
    ell_center, ell_valid, ell_index = gather("ellipsoid", [t.center for t in tables], 0.0)
    ell_inv, _, _ = gather("ellipsoid", [1.0 / t.size for t in tables], 1.0)
    ell_cs, _, _ = gather("ellipsoid", [cs(t) for t in tables], 0.0)
    cyl_center, cyl_valid, cyl_index = gather("cylinder", [t.center for t in tables], 0.0)
    cyl_size, _, _ = gather("cylinder", [t.size[:, :2] for t in tables], 1.0)
    cone_center, cone_valid, cone_index = gather("cone", [t.center for t in tables], 0.0)
    cone_size, _, _ = gather("cone", [t.size[:, :2] for t in tables], 1.0)

    # 3. the flattened shading table and padded lights
    pmax = max(t.num_primitives for t in tables)
    lmax = max(1, max(t.num_lights for t in tables))

    def flat(name: str, fill: float | int) -> Tensor:
        ref = getattr(tables[0], name)
        out = torch.full((S, pmax, *ref.shape[1:]), fill, dtype=ref.dtype)
        for s, t in enumerate(tables):
            out[s, : t.num_primitives] = getattr(t, name)
        return out.reshape(S * pmax, *ref.shape[1:])

    light_pos = torch.zeros((S, lmax, 3))
    light_rgb = torch.zeros((S, lmax, 3))
    for s, t in enumerate(tables):
        light_pos[s, : t.num_lights] = t.light_pos
        light_rgb[s, : t.num_lights] = t.light_rgb
    table = PrimitiveTable(
        rgb=flat("rgb", 0.0), rgb2=flat("rgb2", 0.0), texture=flat("texture", 0), scale=flat("scale", 1.0),
        object_id=flat("object_id", ID_MISS), shape=flat("shape", 0), center=flat("center", 0.0),
        size=flat("size", 1.0), yaw=flat("yaw", 0.0), light_pos=light_pos, light_rgb=light_rgb,
        ambient=torch.stack([t.ambient for t in tables]),
    )
    corners, lo, hi, radius, valid = _bounds(table, S, pmax, [t.num_primitives for t in tables])
    surf = _surface_table(table)
    d = torch.device(device)
    return PackedScenes(
        aabb_lo.to(d), aabb_hi.to(d), aabb_valid.to(d), aabb_index.to(d),
        obox_center.to(d), obox_half.to(d), obox_cs.to(d), obox_valid.to(d), obox_index.to(d),
        ell_center.to(d), ell_inv.to(d), ell_cs.to(d), ell_valid.to(d), ell_index.to(d),
        cyl_center.to(d), cyl_size.to(d), cyl_valid.to(d), cyl_index.to(d),
        cone_center.to(d), cone_size.to(d), cone_valid.to(d), cone_index.to(d),
        corners.to(d), lo.to(d), hi.to(d), radius.to(d), valid.to(d), surf.to(d), table.to(d), pmax, S,
        tuple(sorted({int(c) for t in tables for c in t.texture.tolist()})),
    )


def _pad(x: Tensor, shape: tuple[int, ...], value: float) -> Tensor:
    """``x`` grown to ``shape`` (same rank, no smaller), new entries = ``value``."""
    if tuple(x.shape) == shape:
        return x
    out = torch.full(shape, value, dtype=x.dtype, device=x.device)
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


def pad_packed(p: PackedScenes, multiple: int = 16, scene_multiple: int = 8) -> PackedScenes:
    """``p`` with every primitive-slot size (per group and ``prims_max``) rounded up to ``multiple``, the scene
    count to ``scene_multiple`` and at least 4 light slots: a few fixed shapes for ``torch.compile``."""
    S = _round_up(p.num_scenes, scene_multiple)
    P = _round_up(p.prims_max, multiple)
    kw: dict = {}
    for name in ("aabb", "obox", "ell", "cyl", "cone"):
        fields_ = [f for f in PackedScenes.__dataclass_fields__ if f.startswith(name + "_")]
        Pg = _round_up(getattr(p, name + "_valid").shape[1], multiple)
        for f in fields_:
            x = getattr(p, f)
            fill = 0 if x.dtype in (torch.bool, torch.int64) else 1.0
            kw[f] = _pad(x, (S, Pg, *x.shape[2:]), fill)
    for f in ("prim_corners", "prim_lo", "prim_hi", "prim_radius", "prim_valid"):
        x = getattr(p, f)
        kw[f] = _pad(x, (S, P, *x.shape[2:]), 0 if x.dtype == torch.bool else 1.0)

    def flat(x: Tensor, fill: float) -> Tensor:
        x = x.reshape(p.num_scenes, p.prims_max, *x.shape[1:])
        return _pad(x, (S, P, *x.shape[2:]), fill).reshape(S * P, *x.shape[2:])

    t = p.table
    L = max(4, t.light_pos.shape[1])
    table = PrimitiveTable(
        rgb=flat(t.rgb, 0.0), rgb2=flat(t.rgb2, 0.0), texture=flat(t.texture, 0), scale=flat(t.scale, 1.0),
        object_id=flat(t.object_id, ID_MISS), shape=flat(t.shape, 0), center=flat(t.center, 0.0),
        size=flat(t.size, 1.0), yaw=flat(t.yaw, 0.0), light_pos=_pad(t.light_pos, (S, L, 3), 0.0),
        light_rgb=_pad(t.light_rgb, (S, L, 3), 0.0), ambient=_pad(t.ambient, (S,), 0.0))
    return PackedScenes(**kw, surf=flat(p.surf, 1.0), table=table, prims_max=P, num_scenes=S,
                        texture_codes=p.texture_codes)


# columns of PackedScenes.surf
_C_SHAPE, _C_CENTER, _C_HALF, _C_CS, _C_RGB, _C_RGB2, _C_SCALE, _C_TEX, _C_OBJ = 0, 4, 7, 10, 12, 15, 18, 19, 20
SURF_COLUMNS = 21


def _surface_table(table: PrimitiveTable) -> Tensor:
    """(P, SURF_COLUMNS): shape one-hot (box, ellipsoid/sphere, cylinder, cone), centre, half sizes
    (circular shapes with z = radius), cos/sin yaw, rgb, rgb2, pattern scale, texture code, object id."""
    sh = table.shape
    onehot = torch.stack([sh == SHAPES["box"], (sh == SHAPES["sphere"]) | (sh == SHAPES["ellipsoid"]),
                          sh == SHAPES["cylinder"], sh == SHAPES["cone"]], dim=-1).float()
    half = table.size.clone()
    round_ = (sh == SHAPES["cylinder"]) | (sh == SHAPES["cone"])
    half[round_, 2] = half[round_, 0]
    return torch.cat([onehot, table.center, half, torch.cos(table.yaw)[:, None], torch.sin(table.yaw)[:, None],
                      table.rgb, table.rgb2, table.scale[:, None], table.texture[:, None].float(),
                      table.object_id[:, None].float()], dim=-1)


def _bounds(table: PrimitiveTable, S: int, pmax: int, counts: list[int]) -> tuple[Tensor, ...]:
    """World bounding-box corners (S, P, 8, 3), AABB lo/hi (S, P, 3), sphere radius (S, P), valid (S, P)."""
    size = table.size.clone()  # (S * P, 3)
    round_ = (table.shape == SHAPES["cylinder"]) | (table.shape == SHAPES["cone"])
    size[round_, 2] = size[round_, 0]  # cylinders and cones are circular with radius size[0]
    bits = torch.tensor([[(i >> a) & 1 for a in range(3)] for i in range(8)], dtype=torch.float32) * 2 - 1
    local = bits * size.unsqueeze(1)  # (S * P, 8, 3)
    c, s = torch.cos(table.yaw).unsqueeze(1), torch.sin(table.yaw).unsqueeze(1)
    world = torch.stack([c * local[..., 0] + s * local[..., 2], local[..., 1],
                         -s * local[..., 0] + c * local[..., 2]], dim=-1) + table.center.unsqueeze(1)
    valid = torch.arange(pmax).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)  # (S, P)
    corners = world.reshape(S, pmax, 8, 3)
    return corners, corners.amin(2), corners.amax(2), size.norm(dim=-1).reshape(S, pmax), valid


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
    lo = [(-half[..., 0] - ox).unsqueeze(-2), (-half[..., 1] - oy).unsqueeze(-2), (-half[..., 2] - oz).unsqueeze(-2)]
    hi = [(half[..., 0] - ox).unsqueeze(-2), (half[..., 1] - oy).unsqueeze(-2), (half[..., 2] - oz).unsqueeze(-2)]
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


def _group_test(group: str, p: PackedScenes, sel: tuple, o: Tensor, d: Tensor,
                inv: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(near, far, ok, index map) of one group for bundles ``o`` (..., 3), ``d`` (..., N, 3).

    ``sel`` indexes the packed per-scene tensors so that they broadcast against the bundle dims.
    """
    if group == "aabb":
        return (*_hit_aabb(o, inv, p.aabb_lo[sel], p.aabb_hi[sel], p.aabb_valid[sel]), p.aabb_index[sel])
    if group == "obox":
        return (*_hit_obox(o, d, inv, p.obox_center[sel], p.obox_half[sel], p.obox_cs[sel], p.obox_valid[sel]),
                p.obox_index[sel])
    if group == "ellipsoid":
        return (*_hit_ellipsoid(o, d, p.ell_center[sel], p.ell_inv_radii[sel], p.ell_cs[sel], p.ell_valid[sel]),
                p.ell_index[sel])
    if group == "cylinder":
        return (*_hit_cylinder(o, d, inv, p.cyl_center[sel], p.cyl_size[sel], p.cyl_valid[sel]), p.cyl_index[sel])
    return (*_hit_cone(o, d, inv, p.cone_center[sel], p.cone_size[sel], p.cone_valid[sel]), p.cone_index[sel])


def nearest_hit(p: PackedScenes, sel: tuple, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest hit parameter t (..., N) (inf on miss) and the hit primitive's index in its scene."""
    inv = 1.0 / d
    best_t: Tensor | None = None
    best_i: Tensor | None = None
    for group in GROUPS:  # 1. nearest hit inside each group, 2. keep the nearest over groups
        near, far, ok, index = _group_test(group, p, sel, o, d, inv)
        t = torch.where(near > EPS_T, near, far)
        t = torch.where(ok & (t > EPS_T), t, INF)
        t_g, arg = t.min(dim=-1)  # (..., N)
        i_g = torch.gather(index.unsqueeze(-2).expand(*arg.shape, index.shape[-1]), -1, arg.unsqueeze(-1))[..., 0]
        if best_t is None or best_i is None:
            best_t, best_i = t_g, i_g
        else:
            closer = t_g < best_t
            best_t, best_i = torch.where(closer, t_g, best_t), torch.where(closer, i_g, best_i)
    assert best_t is not None and best_i is not None
    return best_t, best_i


def any_hit(p: PackedScenes, sel: tuple, o: Tensor, d: Tensor) -> Tensor:
    """Whether each segment o + t d, t in (0, 1), touches any primitive: bool (..., N)."""
    inv = 1.0 / d
    blocked: Tensor | None = None
    for group in GROUPS:
        near, far, ok, _ = _group_test(group, p, sel, o, d, inv)
        b_g = (ok & (far > EPS_SHADOW) & (near < 1.0)).any(dim=-1)
        blocked = b_g if blocked is None else blocked | b_g
    assert blocked is not None
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
    cy, sy = cols[_C_CS], cols[_C_CS + 1]
    hx, hy, hz = cols[_C_HALF], cols[_C_HALF + 1], cols[_C_HALF + 2]
    px = pos[..., 0] - cols[_C_CENTER]
    qy = pos[..., 1] - cols[_C_CENTER + 1]
    pz = pos[..., 2] - cols[_C_CENTER + 2]
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
    ny = qy * (is_box * by.to(f) + is_ell / (hy * hy) + is_cyl * cyl_cap) + is_cone * cone_cap - side_k * w / hy
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
    base = albedo_from(pos, n, cols[_C_RGB : _C_RGB + 3].movedim(0, -1), cols[_C_RGB2 : _C_RGB2 + 3].movedim(0, -1),
                       cols[_C_TEX], cols[_C_SCALE], codes)
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
    ids = ((cols[_C_OBJ] - ID_MISS) * hit_f + ID_MISS).round().to(torch.int32)
    return rgb8, t, n * hit_f.unsqueeze(-1), ids
