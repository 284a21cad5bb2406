"""Samplers for SANA-family models: Flow-Euler, Flow-DPM-Solver++ (2M) and TrigFlow (SANA-Sprint).

A sampler owns its schedule and receives the network as a plain callable, ``denoise(x, time) -> pred``:

- ``x`` is the state (B, ...), in float32 unless the noise came in float64.
- ``time`` always has leading dim B: (B,) for a schedule shared by the batch, or the per-sample,
  per-frame or per-token shape of a custom schedule, e.g. (B, 1, T, 1, 1) for a (B, C, T, H, W) video
  (diffusion forcing). :func:`~sana_world.sampler_schedules.expand_time` broadcasts it against ``x``.
- Flow samplers hand the denoiser ``sigma`` in [0, 1] and expect the velocity ``v = eps - x0``. A SANA
  transformer wrapper applies :func:`~sana_world.sampler_schedules.model_timestep` (1000 * sigma) itself.
- :class:`TrigFlowSampler` hands the denoiser the *unit-scale* state ``x_t / sigma_d`` and the angle ``t``
  and expects the raw TrigFlow output ``F``; the sampler applies ``x0 = cos(t) x_t - sin(t) sigma_d F``.
  :func:`flow_to_trigflow` turns a flow denoiser (a SANA teacher, or a Sprint student trained in the
  flow parameterisation) into such a denoiser.

``sample(denoise, noise, generator=None, progress=False, schedule=None)`` starts from standard normal
``noise`` (B, ...) and returns the state at the schedule's last time: the clean sample ``x0`` for the
built-in schedules, which end at 0. ``schedule`` (N + 1, *time_shape) overrides the built-in one with
per-element times. The loops run no host syncs: one Python iteration and one denoiser call per step.

Example:
    >>> import torch
    >>> from sana_world.samplers import FlowEulerSampler
    >>> target = torch.ones(2, 4)
    >>> x0 = FlowEulerSampler(num_steps=4, shift=3.0).sample(
    ...     lambda x, s: (x - target) / s[:, None], torch.randn(2, 4))
    >>> bool(torch.allclose(x0, target, atol=1e-5))
    True
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sana_world.sampler_schedules import (
    SCM_MAX_TIMESTEP,
    check_num_steps,
    check_shift,
    dpm_flow_sigmas,
    expand_time,
    flow_sigmas,
    trigflow_timesteps,
    trigflow_to_flow_time,
)

Tensor = torch.Tensor
Denoiser = Callable[[Tensor, Tensor], Tensor]
Gen = torch.Generator | None
Device = torch.device | str | None

__all__ = [
    "Denoiser",
    "FlowDPMSolverConfig",
    "FlowDPMSolverSampler",
    "FlowEulerConfig",
    "FlowEulerSampler",
    "Sampler",
    "TrigFlowConfig",
    "TrigFlowSampler",
    "cfg_denoiser",
    "flow_to_trigflow",
]


def _step_times(row: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """One schedule row -> (time for the denoiser with leading dim B, view that broadcasts against x)."""
    if row.ndim == 0:
        return row.expand(x.shape[0]), row
    row = row.expand(x.shape[0], *row.shape[1:])
    return row, row.reshape(*row.shape, *([1] * (x.ndim - row.ndim)))


def _checked(pred: Tensor, x: Tensor, what: str) -> Tensor:
    if pred.shape != x.shape:
        raise ValueError(f"{what} returned shape {tuple(pred.shape)}, expected {tuple(x.shape)}")
    return pred


class Sampler(ABC):
    """Base class: a schedule of ``num_steps + 1`` times and a loop that follows it."""

    time_max: float = 1.0  # largest time a schedule may hold

    @property
    @abstractmethod
    def num_steps(self) -> int:
        """Denoiser calls per sample with the built-in schedule."""

    @abstractmethod
    def schedule(self, device: Device = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """The built-in schedule (num_steps + 1,), decreasing to 0."""

    @abstractmethod
    def _run(
        self, denoise: Denoiser, x: Tensor, sched: Tensor, generator: Gen, steps: Iterable[int]
    ) -> Tensor:
        """Follow ``sched`` from state ``x``; ``steps`` yields the step indices."""

    def sample(
        self,
        denoise: Denoiser,
        noise: Tensor,
        generator: torch.Generator | None = None,
        progress: bool = False,
        *,
        schedule: Tensor | None = None,
    ) -> Tensor:
        """Run the sampler from standard normal ``noise`` (B, ...) and return the final state (B, ...).

        ``schedule`` (N + 1,) or (N + 1, *time_shape), decreasing along dim 0 (equal neighbours are fine:
        an element whose time stays put is left unchanged), replaces the built-in schedule. ``time_shape``
        starts with 1 or B and lines up with the leading dims of ``noise`` as in ``expand_time``.
        """
        if noise.ndim < 1 or not noise.is_floating_point():
            got = f"{noise.dtype} {tuple(noise.shape)}"
            raise ValueError(f"noise must be a floating tensor (B, ...), got {got}")
        # 1. fp32 state (fp64 stays fp64)
        dtype = torch.promote_types(noise.dtype, torch.float32)
        x = noise.to(dtype)
        # 2. the schedule, checked once before the loop (the only host sync)
        if schedule is None:
            sched = self.schedule(x.device, dtype)
        else:
            sched = self._check_schedule(schedule, x)
        steps = tqdm(range(sched.shape[0] - 1), desc=type(self).__name__, disable=not progress)
        return self._run(denoise, x, sched, generator, steps)

    def _check_schedule(self, schedule: Tensor, x: Tensor) -> Tensor:
        if not isinstance(schedule, Tensor) or not schedule.is_floating_point():
            raise ValueError("schedule must be a floating tensor (N + 1, *time_shape)")
        if schedule.ndim < 1 or schedule.shape[0] < 2:
            raise ValueError(f"schedule needs N + 1 >= 2 rows, got shape {tuple(schedule.shape)}")
        if schedule.ndim > 1:
            if schedule.shape[1] not in (1, x.shape[0]):
                rows = tuple(schedule.shape[1:])
                raise ValueError(f"schedule rows {rows} must start with 1 or B={x.shape[0]}")
            expand_time(schedule[0].expand(x.shape[0], *schedule.shape[2:]), x)
        if bool(((schedule < 0) | (schedule > self.time_max) | schedule.isnan()).any()):
            raise ValueError(f"schedule values must lie in [0, {self.time_max}]")
        if bool((schedule[1:] > schedule[:-1]).any()):
            raise ValueError("schedule must not increase from one row to the next")
        return schedule.to(device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------------------------------------------
# Flow-Euler
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowEulerConfig:
    """Euler on the flow ODE, as diffusers' ``FlowMatchEulerDiscreteScheduler(shift=shift)``."""

    num_steps: int = 28
    shift: float = 3.0  # 3.0 for SANA 1.6B / 1.5, 4.0 for 0.6B at 1024^2

    def __post_init__(self) -> None:
        check_num_steps(self.num_steps)
        check_shift(self.shift)

    def build(self) -> FlowEulerSampler:
        return FlowEulerSampler(**dataclasses.asdict(self))


