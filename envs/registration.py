"""Register every sana-world env id with Gymnasium (strings only: nothing heavy loads until gym.make)."""

from __future__ import annotations

import gymnasium as gym

# id -> (task, max_episode_steps)
GT_ENVS: dict[str, tuple[str, int]] = {
    "SanaWorld/Rooms-v0": ("explore", 500),
    "SanaWorld/PointNav-v0": ("pointnav", 500),
    "SanaWorld/ObjectNav-v0": ("objectnav", 500),
}


# Dream twins: same spaces and tasks, frames from the world model of a zoo entry
DREAM_ENVS: dict[str, tuple[str, int]] = {
    "SanaWorld/DreamRooms-v0": ("explore", 500),
    "SanaWorld/DreamPointNav-v0": ("pointnav", 500),
}


# family -> (ids, entry point, vector entry point)
_FAMILIES = (
    (GT_ENVS, "sana_world.envs.gt:GTEnv", "sana_world.envs.vector:make_vector_env"),
    (DREAM_ENVS, "sana_world.envs.dream:DreamEnv", "sana_world.envs.dream:make_dream_vector_env"),
)


def register_envs() -> None:
    """Idempotent: ids already registered are left alone."""
    for envs, entry, vector_entry in _FAMILIES:
        for env_id, (task, steps) in envs.items():
            if env_id in gym.registry:
                continue
            gym.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry,
                         max_episode_steps=steps, kwargs={"task": task})
