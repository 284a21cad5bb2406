"""Named colours, procedural textures and object shapes shared by the sampler, captions and renderers."""

from __future__ import annotations

# Linear-ish sRGB in [0, 1]; names are what captions say.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.15, 0.12),
    "green": (0.20, 0.62, 0.25),
    "blue": (0.17, 0.32, 0.80),
    "yellow": (0.92, 0.80, 0.18),
    "orange": (0.95, 0.50, 0.12),
    "purple": (0.52, 0.25, 0.65),
    "pink": (0.95, 0.55, 0.70),
    "white": (0.92, 0.92, 0.90),
    "grey": (0.52, 0.53, 0.55),
    "black": (0.10, 0.10, 0.11),
    "brown": (0.48, 0.30, 0.16),
    "beige": (0.86, 0.78, 0.62),
    "teal": (0.10, 0.55, 0.55),
    "cyan": (0.30, 0.80, 0.88),
}

# Texture names -> integer codes used by the renderers. Adjectives are what captions say.
TEXTURES: dict[str, int] = {
    "plain": 0,
    "checker": 1,
    "stripes": 2,
    "brick": 3,
    "wood": 4,
    "tiles": 5,
    "dots": 6,
    "marble": 7,
}
TEXTURE_ADJECTIVES: dict[str, str] = {
    "plain": "",
    "checker": "checkered",
    "stripes": "striped",
    "brick": "brick",
    "wood": "wooden",
    "tiles": "tiled",
    "dots": "dotted",
    "marble": "marble",
}

# Primitive shapes -> integer codes. Every object is made of one or more primitives.
SHAPES: dict[str, int] = {"box": 0, "sphere": 1, "ellipsoid": 2, "cylinder": 3, "cone": 4}

# Object categories the sampler can place (each built from the primitives above).
CATEGORIES: tuple[str, ...] = (
    "crate",
    "ball",
    "table",
    "chair",
    "lamp",
    "plant",
    "vase",
    "pillar",
    "cone",
    "egg",
    "shelf",
    "stool",
)
