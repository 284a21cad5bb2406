"""SceneSpec: a JSON-serialisable description of a procedural 3D world.

World frame (see :mod:`sana_world.camera`): +y points down, the floor is the plane y = 0 and a room of
height h fills -h <= y <= 0. Rooms are axis-aligned rectangles in the XZ plane; walls, floors and
ceilings are solid boxes derived from the rooms, so both renderers and the collision check see the same
closed geometry. Objects are made of primitives (box, sphere, ellipsoid, cylinder, cone).

Primitive sizes are half extents along the primitive's local axes (rotated by ``yaw`` about +y):
box (hx, hy, hz); sphere (r, r, r); ellipsoid (rx, ry, rz); cylinder (r, h/2, r) with a vertical axis;
cone (r, h/2, r) with its base at the bottom (larger y) and apex on top.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sana_world.worlds.palette import CATEGORIES, COLOURS, SHAPES, TEXTURES

Vec3 = tuple[float, float, float]
SIDES = ("x0", "x1", "z0", "z1")
SPEC_VERSION = 1


class SceneSpecError(ValueError):
    """An invalid scene description; the message names the offending field."""


@dataclass(frozen=True)
class Material:
    colour: str
    texture: str = "plain"
    colour2: str = "white"  # second colour of patterned textures (mortar, stripes, checks)
    scale: float = 0.5  # pattern period in metres

    def rgb(self) -> Vec3:
        return COLOURS[self.colour]

    def rgb2(self) -> Vec3:
        return COLOURS[self.colour2]


@dataclass(frozen=True)
class Primitive:
    shape: str
    center: Vec3
    size: Vec3
    material: Material
    yaw: float = 0.0  # radians about +y (local -> world rotation Ry(yaw))


@dataclass(frozen=True)
class SceneObject:
    category: str
    parts: tuple[Primitive, ...]

    @property
    def main_material(self) -> Material:
        return self.parts[0].material

    def center(self) -> Vec3:
        n = len(self.parts)
        return tuple(sum(p.center[i] for p in self.parts) / n for i in range(3))  # type: ignore[return-value]

    def radius_xz(self) -> float:
        """Radius of a vertical cylinder around the object's centre that contains it."""
        cx, _, cz = self.center()
        return max(math.hypot(p.center[0] - cx, p.center[2] - cz) + math.hypot(p.size[0], p.size[2])
                   for p in self.parts)


@dataclass(frozen=True)
class Opening:
    """A doorway in one side of a room: centred at ``center`` along that wall."""

    side: str  # "x0" | "x1" | "z0" | "z1"
    center: float
    width: float = 1.0
    height: float = 2.1


@dataclass(frozen=True)
class Room:
    x0: float
    x1: float
    z0: float
    z1: float
    height: float
    wall: Material
    floor: Material
    ceiling: Material
    openings: tuple[Opening, ...] = ()

    def contains_xz(self, x: float, z: float, margin: float = 0.0) -> bool:
        return self.x0 + margin <= x <= self.x1 - margin and self.z0 + margin <= z <= self.z1 - margin


