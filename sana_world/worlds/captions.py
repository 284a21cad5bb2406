"""Captions generated from a SceneSpec ("a room with green brick walls, a red ball and a wooden table")."""

from __future__ import annotations

from sana_world.worlds.palette import TEXTURE_ADJECTIVES
from sana_world.worlds.spec import Material, SceneObject, SceneSpec

_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def describe_material(m: Material) -> str:
    """'green brick', 'wooden', 'red' ... (wood reads as 'wooden' without its colour)."""
    adj = TEXTURE_ADJECTIVES[m.texture]
    if m.texture == "wood":
        return adj
    return f"{m.colour} {adj}".strip()


def describe_object(obj: SceneObject) -> str:
    return f"{describe_material(obj.main_material)} {obj.category}"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def caption(spec: SceneSpec, max_objects: int = 4) -> str:
    """One sentence naming the layout, the first room's surfaces and up to ``max_objects`` objects."""
    room = spec.rooms[0]
    n = len(spec.rooms)
    head = "a room" if n == 1 else f"{_NUMBERS.get(n, str(n))} connected rooms"
    parts = [f"{describe_material(room.wall)} walls", _article(f"{describe_material(room.floor)} floor")]
    objs = [_article(describe_object(o)) for o in spec.objects[:max_objects]]
    extra = len(spec.objects) - max_objects
    if extra > 0:
        objs.append(f"{extra} more object" + ("s" if extra > 1 else ""))
    return f"{head} with " + _join(parts + objs)
