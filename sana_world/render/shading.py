"""Shading shared by every renderer: primitive tables, procedural textures, Lambert lighting, shadow rays.

A renderer only has to find, per pixel, the world-space hit point, the hit primitive (index into
``SceneSpec.primitives()``) and a unit normal facing the camera; everything here is a pure function of
those, so two renderers that find the same surfaces produce the same colours. All functions take any
number of leading dimensions (``...``) and run unchanged on CPU and CUDA and under ``torch.compile``;
nothing here draws random numbers.

Textures are 2D patterns evaluated on the plane orthogonal to the dominant axis of the normal (a
triplanar *pick*, not a blend), in pattern units ``world / Material.scale``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from sana_world.worlds.palette import SHAPES, TEXTURES
from sana_world.worlds.spec import SceneSpec

Tensor = torch.Tensor

MISS_RGB = (0.06, 0.06, 0.08)  # background colour of rays that hit nothing
SHADOW_OFFSET = 1e-3  # metres along the normal that shadow-ray origins are lifted off the surface


@dataclass(frozen=True)
class ShadingConfig:
    """Lighting constants; the defaults are what every renderer uses."""

    falloff: float = 0.05  # irradiance = I / (1 + falloff * d^2)
    exposure: float = 1.15
    gamma: float = 1.5  # output = (exposure * linear) ** (1 / gamma), clamped to [0, 1]


DEFAULT_SHADING = ShadingConfig()


@dataclass
class PrimitiveTable:
    """Per-primitive material and geometry tensors of one scene, in ``SceneSpec.primitives()`` order."""

    rgb: Tensor  # (P, 3) float32 main colour
    rgb2: Tensor  # (P, 3) float32 second colour of patterned textures
    texture: Tensor  # (P,) int64 texture code (palette.TEXTURES)
    scale: Tensor  # (P,) float32 pattern period in metres
    object_id: Tensor  # (P,) int32 index into SceneSpec.objects, -1 for structure
    shape: Tensor  # (P,) int64 shape code (palette.SHAPES)
    center: Tensor  # (P, 3) float32
    size: Tensor  # (P, 3) float32 half extents
    yaw: Tensor  # (P,) float32 radians about +y
    light_pos: Tensor  # (L, 3) float32
    light_rgb: Tensor  # (L, 3) float32 colour * intensity
    ambient: Tensor  # () float32

    @property
    def num_primitives(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def num_lights(self) -> int:
        return int(self.light_pos.shape[0])

    def to(self, device: torch.device | str) -> PrimitiveTable:
        return PrimitiveTable(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def primitive_table(spec: SceneSpec, device: torch.device | str = "cpu") -> PrimitiveTable:
    """Build the :class:`PrimitiveTable` of ``spec`` on ``device``."""
    prims = spec.primitives()
    f32 = dict(dtype=torch.float32, device=device)

    def col(values: list, **kw) -> Tensor:  # type: ignore[no-untyped-def]
        return torch.tensor(values, **kw) if values else torch.zeros((0,), **kw)

    lights = spec.lights
    return PrimitiveTable(
        rgb=col([p.material.rgb() for p, _ in prims], **f32).reshape(-1, 3),
        rgb2=col([p.material.rgb2() for p, _ in prims], **f32).reshape(-1, 3),
        texture=col([TEXTURES[p.material.texture] for p, _ in prims], dtype=torch.int64, device=device),
        scale=col([p.material.scale for p, _ in prims], **f32),
        object_id=col([oid for _, oid in prims], dtype=torch.int32, device=device),
        shape=col([SHAPES[p.shape] for p, _ in prims], dtype=torch.int64, device=device),
        center=col([p.center for p, _ in prims], **f32).reshape(-1, 3),
        size=col([p.size for p, _ in prims], **f32).reshape(-1, 3),
        yaw=col([p.yaw for p, _ in prims], **f32),
        light_pos=col([lt.position for lt in lights], **f32).reshape(-1, 3),
        light_rgb=col([tuple(c * lt.intensity for c in lt.colour) for lt in lights], **f32).reshape(-1, 3),
        ambient=torch.tensor(spec.ambient, **f32),
    )


# ---------------------------------------------------------------------------------------------------------
# Procedural textures
# ---------------------------------------------------------------------------------------------------------

def _mod289(x: Tensor) -> Tensor:
    """x mod 289 for integer-valued floats below 2^24 in magnitude (exact: x / 289 is correctly rounded)."""
    return x - 289.0 * torch.floor(x / 289.0)


def _perm(x: Tensor) -> Tensor:
    """The permutation polynomial (34 x^2 + x) mod 289; exact in float32 for integer x in [0, 578)."""
    return _mod289((34.0 * x + 1.0) * x)


def _hash(i: Tensor, j: Tensor) -> Tensor:
    """Lattice hash of integer-valued float tensors -> [0, 1]; exact float arithmetic (all intermediates
    are integers below 2^24), so it needs no random numbers and gives the same pattern every frame."""
    return _perm(_perm(_mod289(i)) + _mod289(j)) * (1.0 / 288.0)


def _value_noise(u: Tensor, v: Tensor) -> Tensor:
    """Smooth value noise in [0, 1] on the unit lattice."""
    iu, iv = torch.floor(u), torch.floor(v)
    su, sv = u - iu, v - iv
    su, sv = su * su * (3.0 - 2.0 * su), sv * sv * (3.0 - 2.0 * sv)
    pu0, pu1 = _perm(_mod289(iu)), _perm(_mod289(iu + 1.0))
    jv0, jv1 = _mod289(iv), _mod289(iv + 1.0)
    a, b = _perm(pu0 + jv0), _perm(pu1 + jv0)
    c, d = _perm(pu0 + jv1), _perm(pu1 + jv1)
    return torch.lerp(torch.lerp(a, b, su), torch.lerp(c, d, su), sv) * (1.0 / 288.0)


def texture_coords(position: Tensor, normal: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Pattern coordinates (u, v) (...,) on the plane orthogonal to the normal's dominant axis.

    x-facing surfaces use (z, y), y-facing (floors, ceilings) use (x, z), z-facing use (x, y): on walls
    u runs horizontally and v vertically.
    """
    ax, ay, az = normal[..., 0].abs(), normal[..., 1].abs(), normal[..., 2].abs()
    x_dom = (ax >= ay) & (ax >= az)
    y_dom = (~x_dom & (ay >= az)).to(position.dtype)
    px, py, pz = position[..., 0], position[..., 1], position[..., 2]
    inv = 1.0 / scale
    u = torch.lerp(px, pz, x_dom.to(position.dtype))  # blends with 0/1 weights: cheaper than where on CPU
    v = torch.lerp(py, pz, y_dom)
    return u * inv, v * inv


