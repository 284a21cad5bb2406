"""Procedural ground-truth worlds: descriptions, sampling, captions, collision."""

from sana_world.worlds.captions import caption
from sana_world.worlds.sampler import WorldConfig, sample_scene
from sana_world.worlds.spec import Light, Material, Opening, Primitive, Room, SceneObject, SceneSpec, SceneSpecError

__all__ = [
    "Light", "Material", "Opening", "Primitive", "Room", "SceneObject", "SceneSpec", "SceneSpecError",
    "WorldConfig", "caption", "sample_scene",
]
