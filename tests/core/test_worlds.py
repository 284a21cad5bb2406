import json

import numpy as np
import pytest

from sana_world.worlds import SceneSpec, SceneSpecError, WorldConfig, caption, sample_scene
from sana_world.worlds.collision import SceneSDF, free_positions
from sana_world.worlds.palette import COLOURS, SHAPES, TEXTURES


def test_sampler_is_deterministic_and_round_trips_json():
    for seed in range(8):
        a, b = sample_scene(seed), sample_scene(seed)
        assert a == b
        assert SceneSpec.from_json(a.to_json()) == a
    assert sample_scene(1) != sample_scene(2)


def test_sampler_covers_layouts_textures_colours_shapes():
    specs = [sample_scene(s) for s in range(60)]
    assert {len(s.rooms) for s in specs} >= {1, 2, 3}
    used_textures = {p.material.texture for s in specs for p, _ in s.primitives()}
    used_colours = {p.material.colour for s in specs for p, _ in s.primitives()}
    used_shapes = {p.shape for s in specs for p, _ in s.primitives()}
    assert len(used_textures) >= 6 and used_textures <= set(TEXTURES)
    assert len(used_colours) >= 10 and used_colours <= set(COLOURS)
    assert used_shapes == set(SHAPES)
    multi = [s for s in specs if len(s.rooms) > 1]
    assert all(any(r.openings for r in s.rooms) for s in multi)


def test_single_and_multi_layout_options():
    assert all(len(sample_scene(s, WorldConfig(layout="single")).rooms) == 1 for s in range(5))
    assert all(len(sample_scene(s, WorldConfig(layout="multi")).rooms) >= 2 for s in range(5))
    with pytest.raises(ValueError, match="layout"):
        WorldConfig(layout="maze")


def test_caption_names_walls_and_objects():
    spec = sample_scene(3)
    text = caption(spec)
    assert text.startswith("a room with") or "connected rooms" in text
    assert f"{spec.rooms[0].wall.colour}" in text or spec.rooms[0].wall.texture == "wood"
    assert spec.objects[0].category in text


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("rooms", 0, "wall", "colour"), "reed", "rooms[0].wall.colour"),
        (("rooms", 0, "height"), -1.0, "rooms[0].height"),
        (("objects", 0, "parts", 0, "shape"), "torus", "objects[0].parts[0].shape"),
        (("objects", 0, "parts", 0, "size"), [1, 2], "objects[0].parts[0].size"),
        (("lights", 0, "intensity"), "bright", "lights[0].intensity"),
        (("rooms", 0, "floor", "texture"), "fur", "rooms[0].floor.texture"),
    ],
)
def test_invalid_json_names_the_field(path, value, field):
    d = json.loads(sample_scene(3).to_json())
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SceneSpecError) as e:
        SceneSpec.from_json(json.dumps(d))
    assert field in str(e.value)


def test_unknown_and_missing_fields_raise():
    d = json.loads(sample_scene(3).to_json())
    d["rooms"][0]["colour"] = "red"
    with pytest.raises(SceneSpecError, match=r"rooms\[0\]\.colour: unknown field"):
        SceneSpec.from_dict(d)
    d = json.loads(sample_scene(3).to_json())
    del d["rooms"][0]["x0"]
    with pytest.raises(SceneSpecError, match=r"rooms\[0\]\.x0: missing"):
        SceneSpec.from_dict(d)
    with pytest.raises(SceneSpecError, match="not valid JSON"):
        SceneSpec.from_json("{rooms")


def test_structure_is_closed_and_doorways_are_open():
    spec = sample_scene(4, WorldConfig(layout="multi"))
    sdf = SceneSDF(spec)
    room = spec.rooms[0]
    door = room.openings[0]
    # a point in the doorway at knee height is free; the same point in the wall beside the door is not
    # a point inside this room's half of the wall (2 cm in from the room boundary)
    wall = {"x0": room.x0 + 0.02, "x1": room.x1 - 0.02, "z0": room.z0 + 0.02, "z1": room.z1 - 0.02}[door.side]
    pt_door = [wall, -0.5, door.center] if door.side.startswith("x") else [door.center, -0.5, wall]
    assert sdf.distance(np.array([pt_door]))[0] > 0.2
    off = door.width / 2 + 0.3
    pt_wall = [wall, -0.5, door.center + off] if door.side.startswith("x") else [door.center + off, -0.5, wall]
    if room.contains_xz(pt_wall[0], pt_wall[2]):
        assert sdf.distance(np.array([pt_wall]))[0] < 0


def test_free_positions_are_free():
    spec = sample_scene(5)
    pts = free_positions(spec, np.random.default_rng(0), 20, clearance=0.3)
    assert (SceneSDF(spec).distance(pts) > 0.3).all()
    assert np.allclose(pts[:, 1], -1.5)
