"""Sample procedural worlds from a seed: single rooms and multi-room layouts joined by doorways."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sana_world.worlds.objects import build_object
from sana_world.worlds.palette import CATEGORIES, COLOURS
from sana_world.worlds.spec import Light, Material, Opening, Room, SceneObject, SceneSpec

# Scene seeds: training scenes come from [0, HELDOUT_START); held-out scenes (HELDOUT_START on) score models
# and are never trained on. The one definition: envs, data generation and trainers import it.
HELDOUT_START = 1_000_000

COLOUR_NAMES = tuple(COLOURS)
WALL_TEXTURES = ("plain", "brick", "stripes", "tiles", "marble", "checker")
FLOOR_TEXTURES = ("wood", "tiles", "checker", "plain", "marble")
OBJECT_TEXTURES = ("plain", "plain", "checker", "stripes", "wood", "dots", "marble")


@dataclass(frozen=True)
class WorldConfig:
    """What the sampler may produce."""

    layout: str = "any"  # "single" | "multi" | "any"
    room_size: tuple[float, float] = (4.0, 8.0)  # metres, side length range
    room_height: tuple[float, float] = (2.6, 3.2)
    objects_per_room: tuple[int, int] = (2, 6)
    max_rooms: int = 4
    door_width: tuple[float, float] = (1.0, 1.4)
    door_height: float = 2.1

    def __post_init__(self) -> None:
        if self.layout not in ("single", "multi", "any"):
            raise ValueError(f"layout must be 'single', 'multi' or 'any', got {self.layout!r}")
        if self.max_rooms < 2 and self.layout == "multi":
            raise ValueError("a multi-room layout needs max_rooms >= 2")


def _material(rng: np.random.Generator, textures: tuple[str, ...], scale: tuple[float, float]) -> Material:
    c1, c2 = rng.choice(len(COLOUR_NAMES), size=2, replace=False)
    return Material(
        colour=COLOUR_NAMES[c1],
        texture=str(rng.choice(textures)),
        colour2=COLOUR_NAMES[c2],
        scale=float(np.round(rng.uniform(*scale), 3)),
    )


def _grid(rng: np.random.Generator, cfg: WorldConfig) -> list[tuple[int, int]]:
    """Cells (i, j) of a small grid that form a connected layout."""
    if cfg.layout == "single" or (cfg.layout == "any" and rng.random() < 0.4):
        return [(0, 0)]
    shapes = [[(0, 0), (1, 0)], [(0, 0), (0, 1)], [(0, 0), (1, 0), (2, 0)], [(0, 0), (1, 0), (0, 1)],
              [(0, 0), (1, 0), (0, 1), (1, 1)]]
    shapes = [s for s in shapes if len(s) <= cfg.max_rooms]
    return shapes[int(rng.integers(len(shapes)))]


def sample_scene(seed: int, config: WorldConfig = WorldConfig()) -> SceneSpec:
    """A random world; the same seed and config always give the same spec."""
    rng = np.random.default_rng(seed)
    cells = _grid(rng, config)
    ni = max(i for i, _ in cells) + 1
    nj = max(j for _, j in cells) + 1
    # 1. column widths / row depths, then room rectangles
    xs = np.concatenate([[0.0], np.cumsum(np.round(rng.uniform(*config.room_size, size=ni), 2))])
    zs = np.concatenate([[0.0], np.cumsum(np.round(rng.uniform(*config.room_size, size=nj), 2))])
    height = float(np.round(rng.uniform(*config.room_height), 2))
    openings: dict[tuple[int, int], list[Opening]] = {c: [] for c in cells}
    # 2. a doorway on every shared side between two cells of the layout
    for (i, j) in cells:
        for (di, dj, side, other_side) in ((1, 0, "x1", "x0"), (0, 1, "z1", "z0")):
            nb = (i + di, j + dj)
            if nb not in openings:
                continue
            width = float(np.round(rng.uniform(*config.door_width), 2))
            lo, hi = (zs[j], zs[j + 1]) if side == "x1" else (xs[i], xs[i + 1])
            center = float(np.round(rng.uniform(lo + width / 2 + 0.4, hi - width / 2 - 0.4), 2))
            openings[(i, j)].append(Opening(side, center, width, config.door_height))
            openings[nb].append(Opening(other_side, center, width, config.door_height))
    rooms = []
    for (i, j) in cells:
        rooms.append(Room(
            x0=float(xs[i]), x1=float(xs[i + 1]), z0=float(zs[j]), z1=float(zs[j + 1]), height=height,
            wall=_material(rng, WALL_TEXTURES, (0.3, 0.8)),
            floor=_material(rng, FLOOR_TEXTURES, (0.4, 1.0)),
            ceiling=Material(str(rng.choice(["white", "beige", "grey"]))),
            openings=tuple(openings[(i, j)]),
        ))
    # 3. objects: free spots inside each room, clear of walls, doorways and each other
    objects: list[SceneObject] = []
    for room in rooms:
        n = int(rng.integers(config.objects_per_room[0], config.objects_per_room[1] + 1))
        placed: list[tuple[float, float, float]] = []
        for _ in range(n * 10):
            if len(placed) >= n:
                break
            cat = str(rng.choice(CATEGORIES))
            x = float(rng.uniform(room.x0 + 0.7, room.x1 - 0.7))
            z = float(rng.uniform(room.z0 + 0.7, room.z1 - 0.7))
            yaw = float(np.round(rng.uniform(-np.pi, np.pi), 3))
            obj = build_object(cat, x, z, yaw, _material(rng, OBJECT_TEXTURES, (0.1, 0.3)), rng, height)
            r = obj.radius_xz()
            if any(np.hypot(x - px, z - pz) < r + pr + 0.5 for px, pz, pr in placed):
                continue
            if any(_near_door(room, o, x, z, r + 0.6) for o in room.openings):
                continue
            placed.append((x, z, r))
            objects.append(obj)
    # 4. one point light under each ceiling
    lights = tuple(
        Light(((r.x0 + r.x1) / 2 + float(rng.uniform(-0.5, 0.5)), -height + 0.4,
               (r.z0 + r.z1) / 2 + float(rng.uniform(-0.5, 0.5))), intensity=float(rng.uniform(0.8, 1.1)))
        for r in rooms
    )
    return SceneSpec(rooms=tuple(rooms), objects=tuple(objects), lights=lights,
                     ambient=float(np.round(rng.uniform(0.2, 0.3), 3)), seed=int(seed))


def _near_door(room: Room, o: Opening, x: float, z: float, dist: float) -> bool:
    """Whether (x, z) lies within ``dist`` of the doorway ``o`` of ``room``."""
    px, pz = {"x0": (room.x0, o.center), "x1": (room.x1, o.center),
              "z0": (o.center, room.z0), "z1": (o.center, room.z1)}[o.side]
    return bool(np.hypot(x - px, z - pz) < dist + o.width / 2)
