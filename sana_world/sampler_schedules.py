"""Noise schedules and time conventions shared by the samplers in :mod:`sana_world.samplers`.

Time conventions (one for each family, used everywhere in the package):

- **Flow matching** (SANA, SANA-Video, SANA-WM): ``x_sigma = (1 - sigma) * x0 + sigma * eps`` with
  ``sigma`` in [0, 1], and the model predicts ``v = eps - x0``. Samplers hand the denoiser ``sigma``
  itself. SANA transformers were trained on ``t = 1000 * sigma``; :func:`model_timestep` does that scaling
  and belongs in the thin wrapper around the network, never in the sampler.
- **TrigFlow** (SANA-Sprint): ``x_t = cos(t) * x0 + sin(t) * z`` with ``z ~ N(0, sigma_d^2 I)`` and the
  angle ``t`` in [0, pi/2]. Samplers hand the denoiser the angle ``t``.

A time value is either a scalar for the whole batch or a tensor per sample, per frame or per token.
:func:`expand_time` turns a time tensor into a view that broadcasts against a state ``x`` (B, ...).

Every schedule is a 1-D tensor of ``num_steps + 1`` times, decreasing, ending at the clean end (0).
Values are computed in float64 and then cast to ``dtype`` (float32 by default), which is how diffusers
builds its schedules too.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

NUM_TRAIN_TIMESTEPS = 1000
"""SANA models see ``t = NUM_TRAIN_TIMESTEPS * sigma``."""

SCM_MAX_TIMESTEP = 1.5708
"""Largest TrigFlow angle used by diffusers' ``SCMScheduler`` (pi/2 rounded up to 5 decimals)."""

SCM_TWO_STEP_INTERMEDIATE = 1.3
"""Middle angle of SANA-Sprint's 2-step schedule."""


# ---------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------


