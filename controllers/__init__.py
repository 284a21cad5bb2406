"""Camera controllers: SANA-WM key DSL, waypoint/spline followers, exploration policies and teleop.

Importing this package is light (numpy, torch via sana_world.camera); diffusers is never imported.
"""

from sana_world.controllers.explore import (
    ExplorerConfig,
    KeyScriptConfig,
    KeyScriptExplorer,
    RandomExplorer,
    rollout,
)
from sana_world.controllers.followers import (
    FollowerConfig,
    SplineConfig,
    SplineFollower,
    Waypoint,
    WaypointFollower,
    catmull_rom,
)
from sana_world.controllers.keys import (
    KEY_ORDER,
    action_string_to_c2w,
    action_string_to_keys,
    dsl_limits,
    keys_to_action_string,
    keys_to_twist,
    parse_action_string,
)

__all__ = [
    "KEY_ORDER", "ExplorerConfig", "FollowerConfig", "KeyScriptConfig", "KeyScriptExplorer", "RandomExplorer",
    "SplineConfig", "SplineFollower", "Waypoint", "WaypointFollower", "action_string_to_c2w",
    "action_string_to_keys", "catmull_rom", "dsl_limits", "keys_to_action_string", "keys_to_twist",
    "parse_action_string", "rollout",
]
