"""Observation and action spaces of the sana-world environments (shared by GT and dream envs)."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from sana_world.controllers.keys import KEY_ORDER
from sana_world.envs.tasks import goal_space


def action_space(action_mode: str) -> spaces.Space:
    """``Box(-1, 1, (6,))`` twist [forward, right, up, yaw, pitch, roll], or ``MultiBinary(8)`` keys."""
    if action_mode == "twist":
        return spaces.Box(-1.0, 1.0, (6,), np.float32)
    if action_mode == "keys":
        return spaces.MultiBinary(len(KEY_ORDER))
    raise ValueError(f"action_mode must be 'twist' or 'keys', got {action_mode!r}")


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
    a = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
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