def check_num_steps(num_steps: int) -> None:
    """Raise ``ValueError`` unless ``num_steps`` is an int >= 1."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise ValueError(f"num_steps must be an int, got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")


def check_shift(shift: float) -> None:
    """Raise ``ValueError`` unless ``shift`` is a finite number > 0."""
    if isinstance(shift, bool) or not isinstance(shift, (int, float)):
        raise ValueError(f"shift must be a number, got {shift!r}")
    if not math.isfinite(shift) or shift <= 0.0:
        raise ValueError(f"shift must be finite and > 0, got {shift}")


# ---------------------------------------------------------------------------------------------------------
# Time conventions
# ---------------------------------------------------------------------------------------------------------


def shift_sigma(sigma: Tensor | float, shift: float) -> Tensor | float:
    """Resolution shift ``sigma' = s * sigma / (1 + (s - 1) * sigma)``; maps [0, 1] onto itself."""
    check_shift(shift)
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def model_timestep(sigma: Tensor, scale: float = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """The timestep a SANA transformer expects for flow time ``sigma``: ``scale * sigma`` (1000 * sigma).

    The result stays fractional; SANA models truncate it with ``.long()`` themselves.
    """
    return sigma * scale


def trigflow_to_flow_time(t: Tensor) -> Tensor:
    """Flow time of a TrigFlow angle: ``sigma = sin t / (sin t + cos t)`` (SANA-Sprint's conversion)."""
    s, c = torch.sin(t), torch.cos(t)
    return s / (s + c)


def expand_time(t: Tensor, x: Tensor) -> Tensor:
    """View ``t`` so that it broadcasts against ``x`` (B, ...), by appending singleton dims.

    ``t`` lines up with the *leading* dims of ``x``: (B,) -> (B, 1, ..., 1) and (B, T) against
    (B, T, C, H, W) -> (B, T, 1, 1, 1). For a (B, C, T, H, W) video pass per-frame times as
    (B, 1, T, 1, 1). A 0-dim ``t`` becomes (1, ..., 1).
    """
    if t.ndim > x.ndim:
        raise ValueError(f"time tensor of shape {tuple(t.shape)} has more dims than x {tuple(x.shape)}")
    t = t.reshape(*t.shape, *([1] * (x.ndim - t.ndim)))
    try:
        shape = torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError as err:
        shapes = f"{tuple(t.shape)} and {tuple(x.shape)}"
        raise ValueError(f"time and x do not broadcast: {shapes}") from err
    if shape != x.shape:
        raise ValueError(f"time of shape {tuple(t.shape)} would enlarge x {tuple(x.shape)} to {tuple(shape)}")
    return t


# ---------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------


def flow_sigmas(
    num_steps: int,
    shift: float,
    *,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Flow-Euler sigmas (num_steps + 1,), equal to ``FlowMatchEulerDiscreteScheduler(shift=shift)``.

    The unshifted grid runs linearly from 1 down to ``shift_sigma(1 / num_train_timesteps, shift)``, is
    shifted, and gets a final 0. diffusers takes that lower end from its already-shifted training grid and
    then shifts it again; this reproduces it so that the two samplers agree step for step.
    """
    check_num_steps(num_steps)
    check_shift(shift)
    sigma_min = shift_sigma(1.0 / num_train_timesteps, shift)
    grid = torch.linspace(1.0, sigma_min, num_steps, dtype=torch.float64)  # (N,)
    sigmas = torch.cat([shift_sigma(grid, shift), grid.new_zeros(1)])  # (N + 1,)
    return sigmas.to(device=device, dtype=dtype)


def dpm_flow_sigmas(
    num_steps: int,
    shift: float,
    *,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Flow-DPM-Solver sigmas (num_steps + 1,), equal to diffusers' ``DPMSolverMultistepScheduler``
    with ``use_flow_sigmas=True, flow_shift=shift`` and the default ``final_sigmas_type="zero"``.

    ``num_steps`` values spaced evenly from ``1 - 1/num_train_timesteps`` (0.999) down to, but excluding,
    0, each shifted, then a final 0.
    """
    check_num_steps(num_steps)
    check_shift(shift)
    top = 1.0 - 1.0 / num_train_timesteps
    grid = torch.linspace(top, 0.0, num_steps + 1, dtype=torch.float64)[:-1]  # (N,)
    sigmas = torch.cat([shift_sigma(grid, shift), grid.new_zeros(1)])  # (N + 1,)
    return sigmas.to(device=device, dtype=dtype)


def trigflow_timesteps(
    num_steps: int,
    *,
    max_timestep: float = SCM_MAX_TIMESTEP,
    intermediate_timesteps: tuple[float, ...] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """TrigFlow angles (num_steps + 1,) for SANA-Sprint, as diffusers' ``SCMScheduler`` sets them.

    - ``intermediate_timesteps=None``: 1 step -> [max, 0]; 2 steps -> [max, 1.3, 0] (Sprint's default);
      N >= 3 steps -> N + 1 values evenly spaced from ``max_timestep`` to 0.
    - Otherwise exactly ``num_steps - 1`` angles, strictly decreasing inside (0, max_timestep):
      ``[max, *intermediate_timesteps, 0]``. ``(0.7854,)`` gives the even 2-step grid.
    """
    check_num_steps(num_steps)
    if not math.isfinite(max_timestep) or not 0.0 < max_timestep <= SCM_MAX_TIMESTEP:
        raise ValueError(f"max_timestep must lie in (0, {SCM_MAX_TIMESTEP}], got {max_timestep}")
    if intermediate_timesteps is None:
        if num_steps == 2:
            intermediate_timesteps = (SCM_TWO_STEP_INTERMEDIATE,)
        else:
            grid = torch.linspace(max_timestep, 0.0, num_steps + 1, dtype=torch.float64)
            return grid.to(device=device, dtype=dtype)
    inner = tuple(float(v) for v in intermediate_timesteps)
    if len(inner) != num_steps - 1:
        raise ValueError(
            f"intermediate_timesteps needs num_steps - 1 = {num_steps - 1} values, got {len(inner)}: {inner}"
        )
    values = (max_timestep, *inner, 0.0)
    if any(not a > b for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"TrigFlow timesteps must decrease strictly from max_timestep to 0, got {values}")
    return torch.tensor(values, dtype=torch.float64).to(device=device, dtype=dtype)
