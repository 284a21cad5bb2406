"""Samplers: parity with diffusers' schedulers, per-sample/per-frame times, CFG, analytic targets, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, SCMScheduler

from sana_world import sampler_schedules as S
from sana_world.samplers import (
    FlowDPMSolverConfig,
    FlowDPMSolverSampler,
    FlowEulerConfig,
    FlowEulerSampler,
    TrigFlowConfig,
    TrigFlowSampler,
    cfg_denoiser,
    flow_to_trigflow,
)

TOL = 1e-5  # max |ours - diffusers| / max |diffusers|
B, C, H, W = 3, 4, 5, 6


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def analytic_denoiser(seed: int = 0, gain: float = 0.5):
    """Nonlinear, sample-dependent ``pred(x, time)``: channel mixing (dim 1) only, so samples and frames
    stay independent; the time enters through ``expand_time``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, C, generator=g, dtype=torch.float64) / math.sqrt(C)

    def denoise(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        tt = S.expand_time(time, x).to(x.dtype)
        mixed = torch.einsum("bc...,cd->bd...", x, w.to(x.dtype))
        return torch.tanh(mixed) * (gain + tt) + 0.3 * x * torch.cos(3.0 * tt)

    return denoise


def make_noise(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
# diffusers reference loops (the way SanaPipeline / SanaSprintPipeline drive them)
# ---------------------------------------------------------------------------------------------------------


def run_diffusers_flow(scheduler, denoise, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    scheduler.set_timesteps(num_steps)
    scheduler.set_begin_index(0)
    x = noise.clone()
    for i, t in enumerate(scheduler.timesteps):
        v = denoise(x, scheduler.sigmas[i].expand(x.shape[0]))
        x = scheduler.step(v, t, x).prev_sample
    return x


def run_diffusers_scm(trig_denoise, noise: torch.Tensor, num_steps: int, seed: int) -> torch.Tensor:
    scheduler = SCMScheduler()
    scheduler.set_timesteps(num_steps, intermediate_timesteps=1.3 if num_steps == 2 else None)
    scheduler.set_begin_index(0)
    sd = scheduler.config.sigma_data
    generator = torch.Generator().manual_seed(seed)
    latents = noise * sd
    for t in scheduler.timesteps[:-1]:
        pred = trig_denoise(latents / sd, t.expand(latents.shape[0])) * sd
        latents, denoised = scheduler.step(pred, t, latents, generator=generator, return_dict=False)
    return denoised / sd


def sprint_pipeline_conversion(flow_denoise):
    """The teacher-to-TrigFlow conversion written out as SanaSprintPipeline's loop does it."""

    def trig(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scm_t = torch.sin(t) / (torch.cos(t) + torch.sin(t))
        e = scm_t.view(-1, 1, 1, 1)
        inp = u * torch.sqrt(e**2 + (1 - e) ** 2)
        v = flow_denoise(inp, scm_t)
        return ((1 - 2 * e) * inp + (1 - 2 * e + 2 * e**2) * v) / torch.sqrt(e**2 + (1 - e) ** 2)

    return trig


# ---------------------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [1.0, 3.0, 4.0])
@pytest.mark.parametrize("n", [1, 2, 5, 20, 28])
def test_schedules_match_diffusers(n: int, shift: float):
    euler = FlowMatchEulerDiscreteScheduler(shift=shift)
    euler.set_timesteps(n)
    torch.testing.assert_close(S.flow_sigmas(n, shift), euler.sigmas, atol=1e-6, rtol=0)
    dpm = DPMSolverMultistepScheduler(
        use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift
    )
    dpm.set_timesteps(n)
    torch.testing.assert_close(S.dpm_flow_sigmas(n, shift), dpm.sigmas, atol=1e-6, rtol=0)
    scm = SCMScheduler()
    scm.set_timesteps(n, intermediate_timesteps=1.3 if n == 2 else None)
    torch.testing.assert_close(S.trigflow_timesteps(n), scm.timesteps, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shift", [3.0, 4.0])
@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_flow_euler_matches_diffusers(n: int, shift: float):
    denoise, noise = analytic_denoiser(), make_noise(B, C, H, W)
    ref = run_diffusers_flow(FlowMatchEulerDiscreteScheduler(shift=shift), denoise, noise, n)
    ours = FlowEulerSampler(num_steps=n, shift=shift).sample(denoise, noise)
    assert rel_err(ours, ref) < TOL
    assert rel_err(ours, noise) > 0.1  # the sampler moved


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("shift", [3.0, 4.0])
@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_flow_dpm_solver_matches_diffusers(n: int, shift: float, order: int):
    denoise, noise = analytic_denoiser(), make_noise(B, C, H, W)
    scheduler = DPMSolverMultistepScheduler(
        use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift, solver_order=order
    )
    ref = run_diffusers_flow(scheduler, denoise, noise, n)
    ours = FlowDPMSolverSampler(num_steps=n, shift=shift, order=order).sample(denoise, noise)
    assert rel_err(ours, ref) < TOL


def test_dpm_orders_differ():
    """Guards the parity test: at 5 steps the 2nd-order correction is visible."""
    denoise, noise = analytic_denoiser(), make_noise(B, C, H, W)
    first = FlowDPMSolverSampler(num_steps=5, order=1).sample(denoise, noise)
    second = FlowDPMSolverSampler(num_steps=5, order=2).sample(denoise, noise)
    assert rel_err(first, second) > 1e-3


@pytest.mark.parametrize("teacher", [False, True])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_trigflow_matches_scm(n: int, teacher: bool):
    noise = make_noise(B, C, H, W)
    if teacher:
        flow = analytic_denoiser(gain=0.2)
        ours_denoise, ref_denoise = flow_to_trigflow(flow), sprint_pipeline_conversion(flow)
    else:
        ours_denoise = ref_denoise = analytic_denoiser()
    ref = run_diffusers_scm(ref_denoise, noise, n, seed=7)
    sampler = TrigFlowSampler(num_steps=n)
    ours = sampler.sample(ours_denoise, noise, generator=torch.Generator().manual_seed(7))
    assert rel_err(ours, ref) < TOL
    if n > 1:  # the re-noising noise matters: another seed gives another sample
        other = sampler.sample(ours_denoise, noise, generator=torch.Generator().manual_seed(8))
        assert rel_err(other, ref) > 1e-3


# ---------------------------------------------------------------------------------------------------------
# Per-sample and per-frame times
# ---------------------------------------------------------------------------------------------------------


def offset_schedule(base: torch.Tensor, offset: int) -> torch.Tensor:
    """Column of ``base`` (N + 1,) started ``offset`` rows later and held at its end."""
    idx = (torch.arange(base.shape[0]) + offset).clamp(max=base.shape[0] - 1)
    return base[idx]


def per_sample_schedules(kind: str, n: int) -> tuple[object, torch.Tensor]:
    if kind == "euler":
        cols = [offset_schedule(S.flow_sigmas(n, s), k) for s, k in [(3.0, 0), (4.0, 1), (1.5, 3)]]
        return FlowEulerSampler(n), torch.stack(cols, dim=1)
    if kind == "dpm":
        cols = [offset_schedule(S.dpm_flow_sigmas(n, s), k) for s, k in [(3.0, 0), (4.0, 2), (1.5, 3)]]
        return FlowDPMSolverSampler(n), torch.stack(cols, dim=1)
    mids = [(1.3, 0.9, 0.4, 0.2), (1.1, 1.0, 0.5, 0.1), (1.5, 0.6, 0.3, 0.25)]
    cols = [
        offset_schedule(S.trigflow_timesteps(n, intermediate_timesteps=m), k) for m, k in zip(mids, (0, 1, 2))
    ]
    return TrigFlowSampler(n, intermediate_timesteps=mids[0]), torch.stack(cols, dim=1)


@pytest.mark.parametrize("kind", ["euler", "dpm", "trig"])
def test_per_sample_schedules(kind: str):
    """A batch whose samples follow their own schedules equals running each schedule alone."""
    sampler, sched = per_sample_schedules(kind, 5)  # (6, B)
    denoise, noise = analytic_denoiser(), make_noise(B, C, H, W)
    seen: list[tuple[int, ...]] = []

    def spy(x, t):
        seen.append(tuple(t.shape))
        return denoise(x, t)

    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    batch = sampler.sample(spy, noise, gen(), schedule=sched)
    assert seen == [(B,)] * 5
    for b in range(B):
        # the whole batch under sample b's schedule: same noise draws, so row b must agree
        alone = sampler.sample(denoise, noise, gen(), schedule=sched[:, b])
        torch.testing.assert_close(batch[b], alone[b], atol=1e-6, rtol=1e-6)
        if kind != "trig":  # flow samplers are deterministic: a true one-sample run works too
            single = sampler.sample(denoise, noise[b : b + 1], schedule=sched[:, b : b + 1])
            torch.testing.assert_close(batch[b], single[0], atol=1e-6, rtol=1e-6)
    assert torch.isfinite(batch).all()


@pytest.mark.parametrize("kind", ["euler", "dpm", "trig"])
def test_per_frame_times_on_video(kind: str):
    """Per-frame schedules (N + 1, B, 1, T, 1, 1) on a (B, C, T, H, W) state: frame j follows its own."""
    t_frames = 4
    sampler, per_sample = per_sample_schedules(kind, 5)  # (6, B): reuse as one column per frame
    cols = torch.cat([per_sample, per_sample[:, :1]], dim=1)  # (6, T)
    sched = cols[:, None, None, :, None, None].expand(6, B, 1, t_frames, 1, 1).contiguous()
    denoise, noise = analytic_denoiser(), make_noise(B, C, t_frames, H, W)
    seen: list[tuple[int, ...]] = []

    def spy(x, t):
        seen.append(tuple(t.shape))
        return denoise(x, t)

    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    video = sampler.sample(spy, noise, gen(), schedule=sched)
    assert seen == [(B, 1, t_frames, 1, 1)] * 5
    for j in range(t_frames):
        alone = sampler.sample(denoise, noise, gen(), schedule=cols[:, j])
        torch.testing.assert_close(video[:, :, j], alone[:, :, j], atol=1e-6, rtol=1e-6)
    # frames 0 and 3 share a schedule, frame 2 does not
    assert rel_err(video[:, :, 0], video[:, :, 2]) > 1e-2


def test_expand_time_shapes():
    x = torch.zeros(2, 3, 4, 5, 6)
    assert S.expand_time(torch.zeros(2), x).shape == (2, 1, 1, 1, 1)
    assert S.expand_time(torch.zeros(2, 3), x).shape == (2, 3, 1, 1, 1)
    assert S.expand_time(torch.zeros(2, 1, 4, 1, 1), x).shape == (2, 1, 4, 1, 1)
    with pytest.raises(ValueError, match="broadcast"):
        S.expand_time(torch.zeros(2, 4), x)  # per-frame times of a (B, C, T, H, W) need (B, 1, T, 1, 1)
    with pytest.raises(ValueError, match="enlarge"):
        S.expand_time(torch.zeros(2, 1, 4, 1, 7), torch.zeros(2, 3, 4, 5, 1))


# ---------------------------------------------------------------------------------------------------------
# Time convention, CFG, analytic targets
# ---------------------------------------------------------------------------------------------------------


def test_denoiser_gets_sigma_and_model_timestep_scales_it():
    got: list[torch.Tensor] = []
    denoise = analytic_denoiser()

    def spy(x, t):
        got.append(t.clone())
        return denoise(x, t)

    sampler = FlowEulerSampler(num_steps=4, shift=3.0)
    sampler.sample(spy, make_noise(B, C, H, W))
    expected = sampler.schedule()[:-1]
    torch.testing.assert_close(torch.stack(got), expected[:, None].expand(4, B))
    assert float(S.model_timestep(torch.tensor(0.25))) == 250.0
    assert float(S.trigflow_to_flow_time(torch.tensor(math.pi / 4))) == pytest.approx(0.5)


def test_cfg():
    cond, uncond = analytic_denoiser(seed=0), analytic_denoiser(seed=1)
    x, t = make_noise(B, C, H, W), torch.rand(B)

    def batched(x2, t2):  # first half unconditional, second half conditional
        return torch.cat([uncond(x2[:B], t2[:B]), cond(x2[B:], t2[B:])])

    assert cfg_denoiser((uncond, cond), 1.0) is cond
    torch.testing.assert_close(cfg_denoiser(batched, 1.0)(x, t), cond(x, t), atol=1e-6, rtol=1e-6)
    expected = uncond(x, t) + 4.5 * (cond(x, t) - uncond(x, t))
    torch.testing.assert_close(cfg_denoiser(batched, 4.5)(x, t), expected)
    torch.testing.assert_close(cfg_denoiser((uncond, cond), 4.5)(x, t), expected)
    # scale 1 through a whole sampler equals the conditional path
    noise, sampler = make_noise(B, C, H, W), FlowDPMSolverSampler(num_steps=6)
    torch.testing.assert_close(
        sampler.sample(cfg_denoiser(batched, 1.0), noise), sampler.sample(cond, noise), atol=1e-6, rtol=1e-6
    )
    assert rel_err(sampler.sample(cfg_denoiser(batched, 4.5), noise), sampler.sample(cond, noise)) > 1e-2


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 3, 28])
def test_exact_velocity_of_point_targets_lands_on_them(n: int, shift: float):
    target = make_noise(B, C, H, W, seed=9) * 2.0  # one point mass per sample

    def velocity(x, sigma):
        return (x - target) / S.expand_time(sigma, x)

    noise = make_noise(B, C, H, W)
    for sampler in (FlowEulerSampler(n, shift), FlowDPMSolverSampler(n, shift)):
        torch.testing.assert_close(sampler.sample(velocity, noise), target, atol=1e-5, rtol=0)
    gen = torch.Generator().manual_seed(0)
    out = TrigFlowSampler(n, intermediate_timesteps=None).sample(flow_to_trigflow(velocity), noise, gen)
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)


def test_exact_velocity_of_gaussian_target():
    """Target N(mu, s^2): the ODE maps eps to mu + s * eps; Euler converges to it, DPM-Solver++(2M) faster."""
    mu, s = 1.5, 0.3
    noise = make_noise(64, 2, seed=2)

    def velocity(x, sigma):
        sg = S.expand_time(sigma, x)
        var = (1 - sg) ** 2 * s**2 + sg**2
        return -mu + (sg - (1 - sg) * s**2) / var * (x - (1 - sg) * mu)

    exact = mu + s * noise
    err = lambda out: float((out - exact).abs().max())  # noqa: E731
    assert err(FlowEulerSampler(400, shift=1.0).sample(velocity, noise)) < 5e-3
    assert err(FlowEulerSampler(4, shift=1.0).sample(velocity, noise)) > 5e-2
    # DPM-Solver++(2M): 10x closer than first order at 20 steps (its last step, into sigma = 0, is first
    # order, as in diffusers, which bounds how close it gets)
    dpm1 = err(FlowDPMSolverSampler(20, shift=1.0, order=1).sample(velocity, noise))
    dpm2 = err(FlowDPMSolverSampler(20, shift=1.0, order=2).sample(velocity, noise))
    assert dpm2 < 1e-2 and dpm2 < 0.2 * dpm1


# ---------------------------------------------------------------------------------------------------------
# Configs and errors
# ---------------------------------------------------------------------------------------------------------


def test_configs_build_and_are_frozen():
    configs = (
        FlowEulerConfig(5, 4.0),
        FlowDPMSolverConfig(7, 3.0, 1),
        TrigFlowConfig(3, 0.5, 1.5, [1.0, 0.5]),
    )
    for cfg in configs:
        assert cfg.build().config == cfg
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.num_steps = 2  # type: ignore[misc]
    assert TrigFlowConfig(3, intermediate_timesteps=[1.0, 0.5]).intermediate_timesteps == (1.0, 0.5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_num_steps_raise(bad):
    for build in (FlowEulerSampler, FlowDPMSolverSampler, TrigFlowSampler):
        with pytest.raises(ValueError, match="num_steps"):
            build(bad)
    for fn in (lambda n: S.flow_sigmas(n, 3.0), lambda n: S.dpm_flow_sigmas(n, 3.0), S.trigflow_timesteps):
        with pytest.raises(ValueError, match="num_steps"):
            fn(bad)


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf"), "3"])
def test_bad_shift_raises(bad):
    for build in (FlowEulerSampler, FlowDPMSolverSampler):
        with pytest.raises(ValueError, match="shift"):
            build(4, bad)
    with pytest.raises(ValueError, match="shift"):
        S.flow_sigmas(4, bad)


def test_other_bad_arguments_raise():
    with pytest.raises(ValueError, match="order"):
        FlowDPMSolverSampler(4, 3.0, order=3)
    with pytest.raises(ValueError, match="sigma_data"):
        TrigFlowSampler(2, sigma_data=0.0)
    with pytest.raises(ValueError, match="num_steps - 1"):
        TrigFlowSampler(3, intermediate_timesteps=(1.0,))
    with pytest.raises(ValueError, match="decrease"):
        TrigFlowSampler(3, intermediate_timesteps=(0.5, 1.0))
    with pytest.raises(ValueError, match="max_timestep"):
        TrigFlowSampler(1, max_timestep=2.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        cfg_denoiser(analytic_denoiser(), float("nan"))
    noise, denoise, sampler = make_noise(B, C, H, W), analytic_denoiser(), FlowEulerSampler(3)
    with pytest.raises(ValueError, match="increase"):
        sampler.sample(denoise, noise, schedule=torch.tensor([0.5, 0.8, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1.0\]"):
        sampler.sample(denoise, noise, schedule=torch.tensor([1.5, 0.8, 0.0]))
    with pytest.raises(ValueError, match="start with 1 or B"):
        sampler.sample(denoise, noise, schedule=torch.rand(3, B + 1).sort(0, descending=True).values)
    with pytest.raises(ValueError, match="returned shape"):
        sampler.sample(lambda x, t: x[:, :1], noise)