class FlowEulerSampler(Sampler):
    """``x <- x + (sigma_next - sigma) * v`` along :func:`flow_sigmas`."""

    def __init__(self, num_steps: int = 28, shift: float = 3.0) -> None:
        self.config = FlowEulerConfig(num_steps, shift)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def schedule(self, device: Device = None, dtype: torch.dtype = torch.float32) -> Tensor:
        return flow_sigmas(self.config.num_steps, self.config.shift, device=device, dtype=dtype)

    def _run(
        self, denoise: Denoiser, x: Tensor, sched: Tensor, generator: Gen, steps: Iterable[int]
    ) -> Tensor:
        for i in steps:
            # 1. sigma of this step and the next: denoiser time (B, ...) and views against x
            s_in, s = _step_times(sched[i], x)
            _, s_next = _step_times(sched[i + 1], x)
            # 2. velocity v = eps - x0 at sigma
            v = _checked(denoise(x, s_in), x, "denoise")  # (B, ...)
            # 3. straight-line step to the next sigma
            x = x + (s_next - s) * v
        return x


# ---------------------------------------------------------------------------------------------------------
# Flow-DPM-Solver++ (multistep)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowDPMSolverConfig:
    """DPM-Solver++ multistep on flow predictions, as diffusers' ``DPMSolverMultistepScheduler(
    use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift, solver_order=order)``
    with its other defaults (midpoint solver, ``final_sigmas_type="zero"``, ``lower_order_final``).

    The first step has no history and the last step (into sigma = 0) is always first order, so at
    ``order=2`` the 2nd-order update runs on steps 2 .. N-1.
    """

    num_steps: int = 20
    shift: float = 3.0
    order: int = 2  # 1 = DDIM-like first order, 2 = DPM-Solver++(2M)

    def __post_init__(self) -> None:
        check_num_steps(self.num_steps)
        check_shift(self.shift)
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {self.order!r}")

    def build(self) -> FlowDPMSolverSampler:
        return FlowDPMSolverSampler(**dataclasses.asdict(self))


