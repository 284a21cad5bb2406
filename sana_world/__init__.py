"""sana-world: SANA-family world models as Gymnasium environments, with a ground-truth 3D world.

``import sana_world`` registers every env id (``SanaWorld/Rooms-v0`` ...) and stays light: no model and
no renderer is built until an environment is made.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register() -> None:
    # The one upward reference in the package: registration holds only id strings and entry-point
    # strings, so core stays independent of what the envs import.
    from sana_world.envs.registration import register_envs

    register_envs()


_register()
