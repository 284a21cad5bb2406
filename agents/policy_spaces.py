"""Does a trained SB3 policy fit an env? The env kwargs its spaces imply (frame size, action mode) and the
checks ``ppo export`` and ``evaluate`` make before they run it (frames channel-first or channel-last)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["card_env_kwargs", "check_env_spaces", "check_observes", "same_spaces", "zip_env_kwargs"]


def zip_env_kwargs(model) -> dict[str, Any]:
    """The env kwargs a trained SB3 model's spaces imply, as :meth:`PPOTrainConfig.env_kwargs` writes them:
    ``width`` / ``height`` of its "rgb" frames (SB3 keeps images channel-first) and ``action_mode`` from its
    action space (left out for "twist")."""
    from gymnasium import spaces

    from sana_world.envs.spaces import ACTION_MODES, action_space

    obs = model.observation_space
    frames = obs["rgb"] if isinstance(obs, spaces.Dict) and "rgb" in obs.spaces else obs
    if not isinstance(frames, spaces.Box) or frames.dtype != np.uint8:
        raise ValueError(f"the model observes {obs}, not uint8 frames or a Dict with an 'rgb' frame: not a policy "
                         "from `ppo train`")
    shape = tuple(frames.shape)
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(f"the model's 'rgb' frames have shape {shape}, not (3, H, W) or (H, W, 3)")
    height, width = shape[1:] if shape[0] == 3 else shape[:2]
    modes = [m for m in ACTION_MODES if action_space(m) == model.action_space]
    if not modes:
        raise ValueError(f"the model acts in {model.action_space}, none of the env action modes {ACTION_MODES}")
    return {"width": int(width), "height": int(height), **({} if modes[0] == "twist" else {"action_mode": modes[0]})}


def card_env_kwargs(model, size: int | None = None, action_mode: str | None = None) -> dict[str, Any]:
    """:func:`zip_env_kwargs`, checked against a frame ``size`` and an ``action_mode`` a user gave (None: not
    given); ``ValueError`` saying which disagrees."""
    kwargs = zip_env_kwargs(model)
    found = (kwargs["width"], kwargs["height"])
    if size is not None and (size, size) != found:
        raise ValueError(f"size {size} (--size) disagrees with the model's {found[0]}x{found[1]} frames: drop it, "
                         "the frame size is read from the zip")
    mode = kwargs.get("action_mode", "twist")
    if action_mode is not None and action_mode != mode:
        raise ValueError(f"action mode {action_mode!r} (--action-mode) disagrees with the model's {mode!r} action "
                         f"space {model.action_space}: drop it, the action mode is read from the zip")
    return kwargs


def check_observes(model, env, env_id: str) -> None:
    """ValueError naming ``obs_size`` when the env's frames are not the size the model was trained on."""
    def frames(space):
        return space.spaces.get("rgb") if hasattr(space, "spaces") else space

    want, have = frames(getattr(model, "observation_space", None)), frames(env.observation_space)
    if getattr(want, "shape", None) is None or getattr(have, "shape", None) is None or len(want.shape) != 3:
        return
    side = lambda shape: shape[1] if shape[0] == 3 else shape[0]  # noqa: E731  channel-first or -last
    if side(want.shape) != side(have.shape):
        raise ValueError(f"{env_id} gives {side(have.shape)}² frames, the model was trained on "
                         f"{side(want.shape)}²: pass obs_size={side(want.shape)} (frames area-averaged)")


def _shapes(space) -> dict[str, tuple[int, ...]]:
    """Shape of each entry of an observation space ("" for a bare one), frames as the env's (H, W, 3)."""
    key = "rgb" if hasattr(space, "spaces") else ""
    out = {k: tuple(v.shape) for k, v in getattr(space, "spaces", {"": space}).items()}
    if len(out.get(key, ())) == 3 and out[key][0] == 3:
        out[key] = (*out[key][1:], 3)  # channel-first, as SB3 stores it -> the env's (H, W, 3)
    return out


def same_spaces(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """Whether (observation space, action space) pairs ``a`` and ``b`` are one policy's: equal actions and
    observation shapes, frames channel-last or channel-first (SB3's ``VecTransposeImage``)."""
    return _shapes(a[0]) == _shapes(b[0]) and a[1] == b[1]


def check_env_spaces(model, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """``ValueError`` unless ``gym.make(env_id, **env_kwargs)`` observes and acts in the model's spaces
    (frames channel-last or channel-first)."""
    import gymnasium as gym

    import sana_world  # noqa: F401

    env = gym.make(env_id, **env_kwargs)
    env_obs, env_act = env.observation_space, env.action_space
    env.close()
    if not same_spaces((env_obs, env_act), (model.observation_space, model.action_space)):
        raise ValueError(f"{env_id} observes {_shapes(env_obs)} and acts in {env_act}, the model "
                         f"{_shapes(model.observation_space)} and {model.action_space}: pass the --env-id it was "
                         "trained on")
