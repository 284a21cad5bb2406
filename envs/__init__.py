"""Gymnasium environments over ground-truth (and later dreamed) worlds.

Import is light: env classes load when first used through ``gym.make`` or attribute access.
"""

from __future__ import annotations

from typing import Any

from sana_world.envs.registration import GT_ENVS, register_envs

__all__ = ["GT_ENVS", "GTEnv", "GTVectorEnv", "register_envs"]


def __getattr__(name: str) -> Any:
    if name == "GTEnv":
        from sana_world.envs.gt import GTEnv

        return GTEnv
    if name == "GTVectorEnv":
        from sana_world.envs.vector import GTVectorEnv

        return GTVectorEnv
    raise AttributeError(name)
