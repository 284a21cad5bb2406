"""Object categories built from primitives, standing on the floor (y = 0) at (x, z)."""

from __future__ import annotations

import math

import numpy as np

from sana_world.worlds.spec import Material, Primitive, SceneObject


def _legs(x: float, z: float, hx: float, hz: float, yaw: float, top: float, r: float, mat: Material) -> list[Primitive]:
    """Four vertical cylinder legs under a rectangle of half size (hx, hz), from the floor to y = -top."""
    c, s = math.cos(yaw), math.sin(yaw)
    legs = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            lx, lz = sx * (hx - 1.5 * r), sz * (hz - 1.5 * r)
            wx, wz = x + c * lx + s * lz, z - s * lx + c * lz
            legs.append(Primitive("cylinder", (wx, -top / 2, wz), (r, top / 2, r), mat))
    return legs


def build_object(category: str, x: float, z: float, yaw: float, mat: Material, rng: np.random.Generator,
                 ceiling: float) -> SceneObject:
    """One object of ``category`` with main material ``mat``; ``ceiling`` is the room height."""
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    dark = Material("brown", "wood", "beige", 0.3)
    parts: list[Primitive]
    if category == "crate":
        hx, hy, hz = u(0.2, 0.45), u(0.2, 0.45), u(0.2, 0.45)
        parts = [Primitive("box", (x, -hy, z), (hx, hy, hz), mat, yaw)]
    elif category == "ball":
        r = u(0.15, 0.35)
        parts = [Primitive("sphere", (x, -r, z), (r, r, r), mat)]
    elif category == "egg":
        rx, ry = u(0.15, 0.3), u(0.3, 0.5)
        parts = [Primitive("ellipsoid", (x, -ry, z), (rx, ry, rx * u(0.8, 1.2)), mat, yaw)]
    elif category == "cone":
        r, hh = u(0.15, 0.3), u(0.25, 0.5)
        parts = [Primitive("cone", (x, -hh, z), (r, hh, r), mat)]
    elif category == "pillar":
        r = u(0.12, 0.25)
        parts = [Primitive("cylinder", (x, -ceiling / 2, z), (r, ceiling / 2, r), mat)]
    elif category == "vase":
        r, hh = u(0.1, 0.2), u(0.2, 0.4)
        parts = [Primitive("cylinder", (x, -hh, z), (r, hh, r), mat),
                 Primitive("ellipsoid", (x, -2 * hh, z), (r * 1.3, r * 0.6, r * 1.3), mat)]
    elif category == "table":
        hx, hz, top = u(0.4, 0.7), u(0.3, 0.5), u(0.7, 0.8)
        parts = [Primitive("box", (x, -top - 0.03, z), (hx, 0.03, hz), mat, yaw)]
        parts += _legs(x, z, hx, hz, yaw, top, 0.035, mat)
    elif category == "stool":
        r, top = u(0.18, 0.25), u(0.45, 0.6)
        parts = [Primitive("cylinder", (x, -top - 0.03, z), (r, 0.03, r), mat),
                 Primitive("cylinder", (x, -top / 2, z), (0.05, top / 2, 0.05), dark)]
    elif category == "chair":
        h = u(0.2, 0.25)
        seat = 0.45
        parts = [Primitive("box", (x, -seat - 0.03, z), (h, 0.03, h), mat, yaw)]
        # back rest on the local -z edge
        bx, bz = x - math.sin(yaw) * (-h + 0.03), z + math.cos(yaw) * (-h + 0.03)
        parts.append(Primitive("box", (bx, -seat - 0.06 - 0.25, bz), (h, 0.25, 0.03), mat, yaw))
        parts += _legs(x, z, h, h, yaw, seat, 0.025, dark)
    elif category == "lamp":
        hgt = u(1.2, 1.7)
        parts = [Primitive("cylinder", (x, -0.02, z), (0.18, 0.02, 0.18), Material("black")),
                 Primitive("cylinder", (x, -hgt / 2, z), (0.025, hgt / 2, 0.025), Material("grey")),
                 Primitive("cone", (x, -hgt - 0.1, z), (0.25, 0.18, 0.25), mat)]
    elif category == "plant":
        r = u(0.15, 0.22)
        pot_h = u(0.15, 0.25)
        foliage = Material("green", "dots", "teal", 0.15)
        parts = [Primitive("cylinder", (x, -pot_h, z), (r, pot_h, r), mat),
                 Primitive("ellipsoid", (x, -2 * pot_h - 0.3, z), (r * 1.8, 0.35, r * 1.8), foliage)]
    elif category == "shelf":
        hx, hy, hz = u(0.4, 0.6), u(0.6, 0.9), u(0.15, 0.22)
        parts = [Primitive("box", (x, -hy, z), (hx, hy, hz), mat, yaw)]
    else:
        raise ValueError(f"unknown object category {category!r}")
    return SceneObject(category=category, parts=tuple(parts))