def _log_snr(sigma: Tensor) -> Tensor:
    """lambda = log(alpha / sigma) with alpha = 1 - sigma; +-inf at the ends."""
    return torch.log(1.0 - sigma) - torch.log(sigma)


class FlowDPMSolverSampler(Sampler):
    """Flow-DPM-Solver: ``alpha = 1 - sigma``, data prediction ``x0 = x - sigma * v``, DPM-Solver++(2M).

    Per element, with ``r = sigma_t / sigma_s`` and ``c = alpha_t - r * alpha_s`` (= -alpha_t (e^-h - 1)):
    ``x_t = r * x_s + c * (D0 + D1 / 2)``, ``D0 = x0_s``, ``D1 = (x0_s - x0_prev) * h / h_prev``; D1 = 0 on
    first-order steps and wherever an element's log-SNR steps are not finite and positive (an element
    already at sigma = 0, or whose sigma did not move), so per-frame schedules stay finite.
    """

    def __init__(self, num_steps: int = 20, shift: float = 3.0, order: int = 2) -> None:
        self.config = FlowDPMSolverConfig(num_steps, shift, order)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def schedule(self, device: Device = None, dtype: torch.dtype = torch.float32) -> Tensor:
        return dpm_flow_sigmas(self.config.num_steps, self.config.shift, device=device, dtype=dtype)

    def _run(
        self, denoise: Denoiser, x: Tensor, sched: Tensor, generator: Gen, steps: Iterable[int]
    ) -> Tensor:
        n = sched.shape[0] - 1
        x0_prev = x  # replaced before first use: step 0 is first order
        for i in steps:
            # 1. sigma now (s) and next (t): denoiser time (B, ...) and views against x
            s_in, s = _step_times(sched[i], x)
            _, t = _step_times(sched[i + 1], x)
            # 2. data prediction from the velocity
            v = _checked(denoise(x, s_in), x, "denoise")  # (B, ...)
            x0 = x - s * v
            # 3. first-order coefficients, written without log-SNR so that sigma = 0 stays finite
            ratio = torch.where(s > 0, t / s, 1.0)  # sigma_t / sigma_s (s = 0 implies t = 0)
            coef = (1.0 - t) - ratio * (1.0 - s)
            d = x0
            # 4. 2nd-order (midpoint) correction from the previous x0, not on the first or last step
            if self.config.order == 2 and 0 < i < n - 1:
                _, s_prev = _step_times(sched[i - 1], x)
                h = _log_snr(t) - _log_snr(s)
                h_prev = _log_snr(s) - _log_snr(s_prev)
                ok = torch.isfinite(h) & torch.isfinite(h_prev) & (h > 0) & (h_prev > 0)
                inv_r = torch.where(ok, h / h_prev, 0.0)  # 1 / r0, 0 where the element falls back
                d = x0 + 0.5 * inv_r * (x0 - x0_prev)
            # 5. step to sigma_t
            x = ratio * x + coef * d
            x0_prev = x0
        return x


