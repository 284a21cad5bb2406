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


def register_envs() -> None:
    """Idempotent: ids already registered are left alone."""
    for env_id, (task, steps) in GT_ENVS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="sana_world.envs.gt:GTEnv",
            vector_entry_point="sana_world.envs.vector:make_vector_env",
            max_episode_steps=steps,
            kwargs={"task": task},
        )
    for env_id, (task, steps) in DREAM_ENVS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="sana_world.envs.dream:DreamEnv",
            vector_entry_point="sana_world.envs.dream:make_dream_vector_env",
            max_episode_steps=steps,
            kwargs={"task": task},
        )
