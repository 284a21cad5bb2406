"""Packed scenes for the torch ray caster: per-shape-group primitive tensors padded across scenes.

``pack_scenes`` turns a list of :class:`SceneSpec` into one :class:`PackedScenes` on a device, so one
batched render can mix cameras of different scenes; ``repack_slots`` swaps a few of its scenes (a vector
env's autoresets) without packing the others again; ``pad_packed`` rounds its sizes up to a few fixed
shapes for ``torch.compile``. Groups: axis-aligned boxes (walls, floors, ceilings and boxes whose yaw is
a multiple of 90 degrees), oriented boxes, ellipsoids and spheres, cylinders, cones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sana_world.render.base import ID_MISS
from sana_world.render.shading import PrimitiveTable, primitive_table
from sana_world.worlds.palette import SHAPES
from sana_world.worlds.spec import SceneSpec

Tensor = torch.Tensor

GROUPS = ("aabb", "obox", "ellipsoid", "cylinder", "cone")
_PREFIX = {"aabb": "aabb", "obox": "obox", "ellipsoid": "ell", "cylinder": "cyl", "cone": "cone"}  # field names

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
    aabb_caster: Tensor  # (S, Pa) bool: may cast shadows (floor and ceiling slabs never do; they come last)
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
    aabb_casters: int  # shadow rays test only the first aabb_casters aabb slots
    group_sizes: tuple[int, ...]  # real (unpadded) slots per group, max over scenes: 0 = skip the group
    split_pow2: bool = False  # test group slots in power-of-two pieces (set by pad_packed)

    @property
    def device(self) -> torch.device:
        return self.aabb_lo.device


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def pack_scenes(scenes: list[SceneSpec], device: torch.device | str = "cpu",
                pad_multiple: int = 1, min_sizes: dict[str, int] | None = None) -> PackedScenes:
    """Pad the primitives of ``scenes`` into per-group tensors on ``device``.

    ``pad_multiple`` rounds every padded size up (use e.g. 8 with ``torch.compile`` so that different
    scene batches share compiled shapes); ``min_sizes`` (:func:`packed_sizes` of another pack) pads to at
    least those sizes.
    """
    least = min_sizes or {}
    if not scenes:
        raise ValueError("pack_scenes: need at least one scene")
    tables = [primitive_table(s, "cpu") for s in scenes]
    S = len(scenes)
    groups: dict[str, list[list[int]]] = {g: [[] for _ in range(S)] for g in GROUPS}
    casters: list[int] = []
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
        quiet = _never_occluding_slabs(tab, groups["aabb"][s])
        groups["aabb"][s].sort(key=lambda q: q in quiet)  # shadow casters first (stable order)
        casters.append(len(groups["aabb"][s]) - len(quiet))
    sizes = {g: max(_round_up(max(len(lst) for lst in groups[g]), pad_multiple), least.get(g, 0)) for g in GROUPS}

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
    aabb_caster = torch.arange(sizes["aabb"]).unsqueeze(0) < torch.tensor(casters).unsqueeze(1)  # (S, Pa)
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
    pmax = max(max(t.num_primitives for t in tables), least.get("prims", 0))
    lmax = max(1, max(t.num_lights for t in tables), least.get("lights", 0))

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
        aabb_lo.to(d), aabb_hi.to(d), aabb_valid.to(d), aabb_index.to(d), aabb_caster.to(d),
        obox_center.to(d), obox_half.to(d), obox_cs.to(d), obox_valid.to(d), obox_index.to(d),
        ell_center.to(d), ell_inv.to(d), ell_cs.to(d), ell_valid.to(d), ell_index.to(d),
        cyl_center.to(d), cyl_size.to(d), cyl_valid.to(d), cyl_index.to(d),
        cone_center.to(d), cone_size.to(d), cone_valid.to(d), cone_index.to(d),
        corners.to(d), lo.to(d), hi.to(d), radius.to(d), valid.to(d), surf.to(d), table.to(d), pmax, S,
        tuple(sorted({int(c) for t in tables for c in t.texture.tolist()})), max(casters),
        tuple(max(len(lst) for lst in groups[g]) for g in GROUPS),
    )


def packed_sizes(p: PackedScenes) -> dict[str, int]:
    """The padded sizes of a pack: slots per group (``GROUPS``), ``prims`` (prims_max) and ``lights``."""
    out = {g: int(getattr(p, f"{_PREFIX[g]}_valid").shape[1]) for g in GROUPS}
    return out | {"prims": p.prims_max, "lights": int(p.table.light_pos.shape[1])}


def repack_slots(packed: PackedScenes, slots: list[int], scenes: list[SceneSpec]) -> PackedScenes | None:
    """``packed`` with its scenes ``slots`` replaced by ``scenes``, as a new pack (``packed`` is unchanged),
    or None when a new scene needs larger padded sizes (then pack every scene anew). Only the new scenes
    are packed; the result equals ``pack_scenes`` of all the scenes at ``packed``'s sizes."""
    if packed.split_pow2 or len(slots) != len(scenes) or not slots:
        return None
    sizes = packed_sizes(packed)
    small = pack_scenes(scenes, packed.device, min_sizes=sizes)
    if packed_sizes(small) != sizes:
        return None
    S, P, k = packed.num_scenes, packed.prims_max, len(slots)
    idx = torch.tensor(slots, dtype=torch.int64, device=packed.device)

    def put(old: Tensor, new: Tensor) -> Tensor:  # rows of scene-major tensors, flattened (S * P, ...) too
        if old.shape[0] == S * P and S * P != S:
            return old.reshape(S, P, *old.shape[1:]).index_copy(0, idx, new.reshape(k, P, *new.shape[1:])) \
                .reshape(old.shape)  # fmt: skip
        return old.index_copy(0, idx, new)

    kw = {f.name: put(getattr(packed, f.name), getattr(small, f.name)) for f in dataclasses.fields(PackedScenes)
          if isinstance(getattr(packed, f.name), Tensor)}
    table = PrimitiveTable(**{f.name: put(getattr(packed.table, f.name), getattr(small.table, f.name))
                              for f in dataclasses.fields(PrimitiveTable)})
    # what pack_scenes derives from all scenes: shadow-caster slots, real slots per group, texture codes
    casters = int(kw["aabb_caster"].sum(1).max())
    group_sizes = tuple(int(kw[f"{_PREFIX[g]}_valid"].sum(1).max()) for g in GROUPS)
    codes = tuple(int(c) for c in torch.unique(table.texture[kw["prim_valid"].reshape(-1)]).tolist())
    return PackedScenes(**kw, table=table, prims_max=P, num_scenes=S, texture_codes=codes, aabb_casters=casters,
                        group_sizes=group_sizes)