def albedo(position: Tensor, normal: Tensor, prim_index: Tensor, table: PrimitiveTable,
           codes: Sequence[int] | None = None) -> Tensor:
    """Surface colour (..., 3) in [0, 1] of the hit primitive ``prim_index`` (...,) at ``position`` (..., 3).

    ``codes`` optionally lists the texture codes that can occur (e.g. those of the scene): patterns of
    other codes are skipped, which saves time but changes nothing else.
    """
    idx = prim_index.clamp(0, max(table.num_primitives - 1, 0)).long()
    return albedo_from(position, normal, table.rgb[idx], table.rgb2[idx], table.texture[idx],
                       table.scale[idx], codes)


def albedo_from(position: Tensor, normal: Tensor, c1: Tensor, c2: Tensor, code: Tensor, scale: Tensor,
                codes: Sequence[int] | None = None) -> Tensor:
    """:func:`albedo` from per-point material values: colours (..., 3), texture code and scale (...,)."""
    u, v = texture_coords(position, normal, scale)
    iu, iv = torch.floor(u), torch.floor(v)
    fu, fv = u - iu, v - iv
    T = TEXTURES
    want = set(T.values()) if codes is None else {int(c) for c in codes}
    m = torch.zeros_like(u)  # mix factor c1 -> c2
    k = torch.ones_like(u)  # brightness factor

    def is_code(name: str) -> Tensor:
        return (code == T[name]).to(u.dtype)

    # 1. one pattern per texture code, blended in where the pixel's primitive uses it
    if T["checker"] in want:
        m = torch.lerp(m, (iu + iv) - 2.0 * torch.floor(0.5 * (iu + iv)), is_code("checker"))
    if T["stripes"] in want:
        m = torch.lerp(m, (fu < 0.5).to(u.dtype), is_code("stripes"))
    if T["brick"] in want:  # bricks of 1 x 0.5 units, odd rows shifted by half a brick
        row = torch.floor(2.0 * v)
        bu = u + 0.5 * (row - 2.0 * torch.floor(0.5 * row))
        bfu, bfv = bu - torch.floor(bu), 2.0 * v - row
        mortar = ((bfu < 0.035) | (bfv < 0.07)).to(u.dtype)
        is_brick = is_code("brick")
        m = torch.lerp(m, mortar, is_brick)
        brick_k = torch.lerp(0.82 + 0.18 * _hash(torch.floor(bu), row), torch.ones_like(u), mortar)
        k = torch.lerp(k, brick_k, is_brick)
    if T["wood"] in want:  # planks one unit wide along u, grain lines along v with a noisy wobble
        wobble = 1.2 * _value_noise(1.5 * u, 0.35 * v + 7.0 * iu)
        g = 0.5 + 0.5 * torch.sin((2.0 * math.pi) * (5.0 * fu + wobble))
        is_wood = is_code("wood")
        m = torch.lerp(m, 0.55 * g * g * g, is_wood)
        seam = 1.0 - 0.45 * (fu < 0.02).to(u.dtype)
        k = torch.lerp(k, (0.88 + 0.12 * _hash(iu, torch.floor(v * (1.0 / 3.0)))) * seam, is_wood)
    if T["tiles"] in want:
        grout = ((fu < 0.045) | (fv < 0.045)).to(u.dtype)
        is_tile = is_code("tiles")
        m = torch.lerp(m, grout, is_tile)
        tile_k = torch.lerp(0.93 + 0.07 * _hash(iu + 101.0, iv + 57.0), torch.ones_like(u), grout)
        k = torch.lerp(k, tile_k, is_tile)
    if T["dots"] in want:
        du, dv = fu - 0.5, fv - 0.5
        m = torch.lerp(m, ((du * du + dv * dv) < 0.09).to(u.dtype), is_code("dots"))
    if T["marble"] in want:  # sine veins bent by two octaves of value noise
        n = 0.65 * _value_noise(0.9 * u, 0.9 * v) + 0.35 * _value_noise(2.1 * u + 17.0, 2.1 * v + 5.0)
        vein = torch.sin(math.pi * (0.8 * u + 0.6 * v) + 6.0 * n).abs()
        is_marble = is_code("marble")
        x2 = (1.0 - vein) * (1.0 - vein)
        m = torch.lerp(m, x2 * x2 * x2, is_marble)
        k = torch.lerp(k, 0.92 + 0.08 * n, is_marble)
    return torch.lerp(c1, c2, m.unsqueeze(-1)) * k.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------------------
