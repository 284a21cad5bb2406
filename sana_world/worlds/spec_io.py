"""Parse a SceneSpec from plain dicts (JSON) with errors that name the offending field."""

from __future__ import annotations

import dataclasses
from typing import Any

from sana_world.worlds.spec import (
    Light,
    Material,
    Opening,
    Primitive,
    Room,
    SceneObject,
    SceneSpec,
    SceneSpecError,
)


def _require_dict(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SceneSpecError(f"{where}: expected an object, got {type(d).__name__}")
    return d


def _fields(cls: type, d: Any, where: str) -> dict[str, Any]:
    """Keep the keys ``cls`` declares; unknown keys and missing required keys raise."""
    d = _require_dict(d, where)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise SceneSpecError(f"{where}.{unknown[0]}: unknown field (allowed: {sorted(names)})")
    for name, f in names.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in d:
            raise SceneSpecError(f"{where}.{name}: missing required field")
    return dict(d)


def _vec3(v: Any, where: str) -> tuple[float, float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise SceneSpecError(f"{where}: expected 3 numbers, got {v!r}")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise SceneSpecError(f"{where}[{i}]: expected a number, got {x!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SceneSpecError(f"{where}: expected a number, got {v!r}")
    return float(v)


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise SceneSpecError(f"{where}: expected a list, got {type(v).__name__}")
    return list(v)


def _material(d: Any, where: str) -> Material:
    f = _fields(Material, d, where)
    if "scale" in f:
        f["scale"] = _number(f["scale"], f"{where}.scale")
    for key in ("colour", "texture", "colour2"):
        if key in f and not isinstance(f[key], str):
            raise SceneSpecError(f"{where}.{key}: expected a string, got {f[key]!r}")
    return Material(**f)


def _primitive(d: Any, where: str) -> Primitive:
    f = _fields(Primitive, d, where)
    f["center"] = _vec3(f["center"], f"{where}.center")
    f["size"] = _vec3(f["size"], f"{where}.size")
    f["material"] = _material(f["material"], f"{where}.material")
    if "yaw" in f:
        f["yaw"] = _number(f["yaw"], f"{where}.yaw")
    return Primitive(**f)


def _room(d: Any, where: str) -> Room:
    f = _fields(Room, d, where)
    for key in ("x0", "x1", "z0", "z1", "height"):
        f[key] = _number(f[key], f"{where}.{key}")
    for key in ("wall", "floor", "ceiling"):
        f[key] = _material(f[key], f"{where}.{key}")
    ops = []
    for j, o in enumerate(_list(f.get("openings", []), f"{where}.openings")):
        of = _fields(Opening, o, f"{where}.openings[{j}]")
        for key in ("center", "width", "height"):
            if key in of:
                of[key] = _number(of[key], f"{where}.openings[{j}].{key}")
        ops.append(Opening(**of))
    f["openings"] = tuple(ops)
    return Room(**f)


def spec_from_dict(d: Any) -> SceneSpec:
    """Build and validate a :class:`SceneSpec` from the dict that :meth:`SceneSpec.to_dict` wrote."""
    f = _fields(SceneSpec, d, "<root>")
    f["rooms"] = tuple(_room(r, f"rooms[{i}]") for i, r in enumerate(_list(f["rooms"], "rooms")))
    objects = []
    for i, o in enumerate(_list(f.get("objects", []), "objects")):
        of = _fields(SceneObject, o, f"objects[{i}]")
        parts = _list(of["parts"], f"objects[{i}].parts")
        objects.append(
            SceneObject(
                category=of["category"],
                parts=tuple(_primitive(p, f"objects[{i}].parts[{j}]") for j, p in enumerate(parts)),
            )
        )
    f["objects"] = tuple(objects)
    lights = []
    for i, light in enumerate(_list(f.get("lights", []), "lights")):
        lf = _fields(Light, light, f"lights[{i}]")
        lf["position"] = _vec3(lf["position"], f"lights[{i}].position")
        if "colour" in lf:
            lf["colour"] = _vec3(lf["colour"], f"lights[{i}].colour")
        if "intensity" in lf:
            lf["intensity"] = _number(lf["intensity"], f"lights[{i}].intensity")
        lights.append(Light(**lf))
    f["lights"] = tuple(lights)
    for key in ("ambient", "wall_thickness"):
        if key in f:
            f[key] = _number(f[key], key)
    if "extra" in f:
        f["extra"] = dict(_require_dict(f["extra"], "extra"))
    return SceneSpec(**f)
