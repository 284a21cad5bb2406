"""SANA-Sprint distillation: a flow-matching SanaDiT teacher into a few-step TrigFlow student by continuous-time
consistency training (sCM, Lu & Song 2024, as SANA-Sprint uses it), on frames of ground-truth trajectories.

Everything runs at unit scale ``u = x_t / sigma_d``: with flow-space data ``a`` (the codec's latents) and
``eps ~ N(0, I)``, ``u_t = cos t a + sin t eps``. A TrigFlow denoiser ``F(u, t)`` predicts ``a = cos t u -
sin t F``; a flow model becomes one through :func:`~sana_world.samplers.flow_to_trigflow` (the Sprint
pipeline's conversion), and the teacher's probability-flow ODE is ``du/dt = F_teacher(u, t)`` (classifier-free
guided at ``guidance``). ``sigma_d`` enters only the angle proposal ``t = arctan(exp(tau) / sigma_d)``,
``tau ~ N(p_mean, p_std)``. Per step, with ``F-`` the student's output without gradient and ``dF-/dt`` its
total derivative along the ODE (one forward-mode JVP with tangents ``(du/dt, 1)``):

    g = -cos^2 t (F- - du/dt) - r cos t sin t (u + dF-/dt)      (cos t times the consistency function's d/dt)
    g = g / (rms(g) + c)                                        (tangent normalisation, per sample)
    loss = mean (F_theta(u, t) - (F- + g))^2                    (r: tangent warm-up, 0 -> 1)

The student starts as the teacher: the same weights, a guidance embedding whose last layer is zero (the
Sprint variant, fed ``guidance * guidance_embeds_scale``), fractional timesteps and ``timestep_scale``
1000 times the teacher's, so at flow time ``sigma`` it sees the timestep the teacher learnt
(:class:`~sana_world.generators.image.pipeline.ImagePipeline` applies ``timestep_scale``). Sample it with
``ImagePipelineConfig(sampler="trigflow", num_steps=1 or 2, guidance_scale=guidance)``.

A teacher that sees ``1000 sigma`` (SANA's convention) made the distillation diverge here, as sCM reports
of large time scales: a 2,008-step CPU run from the shipped teacher fell from 16.97 to 15.92 dB (one step
against the teacher's 20), while one from its dense re-fit rose from 17.46 to 19.09 dB in 2,692 steps
(``benchmarks/results/training_rooms-128_sprint_cpu2_20261208.json``). So re-fit the teacher first with the
flow-matching trainer's ``--dense-time`` (it then sees ``sigma``, SANA-Sprint's dense time embedding); its
student gets ``timestep_scale`` 1, the diffusers Sprint convention.

Left out: sCM's learnt adaptive loss weighting (a uniform weight here), and Sprint's LADD adversarial term.

    python -m sana_world.generators.train.flow_matching --preset rooms --dense-time \\
        --init-weights sana_world/zoo/rooms-128/image --autoencoder sana_world/zoo/rooms-128/autoencoder \\
        --data pool --shift 2.0 --lr 1e-4 --out-dir runs/dense_teacher ...
    python -m sana_world.generators.train.export_folder runs/dense_teacher runs/dense_teacher.tar
    python -m sana_world.generators.train.sprint --teacher runs/dense_teacher/export \\
        --autoencoder sana_world/zoo/rooms-128/autoencoder --data pool --guidance 3.0 --out-dir runs/sprint
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from sana_world.generators.image.dit import SanaDiT, SanaDiTConfig
from sana_world.generators.train import run as train_run
from sana_world.generators.train.common import autocast, rank_seed, setup_distributed, wrap_ddp
from sana_world.generators.train.errors import usage_error
from sana_world.generators.train.flow_matching import build_components, frame_source, latent_batch
from sana_world.generators.train.run import OptimConfig, RunConfig, nested_field
from sana_world.generators.train.run import config_field as _f
from sana_world.samplers import flow_to_trigflow

_RUN_FIELDS = (*train_run.RESUMABLE_FIELDS,)
INPUTS = ("teacher", "autoencoder", "text_encoder", "data_dir")  # compared by content on a resume


@dataclass(frozen=True)
class SprintConfig:
    """One distillation run; sizes are per rank. :meth:`from_flat` builds one from flat keyword arguments."""

    teacher: str = _f("", "folder of the flow-matching SanaDiT teacher (a zoo image folder or a run's export/)")
    autoencoder: str = _f("pixels", '"pixels" or the AutoencoderDC folder the teacher was trained on')
    text_encoder: str = _f("procedural", '"procedural" or the Gemma folder the teacher was trained with')
    data: str = _f("pool", '"shards" (data_dir), "stream" or "pool" (as the flow-matching trainer)')
    pool_trajectories: int = _f(1024, 'trajectories in the pool (data="pool"; all ranks together)')
    pool_workers: int = _f(8, 'CPU processes planning pooled trajectories (data="pool")')
    pool_supersample: int = _f(1, 'rays a side per pixel of pooled frames (data="pool")')
    data_dir: str | None = _f(None, "shard directory (sana_world.data.generate output)")
    verify_data: bool = _f(True, "hash every shard before training")
    stream_steps: int = _f(7, "trajectory length of the stream or pool (frames per trajectory - 1)")
    resolution: int = _f(128, "training image side")
    batch_size: int = _f(16, "images per rank per step")
    guidance: float = _f(3.0, "the teacher's classifier-free guidance scale the student learns (the Dream envs' "
                         "prompt_guidance)")
    sigma_data: float = _f(0.5, "TrigFlow data scale sigma_d of the angle proposal (Sprint's 0.5)")
    p_mean: float = _f(-1.0, "mean of tau, t = arctan(exp(tau) / sigma_d) (sCM's -1.0)")
    p_std: float = _f(1.4, "std of tau (sCM's 1.4)")
    tangent_warmup: int = _f(1000, "steps over which r ramps from 0 to 1")
    tangent_c: float = _f(0.1, "c of the tangent normalisation g / (rms(g) + c)")
    optim: OptimConfig = nested_field(OptimConfig, "optimizer, LR schedule, EMA, numerics")
    run: RunConfig = nested_field(lambda: RunConfig(out_dir="runs/sprint"), "length, seed, output, logging")

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ValueError("teacher is required: the folder of a flow-matching SanaDiT")
        for name in ("resolution", "batch_size", "stream_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data not in ("shards", "stream", "pool"):
            raise ValueError(f'data must be "shards", "stream" or "pool", got {self.data!r}')
        if self.data == "shards" and not self.data_dir:
            raise ValueError('data="shards" needs data_dir')
        for name in ("sigma_data", "p_std", "tangent_c"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.guidance >= 0 or self.tangent_warmup < 0:
            raise ValueError(f"guidance and tangent_warmup must be >= 0, got {self.guidance}, "
                             f"{self.tangent_warmup}")

    @classmethod
    def from_flat(cls, **kwargs: Any) -> SprintConfig:
        return train_run.config_from_flat(cls, **kwargs)


@dataclass
class TrainResult:
    losses: list[float]
    checkpoint: Path
    step: int


# --- Teacher and student ---------------------------------------------------------------------------------


def load_teacher(folder: str | Path, device: torch.device) -> SanaDiT:
    """The frozen flow-matching SanaDiT of ``folder`` (a zoo image folder or a run's export/), fp32, eval."""
    from sana_world.generators.zoo import load_component
    from sana_world.zoo import ZooError

    try:
        teacher = load_component(folder, "image", device)
    except ZooError as e:
        raise usage_error(ValueError, f"<teacher={folder}>: {e}") from e
    if teacher.cfg.guidance_embeds:
        raise usage_error(ValueError, f"<teacher={folder}> is already a Sprint student (guidance_embeds=True); "
                          "distil from a flow-matching model")
    return teacher


def student_config(teacher_cfg: SanaDiTConfig) -> SanaDiTConfig:
    """The teacher's config with a guidance embedding, fractional timesteps and 1000 times its timestep_scale
    (a flow model sees ``1000 scale sigma``, a Sprint student ``scale sigma``: the same timestep)."""
    return dataclasses.replace(teacher_cfg, guidance_embeds=True, truncate_timesteps=False,
                               timestep_scale=1000.0 * teacher_cfg.timestep_scale)


def student_from_teacher(teacher: SanaDiT) -> SanaDiT:
    """A student that computes what the teacher computes at every (x, sigma) whatever the guidance: the
    teacher's weights and a guidance embedding whose output layer is zero."""
    student = SanaDiT(student_config(teacher.cfg))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_embed.") for k in missing):
        raise RuntimeError(f"student and teacher differ beyond the guidance embedding: {missing}, {unexpected}")
    nn.init.zeros_(student.guidance_embed.fc2.weight)
    nn.init.zeros_(student.guidance_embed.fc2.bias)
    return student


def teacher_trigflow(teacher: nn.Module, cond: Any, null: Any, guidance: float):
    """``F_teacher(u, t)``: the teacher's classifier-free guided velocity as a TrigFlow denoiser."""
    scale = float(teacher.cfg.timestep_scale)

    def velocity(x_f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        both = teacher(torch.cat([x_f, x_f]), 1000.0 * scale * torch.cat([sigma, sigma]),
                       torch.cat([null.hidden, cond.hidden]), torch.cat([null.mask, cond.mask]))
        v_null, v_cond = both.to(x_f.dtype).chunk(2)
        return v_null + guidance * (v_cond - v_null)

    return flow_to_trigflow(velocity)


def student_trigflow(student: nn.Module, cond: Any, guidance: float):
    """``F_theta(u, t)``: the student (a Sprint-variant SanaDiT, or its DDP) as a TrigFlow denoiser."""
    inner = getattr(student, "module", student)
    scale = float(inner.cfg.timestep_scale)
    g = torch.full((cond.hidden.shape[0],), guidance * inner.cfg.guidance_embeds_scale,
                   device=cond.hidden.device)

    def velocity(x_f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return student(x_f, scale * sigma, cond.hidden, cond.mask, guidance=g).to(x_f.dtype)

    return flow_to_trigflow(velocity)


# --- The objective ---------------------------------------------------------------------------------------


def sample_angles(n: int, config: SprintConfig, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) TrigFlow angles ``arctan(exp(tau) / sigma_d)``, ``tau ~ N(p_mean, p_std)``."""
    tau = torch.randn(n, generator=generator, device=device) * config.p_std + config.p_mean  # (n,)
    return torch.atan(torch.exp(tau) / config.sigma_data)


def tangent_ramp(step: int, warmup: int) -> float:
    """r of step ``step`` (1-based): ``min(1, step / warmup)``; 1 without warm-up."""
    return 1.0 if warmup == 0 else min(1.0, step / warmup)


def consistency_tangent(f_student, f_teacher, u: torch.Tensor, t: torch.Tensor,
                        r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(F-, g): the student's output at (u, t) and cos t times the derivative of its consistency function
    ``cos t u - sin t F`` along the teacher's ODE (tangent term weighted by ``r``), without gradient.

    ``u`` (B, C, h, w) at angles ``t`` (B,); ``f_student`` / ``f_teacher`` TrigFlow denoisers. The JVP
    runs with the math attention kernel (the fused ones have no forward-mode derivative)."""
    ct, st = (v.view(-1, *([1] * (u.ndim - 1))) for v in (torch.cos(t), torch.sin(t)))  # (B, 1, 1, 1)
    with torch.no_grad():
        # 1. the teacher's ODE velocity du/dt
        du_dt = f_teacher(u, t).to(u.dtype)  # (B, C, h, w)
        # 2. the student's output and its total derivative along (du/dt, 1)
        with sdpa_kernel(SDPBackend.MATH):
            f_minus, df_dt = torch.func.jvp(f_student, (u, t), (du_dt, torch.ones_like(t)))
        f_minus, df_dt = f_minus.to(u.dtype), df_dt.to(u.dtype)
        # 3. cos t times the consistency function's derivative
        g = -ct * ct * (f_minus - du_dt) - r * ct * st * (u + df_dt)  # (B, C, h, w)
    return f_minus, g


def scm_target(f_student, f_teacher, u: torch.Tensor, t: torch.Tensor, r: float,
               c: float) -> torch.Tensor:
    """The student's regression target ``F- + g / (rms(g) + c)`` at (u, t) (per-sample RMS), no gradient."""
    f_minus, g = consistency_tangent(f_student, f_teacher, u, t, r)
    rms = g.square().flatten(1).mean(1).sqrt().view(-1, *([1] * (u.ndim - 1)))  # (B, 1, 1, 1)
    return f_minus + g / (rms + c)


# --- Training --------------------------------------------------------------------------------------------


def resolved_config(config: SprintConfig, model_cfg: SanaDiTConfig) -> dict[str, Any]:
    return train_run.resolved_config(config, model_cfg, "SanaDiT", "sana_world.generators.train.sprint",
                                     inputs=INPUTS)


def train(config: SprintConfig) -> TrainResult:
    """Distil (or, with ``config.run.resume``, continue distilling) a Sprint student; see the module doc."""
    run, optim = config.run, config.optim
    info = setup_distributed(run.device)
    dev = info.device
    # 0. components: codec, text encoder, frozen teacher; the student starts as the teacher
    codec, text, side = build_components(config, dev)
    teacher = load_teacher(config.teacher, dev)
    if teacher.cfg.in_channels != codec.latent_channels or teacher.cfg.caption_channels != text.dim:
        raise usage_error(ValueError, f"<teacher={config.teacher}> takes {teacher.cfg.in_channels} latent "
                          f"channels and {teacher.cfg.caption_channels}-d captions; the codec gives "
                          f"{codec.latent_channels} and the text encoder {text.dim}: pass the teacher's own")
    state = train_run.init_train_state(lambda: student_from_teacher(teacher), optim, run.seed, info)
    resolved = resolved_config(config, state.model.cfg)
    # 1. resume, or refuse to mix a fresh run into an old one
    train_run.resume_or_start(state, run, resolved, info, _RUN_FIELDS, train_run.field_defaults(SprintConfig))
    data = frame_source(config, info)
    null = text.null_embedding().to(dev)  # (1, L, D)
    ddp = wrap_ddp(state.model, info)
    ddp.train()
    loop = train_run.RunLoop(run, state, resolved, info, desc="sprint", rate_name="images_per_s")
    with loop:
        while state.step < run.steps and not loop.stopped:
            step = state.step + 1
            gen = torch.Generator(dev).manual_seed(rank_seed(run.seed, step, info.rank))
            # 1. batch: latents of GT frames (flow space) and their encoded captions
            a, cond = latent_batch(data, step, codec, text, config.resolution, optim.bf16)  # a (B, C, h, w)
            B = a.shape[0]
            nulls = null.expand(B)
            # 2. angles and the noisy input u_t = cos t a + sin t eps
            t = sample_angles(B, config, gen, dev)  # (B,)
            eps = torch.randn(a.shape, generator=gen, device=dev)  # (B, C, h, w)
            tt = t.view(-1, 1, 1, 1)
            u = torch.cos(tt) * a + torch.sin(tt) * eps
            # 3. the target from the teacher's ODE and the student's JVP (no gradient)
            r = tangent_ramp(step, config.tangent_warmup)
            with autocast(dev, optim.bf16):
                target = scm_target(student_trigflow(state.model, cond, config.guidance),
                                       teacher_trigflow(teacher, cond, nulls, config.guidance), u, t, r,
                                       config.tangent_c)
                # 4. the student's output with gradient, regressed on the target
                pred = student_trigflow(ddp, cond, config.guidance)(u, t)  # (B, C, h, w)
                loss = (pred.float() - target).square().mean()
            # 5. backward, clip, optimizer and LR step, EMA
            grad_norm, lr = train_run.optimizer_step(state, loss, optim.grad_clip)
            state.step = step
            state.data_state = {"source": config.data, "seed": run.seed, "next_step": step + 1}
            # 6. log, checkpoint
            loop.end_step(step, loss, lr=lr, grad_norm=grad_norm, items=B)
    return TrainResult(losses=loop.losses, checkpoint=loop.checkpoint(), step=state.step)


# --- CLI -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    return train_run.build_parser(SprintConfig, __doc__.split("\n\n")[0], {})


def main(argv: list[str] | None = None) -> TrainResult:
    return train_run.cli_main(build_parser(), SprintConfig, train, argv)


if __name__ == "__main__":
    main()