# ---------------------------------------------------------------------------------------------------------
# TrigFlow (SANA-Sprint, sCM)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrigFlowConfig:
    """Few-step TrigFlow sampling, as diffusers' ``SCMScheduler`` driven by ``SanaSprintPipeline``.

    ``intermediate_timesteps=None`` picks Sprint's defaults (see :func:`trigflow_timesteps`); otherwise
    give the ``num_steps - 1`` angles between ``max_timestep`` and 0. With the unit-scale denoiser
    convention ``sigma_data`` cancels out of the trajectory (as in the Sprint pipeline); it sets the scale
    of the internal TrigFlow state and is kept equal to the training value.
    """

    num_steps: int = 2
    sigma_data: float = 0.5
    max_timestep: float = SCM_MAX_TIMESTEP
    intermediate_timesteps: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.sigma_data) or self.sigma_data <= 0.0:
            raise ValueError(f"sigma_data must be finite and > 0, got {self.sigma_data}")
        if self.intermediate_timesteps is not None:
            inner = tuple(float(v) for v in self.intermediate_timesteps)
            object.__setattr__(self, "intermediate_timesteps", inner)
        trigflow_timesteps(  # raises on a bad step count or angles
            self.num_steps, max_timestep=self.max_timestep, intermediate_timesteps=self.intermediate_timesteps
        )

    def build(self) -> TrigFlowSampler:
        return TrigFlowSampler(**dataclasses.asdict(self))


class TrigFlowSampler(Sampler):
    """Each step: ``x0 = cos(s) x - sin(s) sigma_d F(x / sigma_d, s)``, then re-noise to the next angle
    ``x = cos(t) x0 + sin(t) sigma_d eps'`` with fresh ``eps'`` from ``generator`` (drawn on every step,
    the last included, where ``sin 0 = 0`` removes it; this matches diffusers' draws one for one).
    The state starts at ``sigma_d * noise`` and the result is returned divided by ``sigma_d``.
    """

    time_max = SCM_MAX_TIMESTEP

    def __init__(
        self,
        num_steps: int = 2,
        sigma_data: float = 0.5,
        max_timestep: float = SCM_MAX_TIMESTEP,
        intermediate_timesteps: tuple[float, ...] | None = None,
    ) -> None:
        self.config = TrigFlowConfig(num_steps, sigma_data, max_timestep, intermediate_timesteps)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def schedule(self, device: Device = None, dtype: torch.dtype = torch.float32) -> Tensor:
        c = self.config
        return trigflow_timesteps(
            c.num_steps,
            max_timestep=c.max_timestep,
            intermediate_timesteps=c.intermediate_timesteps,
            device=device,
            dtype=dtype,
        )

    def _run(
        self, denoise: Denoiser, x: Tensor, sched: Tensor, generator: Gen, steps: Iterable[int]
    ) -> Tensor:
        sd = self.config.sigma_data
        x = sd * x  # TrigFlow state, noise std sigma_d
        noise_device = x.device if generator is None else generator.device
        for i in steps:
            # 1. angle now (s) and next (t): denoiser time (B, ...) and views against x
            s_in, s = _step_times(sched[i], x)
            _, t = _step_times(sched[i + 1], x)
            # 2. raw TrigFlow output F at the unit-scale input
            f = _checked(denoise(x / sd, s_in), x, "denoise")  # (B, ...)
            # 3. consistency jump to the clean estimate
            x0 = torch.cos(s) * x - torch.sin(s) * (sd * f)
            # 4. re-noise to angle t with fresh noise
            eps = torch.randn(x.shape, generator=generator, device=noise_device, dtype=x.dtype).to(x.device)
            x = torch.cos(t) * x0 + torch.sin(t) * (sd * eps)
        return x / sd