@dataclass(frozen=True)
class Light:
    position: Vec3
    intensity: float = 1.0
    colour: Vec3 = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SceneSpec:
    rooms: tuple[Room, ...]
    objects: tuple[SceneObject, ...] = ()
    lights: tuple[Light, ...] = ()
    ambient: float = 0.25
    wall_thickness: float = 0.1
    seed: int | None = None
    version: int = SPEC_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        validate(self)

    # --- derived geometry -------------------------------------------------------------------------------
    def structure(self) -> tuple[Primitive, ...]:
        """Walls, floors and ceilings as boxes (object id -1)."""
        out: list[Primitive] = []
        for room in self.rooms:
            out.extend(room_boxes(room, self.wall_thickness))
        return tuple(out)

    def primitives(self) -> list[tuple[Primitive, int]]:
        """Every primitive with its object id (-1 for structure, else the index into ``objects``)."""
        out = [(p, -1) for p in self.structure()]
        for i, obj in enumerate(self.objects):
            out.extend((p, i) for p in obj.parts)
        return out

    def bounds(self) -> tuple[Vec3, Vec3]:
        """Axis-aligned bounds (min, max) of the whole layout."""
        x0 = min(r.x0 for r in self.rooms)
        x1 = max(r.x1 for r in self.rooms)
        z0 = min(r.z0 for r in self.rooms)
        z1 = max(r.z1 for r in self.rooms)
        h = max(r.height for r in self.rooms)
        t = self.wall_thickness
        return (x0, -h - t, z0), (x1, t, z1)

    def room_at(self, x: float, z: float) -> int | None:
        for i, r in enumerate(self.rooms):
            if r.contains_xz(x, z):
                return i
        return None

    # --- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["extra"] = dict(self.extra)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @staticmethod
    def from_dict(d: Any) -> SceneSpec:
        from sana_world.worlds.spec_io import spec_from_dict

        return spec_from_dict(d)

    @staticmethod
    def from_json(text: str) -> SceneSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SceneSpecError(f"<root>: not valid JSON ({e})") from e
        return SceneSpec.from_dict(d)


def room_boxes(room: Room, wall_thickness: float) -> list[Primitive]:
    """The boxes that bound one room: floor slab, ceiling slab and its four walls cut by openings.

    Each room's walls sit inside its own rectangle with half the wall thickness, so two rooms that share
    a side form one wall of full thickness and never overlap coplanar faces.
    """
    t = wall_thickness
    h = room.height
    w2 = t / 2.0
    cx, cz = (room.x0 + room.x1) / 2.0, (room.z0 + room.z1) / 2.0
    hx, hz = (room.x1 - room.x0) / 2.0, (room.z1 - room.z0) / 2.0
    boxes = [
        Primitive("box", (cx, t / 2.0, cz), (hx, t / 2.0, hz), room.floor),
        Primitive("box", (cx, -h - t / 2.0, cz), (hx, t / 2.0, hz), room.ceiling),
    ]
    for side in SIDES:
        along_x = side in ("z0", "z1")  # a z-side wall runs along x
        lo, hi = (room.x0, room.x1) if along_x else (room.z0, room.z1)
        fixed = {"x0": room.x0 + w2 / 2, "x1": room.x1 - w2 / 2, "z0": room.z0 + w2 / 2, "z1": room.z1 - w2 / 2}[side]
        # 1. split [lo, hi] into wall segments around the openings on this side
        cuts = sorted((o.center - o.width / 2, o.center + o.width / 2, o.height) for o in room.openings if o.side == side)
        start = lo
        segments: list[tuple[float, float, float, float]] = []  # (a, b, y_top, y_bottom)
        for a, b, door_h in cuts:
            if a > start:
                segments.append((start, a, -h, 0.0))
            segments.append((a, b, -h, -door_h))  # lintel above the doorway
            start = b
        if hi > start:
            segments.append((start, hi, -h, 0.0))
        # 2. one box per segment
        for a, b, y0, y1 in segments:
            if b - a < 1e-6 or y1 - y0 < 1e-6:
                continue
            c_along, h_along = (a + b) / 2.0, (b - a) / 2.0
            cy, hy = (y0 + y1) / 2.0, (y1 - y0) / 2.0
            if along_x:
                boxes.append(Primitive("box", (c_along, cy, fixed), (h_along, hy, w2 / 2), room.wall))
            else:
                boxes.append(Primitive("box", (fixed, cy, c_along), (w2 / 2, hy, h_along), room.wall))
    return boxes


def _check_material(m: Material, where: str) -> None:
    if m.colour not in COLOURS:
        raise SceneSpecError(f"{where}.colour: unknown colour {m.colour!r} (choose from {sorted(COLOURS)})")
    if m.colour2 not in COLOURS:
        raise SceneSpecError(f"{where}.colour2: unknown colour {m.colour2!r} (choose from {sorted(COLOURS)})")
    if m.texture not in TEXTURES:
        raise SceneSpecError(f"{where}.texture: unknown texture {m.texture!r} (choose from {sorted(TEXTURES)})")
    if not (m.scale > 0 and math.isfinite(m.scale)):
        raise SceneSpecError(f"{where}.scale: must be a positive finite number, got {m.scale!r}")