# Lighting
# ---------------------------------------------------------------------------------------------------------


def shadow_rays(position: Tensor, normal: Tensor, table: PrimitiveTable) -> tuple[Tensor, Tensor, Tensor]:
    """Rays from each surface point towards each light, for any backend's own any-hit test.

    Returns ``origins`` (..., L, 3) lifted ``SHADOW_OFFSET`` along the normal, unit ``dirs`` (..., L, 3)
    and ``max_t`` (..., L), the distance to the light: the point is lit by light l when no surface is hit
    with 0 < t < max_t.
    """
    origin = position + SHADOW_OFFSET * normal  # (..., 3)
    to_light = table.light_pos - origin.unsqueeze(-2)  # (..., L, 3)
    dist = to_light.norm(dim=-1)  # (..., L)
    dirs = to_light / dist.clamp_min(1e-12).unsqueeze(-1)
    return origin.unsqueeze(-2).expand_as(dirs), dirs, dist


def tone_map(linear: Tensor, config: ShadingConfig = DEFAULT_SHADING) -> Tensor:
    """Linear radiance -> display values in [0, 1]."""
    return (linear * config.exposure).clamp(0.0, 1.0) ** (1.0 / config.gamma)


def shade_lit(position: Tensor, normal: Tensor, base: Tensor, hit_mask: Tensor, light_pos: Tensor,
              light_rgb: Tensor, ambient: Tensor, light_visibility: Tensor,
              config: ShadingConfig = DEFAULT_SHADING) -> Tensor:
    """Lambert + ambient for surface colour ``base`` (..., 3); display rgb (..., 3) in [0, 1].

    ``light_pos``/``light_rgb`` (..., L, 3) and ``ambient`` (...) broadcast against the points, so one
    call can shade pixels of several scenes; ``light_visibility`` is (..., L) in [0, 1].
    """
    lx = light_pos[..., 0] - position[..., 0].unsqueeze(-1)  # (..., L)
    ly = light_pos[..., 1] - position[..., 1].unsqueeze(-1)
    lz = light_pos[..., 2] - position[..., 2].unsqueeze(-1)
    d2 = lx * lx + ly * ly + lz * lz
    ndotl = lx * normal[..., 0:1] + ly * normal[..., 1:2] + lz * normal[..., 2:3]
    lambert = ndotl.clamp_min(0.0) * torch.rsqrt(d2.clamp_min(1e-12))
    w = lambert * light_visibility / (1.0 + config.falloff * d2)
    irradiance = ambient.unsqueeze(-1) + (w.unsqueeze(-1) * light_rgb).sum(-2)  # (..., 3)
    rgb = tone_map(base * irradiance, config)
    miss = torch.tensor(MISS_RGB, dtype=rgb.dtype, device=rgb.device)
    return torch.lerp(miss, rgb, hit_mask.to(rgb.dtype).unsqueeze(-1))


def shade(position: Tensor, normal: Tensor, prim_index: Tensor, hit_mask: Tensor, table: PrimitiveTable,
          light_visibility: Tensor | None = None, config: ShadingConfig = DEFAULT_SHADING) -> Tensor:
    """Display colour (..., 3) float in [0, 1] of hit points; miss pixels get ``MISS_RGB``.

    ``position``/``normal`` (..., 3) world-space, normal facing the camera; ``prim_index`` (...) into
    ``SceneSpec.primitives()``; ``hit_mask`` (...) bool; ``light_visibility`` (..., L) float (1 = lit,
    ``None`` = no shadows).
    """
    if light_visibility is None:
        light_visibility = torch.ones((*position.shape[:-1], table.num_lights), dtype=position.dtype,
                                      device=position.device)
    base = albedo(position, normal, prim_index, table)
    return shade_lit(position, normal, base, hit_mask, table.light_pos, table.light_rgb, table.ambient,
                     light_visibility, config)