# ---------------------------------------------------------------------------------------------------------
# Denoiser adapters
# ---------------------------------------------------------------------------------------------------------


def flow_to_trigflow(denoise_flow: Denoiser) -> Denoiser:
    """Wrap a flow denoiser ``v(x_f, sigma)`` as a TrigFlow denoiser ``F(x_t / sigma_d, t)`` (SANA-Sprint).

    With ``u = x_t / sigma_d`` and ``sigma = sin t / (sin t + cos t)``, the flow model sees
    ``x_f = u * n`` where ``n = sqrt(sigma^2 + (1 - sigma)^2)`` (= 1 / (sin t + cos t)), i.e. exactly the
    flow interpolant of the same data and noise, and
    ``F = ((1 - 2 sigma) x_f + (1 - 2 sigma + 2 sigma^2) v) / n``. The flow denoiser gets ``sigma`` with
    the shape of ``t``.
    """

    def denoise_trigflow(u: Tensor, t: Tensor) -> Tensor:
        # 1. flow time, same shape as t, and its view against u (B, ...)
        sigma = trigflow_to_flow_time(t)
        sg = expand_time(sigma, u)
        norm = torch.sqrt(sg * sg + (1.0 - sg) ** 2)
        # 2. the flow model on its own interpolant
        x_f = u * norm
        v = _checked(denoise_flow(x_f, sigma), u, "denoise_flow")  # (B, ...)
        # 3. combine into the TrigFlow output
        return ((1.0 - 2.0 * sg) * x_f + (1.0 - 2.0 * sg + 2.0 * sg * sg) * v) / norm

    return denoise_trigflow


def cfg_denoiser(denoise: Denoiser | tuple[Denoiser, Denoiser], guidance_scale: float) -> Denoiser:
    """Classifier-free guidance, ``pred = pred_uncond + w * (pred_cond - pred_uncond)``.

    ``denoise`` is either a pair ``(uncond, cond)`` of denoisers (two calls per step; ``w = 1`` returns
    ``cond`` itself), or one denoiser run on the doubled batch ``[x; x]`` (2B, ...) with times doubled the
    same way, whose first half is unconditional and second half conditional: the SANA pipelines' layout
    (negative prompt first), one call per step.
    """
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise ValueError(f"guidance_scale must be a number, got {guidance_scale!r}")
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
    w = float(guidance_scale)

    if isinstance(denoise, tuple):
        if len(denoise) != 2 or not all(callable(d) for d in denoise):
            raise ValueError("a denoiser pair must be (uncond, cond), two callables")
        uncond, cond = denoise
        if w == 1.0:
            return cond

        def guided_pair(x: Tensor, t: Tensor) -> Tensor:
            pred_u = uncond(x, t)  # (B, ...)
            return pred_u + w * (cond(x, t) - pred_u)

        return guided_pair

    if not callable(denoise):
        raise ValueError(f"denoise must be callable or an (uncond, cond) pair, got {type(denoise).__name__}")

    def guided_batch(x: Tensor, t: Tensor) -> Tensor:
        pred = denoise(torch.cat([x, x]), torch.cat([t, t]))  # (2B, ...)
        if pred.shape[0] != 2 * x.shape[0]:
            raise ValueError(f"doubled-batch denoiser returned batch {pred.shape[0]}, not {2 * x.shape[0]}")
        pred_u, pred_c = pred.chunk(2)
        return pred_u + w * (pred_c - pred_u)

    return guided_batch