def _never_occluding_slabs(tab: PrimitiveTable, boxes: list[int]) -> set[int]:
    """Axis-aligned boxes no shadow segment can touch: ceiling-like slabs above every light and every
    other primitive (and floor-like ones below them all).

    Shadow segments run from a light to a point on a visible surface (seen from inside the rooms: the
    underside of a ceiling, the top of a floor), so they stay within the y range of the lights and the
    other primitives; a slab outside that range (touching it at most) is never crossed.
    """
    if tab.num_lights == 0:
        return set()
    ly = tab.light_pos[:, 1]
    lo = (tab.center[:, 1] - tab.size[:, 1]).tolist()
    hi = (tab.center[:, 1] + tab.size[:, 1]).tolist()
    above = {b for b in boxes if hi[b] <= float(ly.min())}
    below = {b for b in boxes if lo[b] >= float(ly.max())}
    quiet = set()
    for b in above:  # 1. the highest point of any other primitive, a ceiling slab counting its underside
        top = min([float(ly.min())] + [hi[q] if q in above else lo[q] for q in range(len(lo)) if q != b])
        if hi[b] <= top:
            quiet.add(b)
    for b in below:  # 2. the lowest point of any other primitive, a floor slab counting its top
        bottom = max([float(ly.max())] + [lo[q] if q in below else hi[q] for q in range(len(lo)) if q != b])
        if lo[b] >= bottom:
            quiet.add(b)
    return quiet


def _pad(x: Tensor, shape: tuple[int, ...], value: float) -> Tensor:
    """``x`` grown to ``shape`` (same rank, no smaller), new entries = ``value``."""
    if tuple(x.shape) == shape:
        return x
    out = torch.full(shape, value, dtype=x.dtype, device=x.device)
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


def pad_packed(p: PackedScenes, multiple: int = 8, scene_multiple: int = 8) -> PackedScenes:
    """``p`` with every primitive-slot size (per group and ``prims_max``) rounded up to ``multiple``, the
    scene count to ``scene_multiple`` and at least 4 light slots: a few fixed shapes for ``torch.compile``."""
    S = _round_up(p.num_scenes, scene_multiple)
    P = _round_up(p.prims_max, multiple)
    kw: dict = {}
    for name in ("aabb", "obox", "ell", "cyl", "cone"):
        fields_ = [f for f in PackedScenes.__dataclass_fields__
                   if f.startswith(name + "_") and isinstance(getattr(p, f), Tensor)]
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
    casters = min(_round_up(p.aabb_casters, multiple), kw["aabb_valid"].shape[1])
    return PackedScenes(**kw, surf=flat(p.surf, 1.0), table=table, prims_max=P, num_scenes=S,
                        texture_codes=p.texture_codes, aabb_casters=casters, group_sizes=p.group_sizes,
                        split_pow2=True)


# columns of PackedScenes.surf
COL_SHAPE, COL_CENTER, COL_HALF, COL_CS, COL_RGB, COL_RGB2 = 0, 4, 7, 10, 12, 15
COL_SCALE, COL_TEX, COL_OBJ = 18, 19, 20
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
    cs = torch.stack([torch.cos(table.yaw), torch.sin(table.yaw)], dim=-1)
    return torch.cat([onehot, table.center, half, cs, table.rgb, table.rgb2, table.scale[:, None],
                      table.texture[:, None].float(), table.object_id[:, None].float()], dim=-1)


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
