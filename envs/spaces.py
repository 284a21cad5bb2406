"""Observation and action spaces of the sana-world environments (shared by GT and dream envs)."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from sana_world.controllers.keys import KEY_ORDER
from sana_world.envs.tasks import goal_space


ACTION_MODES = ("twist", "keys", "nav")
# action_mode="nav": Discrete(3), Habitat-style moves of a level camera, each a full-speed twist component
NAV_ACTIONS = ("forward", "turn_left", "turn_right")
_NAV_TWISTS = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0], [0, 0, 0, -1.0, 0, 0]],
                           dtype=torch.float64)  # (3, 6), rows in NAV_ACTIONS order


def action_space(action_mode: str) -> spaces.Space:
    """``Box(-1, 1, (6,))`` twist [forward, right, up, yaw, pitch, roll], ``MultiBinary(8)`` keys, or
    ``Discrete(3)`` nav moves (:data:`NAV_ACTIONS`: forward one ``limits.forward``, turn ``limits.yaw_deg``
    left or right; the camera never pitches or rolls)."""
    if action_mode == "twist":
        return spaces.Box(-1.0, 1.0, (6,), np.float32)
    if action_mode == "keys":
        return spaces.MultiBinary(len(KEY_ORDER))
    if action_mode == "nav":
        return spaces.Discrete(len(NAV_ACTIONS))
    raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")


def observation_space(task: str, height: int, width: int, depth: bool, max_depth: float) -> spaces.Space:
    """uint8 RGB (H, W, 3); a Dict with "rgb" (+ "depth", + "goal") when the task or options need it."""
    rgb = spaces.Box(0, 255, (height, width, 3), np.uint8)
    goal = goal_space(task)
    if goal is None and not depth:
        return rgb
    entries: dict[str, spaces.Space] = {"rgb": rgb}
    if depth:
        entries["depth"] = spaces.Box(0.0, max_depth, (height, width, 1), np.float32)
    if goal is not None:
        entries["goal"] = goal
    return spaces.Dict(entries)


def keys_to_twist(keys: torch.Tensor) -> torch.Tensor:
    """(N, 8) pressed keys over "wasdijkl" -> (N, 6) normalised twist with the SANA-WM DSL's meaning.

    w/s: forward/back, d/a: right/left, i/k: pitch up/down, j/l: yaw left/right; one key step moves one
    DSL frame when the env's key speeds equal the DSL's (0.05 units, 1.2 degrees). The batched twin of
    :func:`sana_world.controllers.keys.keys_to_twist`'s plain mapping; the env applies the DSL's
    rotate-then-move and pitch-drop rules itself (``GTWorld.move(keys_mode=True)``).
    """
    k = keys.to(torch.float64)
    w, a, s, d, i, j, kk, l = k.unbind(-1)
    z = torch.zeros_like(w)
    return torch.stack([w - s, d - a, z, j - l, i - kk, z], dim=-1)


def validate_actions(actions: np.ndarray | torch.Tensor, action_mode: str, num_envs: int | None) -> torch.Tensor:
    """Check shape and finiteness; clip twists into [-1, 1]. Raises ValueError naming the problem."""
    if not isinstance(actions, torch.Tensor):
        arr = np.asarray(actions)
        if arr.dtype.kind not in "biuf":  # None, strings, ragged lists
            raise ValueError(f"action must be numeric ({action_space(action_mode)} for action_mode="
                             f"{action_mode!r}), got {type(actions).__name__} {actions!r:.60}")  # fmt: skip
        actions = arr
    a = torch.as_tensor(actions)
    if action_mode == "nav":
        return _nav_twists(a, num_envs)
    width = 6 if action_mode == "twist" else len(KEY_ORDER)
    expected = (width,) if num_envs is None else (num_envs, width)
    if tuple(a.shape) != expected:
        raise ValueError(f"action must have shape {expected} for action_mode={action_mode!r}, got {tuple(a.shape)}")
    if a.is_floating_point() and not bool(torch.isfinite(a).all()):
        bad = "NaN" if bool(torch.isnan(a).any()) else "inf"
        raise ValueError(f"action contains {bad}: {a.tolist()}; the env state was left unchanged")
    if action_mode == "twist":
        return a.to(torch.float64).clamp(-1.0, 1.0)
    if not bool(((a == 0) | (a == 1)).all()):
        raise ValueError(f"key actions must be 0/1 over {KEY_ORDER!r}, got {a.tolist()}")
    return keys_to_twist(a)


def _nav_twists(a: torch.Tensor, num_envs: int | None) -> torch.Tensor:
    """Nav actions as twists: one scalar -> (6,), (num_envs,) -> (num_envs, 6); integers in [0, 3) only."""
    expected = () if num_envs is None else (num_envs,)
    shape = tuple(a.shape)
    if shape != expected and not (num_envs is None and shape == (1,)):
        raise ValueError(f"action must have shape {expected} for action_mode='nav', got {shape}")
    if a.dtype == torch.bool or (a.is_floating_point() and not bool((a == a.round()).all())):
        raise ValueError(f"nav actions are integers in [0, 3) {NAV_ACTIONS}, got {a.tolist()}")
    idx = a.reshape(-1)
    if not bool(((idx >= 0) & (idx < len(NAV_ACTIONS))).all()):
        raise ValueError(f"nav actions are integers in [0, 3) {NAV_ACTIONS}, got {a.tolist()}")
    twists = _NAV_TWISTS.to(idx.device)[idx.long()]  # (n, 6), on the actions' device
    return twists[0] if num_envs is None else twists