def _check_finite(values: tuple[float, ...], where: str, positive: bool = False) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SceneSpecError(f"{where}[{i}]: must be a finite number, got {v!r}")
        if positive and v <= 0:
            raise SceneSpecError(f"{where}[{i}]: must be positive, got {v!r}")


def validate(spec: SceneSpec) -> None:
    """Raise :class:`SceneSpecError` naming the first invalid field."""
    if spec.version != SPEC_VERSION:
        raise SceneSpecError(f"version: unsupported scene version {spec.version} (expected {SPEC_VERSION})")
    if not spec.rooms:
        raise SceneSpecError("rooms: a scene needs at least one room")
    if not (0 < spec.wall_thickness < 1.0):
        raise SceneSpecError(f"wall_thickness: must lie in (0, 1), got {spec.wall_thickness}")
    if not (0.0 <= spec.ambient <= 1.0):
        raise SceneSpecError(f"ambient: must lie in [0, 1], got {spec.ambient}")
    for i, r in enumerate(spec.rooms):
        w = f"rooms[{i}]"
        _check_finite((r.x0, r.x1, r.z0, r.z1), w)
        if not (r.x1 - r.x0 > 2 * spec.wall_thickness and r.z1 - r.z0 > 2 * spec.wall_thickness):
            raise SceneSpecError(f"{w}: x1 > x0 and z1 > z0 are required (got x {r.x0}..{r.x1}, z {r.z0}..{r.z1})")
        if not (0.5 < r.height < 50):
            raise SceneSpecError(f"{w}.height: must lie in (0.5, 50), got {r.height}")
        for name in ("wall", "floor", "ceiling"):
            _check_material(getattr(r, name), f"{w}.{name}")
        for j, o in enumerate(r.openings):
            wo = f"{w}.openings[{j}]"
            if o.side not in SIDES:
                raise SceneSpecError(f"{wo}.side: must be one of {SIDES}, got {o.side!r}")
            lo, hi = (r.x0, r.x1) if o.side in ("z0", "z1") else (r.z0, r.z1)
            if not (lo <= o.center - o.width / 2 and o.center + o.width / 2 <= hi and o.width > 0):
                raise SceneSpecError(f"{wo}: doorway {o.center}±{o.width / 2} does not fit the wall {lo}..{hi}")
            if not (0 < o.height < r.height):
                raise SceneSpecError(f"{wo}.height: must lie in (0, room height {r.height}), got {o.height}")
    for i, obj in enumerate(spec.objects):
        w = f"objects[{i}]"
        if obj.category not in CATEGORIES:
            raise SceneSpecError(f"{w}.category: unknown category {obj.category!r} (choose from {list(CATEGORIES)})")
        if not obj.parts:
            raise SceneSpecError(f"{w}.parts: an object needs at least one primitive")
        for j, p in enumerate(obj.parts):
            wp = f"{w}.parts[{j}]"
            if p.shape not in SHAPES:
                raise SceneSpecError(f"{wp}.shape: unknown shape {p.shape!r} (choose from {sorted(SHAPES)})")
            _check_finite(tuple(p.center), f"{wp}.center")
            _check_finite(tuple(p.size), f"{wp}.size", positive=True)
            _check_finite((p.yaw,), f"{wp}.yaw")
            _check_material(p.material, f"{wp}.material")
    for i, light in enumerate(spec.lights):
        _check_finite(tuple(light.position), f"lights[{i}].position")
        _check_finite(tuple(light.colour), f"lights[{i}].colour")
        if not (light.intensity >= 0):
            raise SceneSpecError(f"lights[{i}].intensity: must be >= 0, got {light.intensity}")
