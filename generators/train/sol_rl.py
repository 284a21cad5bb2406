"""Sol-RL post-training of a flow-matching SanaDiT: explore cheaply in low precision, train in bf16 or fp32
(DiffusionNFT), rewarded by the ground-truth world the caption describes.

Per step, on each rank (P = ``prompts``, N = ``candidates``, K = ``keep``):

1. P prompts: captions of trajectories of a GT pool; each trajectory's frames are its scene's views.
2. Explore: N candidates a prompt, sampled in ``preview_steps`` Flow-Euler steps by a low-precision copy of
   the behaviour policy (FP8 W8A8 through :mod:`sana_world.nn.fp8`: ``torch._scaled_mm`` on Ada / Hopper,
   its bit-exact emulation elsewhere; or bf16), and scored by the reward.
3. Keep the K best and the K worst of each prompt: the most contrastive pairs.
4. Regenerate the 2K kept seeds in the training precision (bf16 autocast with ``bf16``, else fp32) from the
   same noise (a deterministic ``sample_steps`` Flow-Euler sampler) and score them again: under an ODE
   sampler the seed fixes the content, so the cheap ranking transfers (the log's ``rank_corr``: the Spearman
   correlation of preview and training-precision rewards over the kept samples, per prompt).
5. Advantages within each prompt's group: ``A = (r - mean) / (std + 1e-4)``, clipped to ``adv_clip``; the
   optimality probability ``p = A / (2 adv_clip) + 1/2``.
6. DiffusionNFT on the clean latents ``x0``: at a flow time ``s ~ U(0, 1)``, ``x_s = (1 - s) x0 + s eps``;
   with ``v`` the policy's conditional velocity and ``v_old`` the behaviour policy's,
   ``v+ = v_old + beta (v - v_old)``, ``v- = v_old - beta (v - v_old)``, ``x0± = x_s - s v±``,

       loss = adv_clip / beta * mean[p |x0+ - x0|^2 / w+ + (1 - p) |x0- - x0|^2 / w-] + kl |v - v_ref|^2

   ``w±`` the detached mean ``|x0± - x0|`` of each sample, ``v_ref`` the frozen starting model. At
   ``v = v_old`` its gradient is ``-2 s A (x0_old - x0) / (adv_clip w)`` per unit of ``v``, whatever
   ``beta``: positive samples pull the denoised estimate towards themselves, negative ones push it away.
7. Optimizer step; the behaviour policy ``v_old`` is the EMA (``ema_decay``), which is also what is exported.

No classifier-free guidance is trained (DiffusionNFT is CFG-free); ``guidance`` only sets how candidates are
sampled (1: the conditional model alone, Sol-RL's setting).

Left out: LoRA adapters (the whole model trains; ours are small), NVFP4 (Blackwell only: FP8 is the Hopper
analogue), learnt reward models (PickScore, HPSv2: none fits our rooms; the reward is
:class:`~sana_world.generators.rewards.SceneColourReward`).

    python -m sana_world.generators.train.sol_rl --policy sana_world/zoo/rooms-128/image \\
        --autoencoder sana_world/zoo/rooms-128/autoencoder --out-dir runs/sol_rl --steps 200
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.generators.image.dit import SanaDiT, SanaDiTConfig
from sana_world.generators.rewards import ColourRewardConfig, SceneColourReward
from sana_world.generators.train import run as train_run
from sana_world.generators.train.common import autocast, rank_seed, setup_distributed, wrap_ddp
from sana_world.generators.train.errors import usage_error
from sana_world.generators.train.flow_matching import build_codec, build_text_encoder
from sana_world.generators.train.run import OptimConfig, RunConfig, nested_field
from sana_world.generators.train.run import config_field as _f

_RUN_FIELDS = (*train_run.RESUMABLE_FIELDS,)
INPUTS = ("policy", "autoencoder", "text_encoder")  # compared by content on a resume
PRECISIONS = ("fp8", "bf16", "fp32")


@dataclass(frozen=True)
class SolRLConfig:
    """One post-training run; sizes are per rank. :meth:`from_flat` builds one from flat keyword arguments."""

    policy: str = _f("", "folder of the flow-matching SanaDiT to post-train (a zoo image folder, an export/)")
    autoencoder: str = _f("pixels", '"pixels" or the AutoencoderDC folder the model was trained on')
    text_encoder: str = _f("procedural", '"procedural" or the Gemma folder the model was trained with')
    pool_trajectories: int = _f(256, "trajectories of the prompt pool (their captions; all ranks together)")
    pool_steps: int = _f(15, "steps per pooled trajectory: its steps + 1 frames are the reward's views")
    pool_workers: int = _f(8, "CPU processes planning pooled trajectories")
    pool_supersample: int = _f(1, "rays a side per pixel of the views")
    resolution: int = _f(128, "image side")
    prompts: int = _f(4, "prompts per step per rank")
    candidates: int = _f(16, "low-precision candidates per prompt")
    keep: int = _f(4, "best and worst candidates kept per prompt (2 keep regenerated and trained on)")
    preview_steps: int = _f(6, "Flow-Euler steps of the low-precision candidates")
    preview_precision: str = _f("fp8", '"fp8" (W8A8 e4m3), "bf16" or "fp32" (no low precision)')
    sample_steps: int = _f(10, "Flow-Euler steps of the regeneration in the training precision")
    shift: float = _f(2.0, "the samplers' time shift (the model's training shift; the shipped models' 2.0)")
    guidance: float = _f(1.0, "classifier-free guidance of both samplers (1: none, Sol-RL's)")
    beta: float = _f(1.0, "DiffusionNFT's step beta between the old and the implicit policies")
    adv_clip: float = _f(5.0, "advantage clip (and the loss scale adv_clip / beta)")
    kl_weight: float = _f(1e-4, "weight of |v - v_ref|^2 to the starting model")
    reward_bins: int = _f(6, "the colour reward's bins per channel")
    optim: OptimConfig = nested_field(lambda: OptimConfig(lr=1e-4, warmup_steps=10, ema_decay=0.9, grad_clip=1.0),
                                      "optimizer, LR schedule, EMA (the behaviour policy), numerics")
    run: RunConfig = nested_field(lambda: RunConfig(out_dir="runs/sol_rl"), "length, seed, output, logging")

    def __post_init__(self) -> None:
        if not self.policy:
            raise ValueError("policy is required: the folder of a flow-matching SanaDiT")
        for name in ("pool_trajectories", "pool_steps", "resolution", "prompts", "keep", "preview_steps",
                     "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.candidates < 2 * self.keep:
            raise ValueError(f"candidates ({self.candidates}) must be >= 2 keep ({2 * self.keep})")
        if self.preview_precision not in PRECISIONS:
            raise ValueError(f"preview_precision must be one of {PRECISIONS}, got {self.preview_precision!r}")
        for name in ("shift", "beta", "adv_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (self.guidance >= 0 and self.kl_weight >= 0):
            raise ValueError(f"guidance and kl_weight must be >= 0, got {self.guidance}, {self.kl_weight}")

    @classmethod
    def from_flat(cls, **kwargs: Any) -> SolRLConfig:
        return train_run.config_from_flat(cls, **kwargs)


@dataclass
class TrainResult:
    losses: list[float]
    checkpoint: Path
    step: int
    log: list[dict[str, float]]  # this call's per-step rewards (train.jsonl rows)


# --- The pieces ------------------------------------------------------------------------------------------


def load_policy(folder: str | Path, device: torch.device) -> SanaDiT:
    """The flow-matching SanaDiT of ``folder``, fp32 (the starting point and the frozen reference)."""
    from sana_world.generators.zoo import load_component
    from sana_world.zoo import ZooError

    try:
        model = load_component(folder, "image", device)
    except ZooError as e:
        raise usage_error(ValueError, f"<policy={folder}>: {e}") from e
    if model.cfg.guidance_embeds:
        raise usage_error(ValueError, f"<policy={folder}> is a Sprint student (guidance_embeds=True); Sol-RL "
                          "post-trains a flow-matching model")
    return model


def preview_model(model: nn.Module, precision: str) -> nn.Module:
    """An inference copy of ``model`` in ``precision``: FP8 W8A8 (``torch._scaled_mm`` on CUDA, its emulation
    on the CPU), bf16 weights, or an fp32 copy."""
    from sana_world.nn.fp8 import fp8_copy

    if precision == "fp8":
        return fp8_copy(model)
    clone = copy.deepcopy(model).eval().requires_grad_(False)
    return clone.to(torch.bfloat16) if precision == "bf16" else clone


def contrastive_indices(rewards: torch.Tensor, keep: int) -> torch.Tensor:
    """(P, N) rewards -> (P, 2 keep) candidate indices: each row's ``keep`` best, then its ``keep`` worst."""
    order = rewards.argsort(dim=1, descending=True, stable=True)  # (P, N)
    return torch.cat([order[:, :keep], order[:, -keep:]], dim=1)


def optimality(rewards: torch.Tensor, adv_clip: float) -> torch.Tensor:
    """(P, M) rewards of each prompt's group -> (P, M) ``A / (2 adv_clip) + 1/2`` in [0, 1], ``A`` the
    group-normalised advantage clipped to ``adv_clip``."""
    mean, std = rewards.mean(1, keepdim=True), rewards.std(1, keepdim=True, unbiased=False)
    adv = ((rewards - mean) / (std + 1e-4)).clamp(-adv_clip, adv_clip)
    return adv / (2 * adv_clip) + 0.5


def nft_loss(v: torch.Tensor, v_old: torch.Tensor, x_s: torch.Tensor, x0: torch.Tensor, s: torch.Tensor,
             p: torch.Tensor, beta: float, adv_clip: float) -> torch.Tensor:
    """DiffusionNFT's loss (module doc, step 6) without the KL term: v, v_old, x_s, x0 (B, ...), s, p (B,)."""
    view = (-1, *([1] * (x0.ndim - 1)))
    ss, pp = s.view(view), p.view(view)
    delta = beta * (v - v_old)
    x0_pos = x_s - ss * (v_old + delta)  # (B, ...) the implicit positive policy's clean estimate
    x0_neg = x_s - ss * (v_old - delta)
    dtype = torch.promote_types(x0.dtype, torch.float32)  # at least fp32 (bf16 autocast outputs)
    err_pos, err_neg = (x0_pos - x0).to(dtype), (x0_neg - x0).to(dtype)
    w_pos = err_pos.abs().flatten(1).mean(1).clamp_min(1e-5).detach().view(view)
    w_neg = err_neg.abs().flatten(1).mean(1).clamp_min(1e-5).detach().view(view)
    per = pp * err_pos.square() / w_pos + (1 - pp) * err_neg.square() / w_neg
    return per.mean() * (adv_clip / beta)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors, ties at their mean rank (0 when either is constant)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        below = (x[:, None] > x[None]).sum(1).double()  # (n,) values strictly below each
        return below + ((x[:, None] == x[None]).sum(1).double() - 1) / 2

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return 0.0 if den == 0 else float((ra @ rb).item() / den)


class Sampler:
    """Flow-Euler latents and decoded [0, 1] images of a model for captions, from given noise."""

    def __init__(self, codec: nn.Module, text: Any, config: SolRLConfig) -> None:
        self.codec, self.text, self.config = codec, text, config

    @torch.no_grad()
    def __call__(self, model: nn.Module, captions: list[str], noise: torch.Tensor,
                 steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig

        cfg = ImagePipelineConfig(sampler="euler", num_steps=steps, shift=self.config.shift,
                                  guidance_scale=self.config.guidance)
        z = ImagePipeline(model, self.text, self.codec, cfg).latents(captions, noise).float()  # (B, C, h, w)
        images = (self.codec.decode(z).float().clamp(-1, 1) + 1) / 2  # (B, 3, H, W)
        return z, images


# --- Training --------------------------------------------------------------------------------------------


def resolved_config(config: SolRLConfig, model_cfg: SanaDiTConfig) -> dict[str, Any]:
    return train_run.resolved_config(config, model_cfg, "SanaDiT", "sana_world.generators.train.sol_rl",
                                     inputs=INPUTS)


def prompt_pool(config: SolRLConfig, info: Any):
    from sana_world.data.pool import ClipPool, PoolConfig

    cfg = PoolConfig(trajectories=config.pool_trajectories, steps=config.pool_steps, size=config.resolution,
                     workers=config.pool_workers, supersample=config.pool_supersample, seed=config.run.seed)
    return ClipPool(cfg, info.device, info.rank, info.world_size, progress=info.is_main)


def train(config: SolRLConfig) -> TrainResult:
    """Post-train (or, with ``config.run.resume``, continue) a SanaDiT with Sol-RL; see the module doc."""
    from sana_world.data.pool import pool_generator

    run, optim = config.run, config.optim
    info = setup_distributed(run.device)
    dev = info.device
    # 0. components: codec, text encoder, the frozen reference; the policy starts as it
    codec = build_codec(config.autoencoder, dev)
    text = build_text_encoder(config.text_encoder, dev)
    reference = load_policy(config.policy, dev).eval().requires_grad_(False)
    if reference.cfg.in_channels != codec.latent_channels or reference.cfg.caption_channels != text.dim:
        raise usage_error(ValueError, f"<policy={config.policy}> takes {reference.cfg.in_channels} latent "
                          f"channels and {reference.cfg.caption_channels}-d captions; the codec gives "
                          f"{codec.latent_channels} and the text encoder {text.dim}: pass the model's own")
    if config.resolution % codec.downsample_factor:
        raise usage_error(ValueError, f"<resolution={config.resolution}> is not divisible by the codec's "
                          f"factor {codec.downsample_factor}")
    state = train_run.init_train_state(lambda: copy.deepcopy(reference).train().requires_grad_(True), optim,
                                       run.seed, info)
    resolved = resolved_config(config, state.model.cfg)
    # 1. resume, or refuse to mix a fresh run into an old one
    train_run.resume_or_start(state, run, resolved, info, _RUN_FIELDS, train_run.field_defaults(SolRLConfig))
    pool = prompt_pool(config, info)
    views_all = pool.rgb.permute(0, 1, 4, 2, 3)  # (T, F, 3, H, W) uint8
    reward = SceneColourReward(ColourRewardConfig(bins=config.reward_bins))
    sampler = Sampler(codec, text, config)
    side = config.resolution // codec.downsample_factor
    P, N, K = config.prompts, config.candidates, config.keep
    t_scale = 1000.0 * float(reference.cfg.timestep_scale)
    ddp = wrap_ddp(state.model, info)
    ddp.train()
    log_path, log = Path(run.out_dir) / "train.jsonl", []
    loop = train_run.RunLoop(run, state, resolved, info, desc="sol-rl", rate_name="samples_per_s")
    with loop:
        while state.step < run.steps and not loop.stopped:
            step = state.step + 1
            gen = torch.Generator(dev).manual_seed(rank_seed(run.seed, step, info.rank))
            # 1. prompts and their scenes' views
            traj = torch.randint(0, len(pool), (P,), generator=pool_generator(run.seed, step, info.rank))
            captions = [pool.captions[int(i)] for i in traj]
            views = views_all[traj.to(dev)].float() / 255  # (P, F, 3, H, W)
            # 2. explore: N low-precision candidates a prompt
            noise = torch.randn(P * N, codec.latent_channels, side, side, generator=gen, device=dev)
            behaviour = state.ema.model
            cheap = preview_model(behaviour, config.preview_precision)
            _, images = sampler(cheap, [c for c in captions for _ in range(N)], noise, config.preview_steps)
            preview = reward(images, views.repeat_interleave(N, 0)).view(P, N)  # (P, N)
            del cheap
            # 3. the K best and K worst of each prompt; 4. regenerated in the training precision, scored again
            kept = contrastive_indices(preview, K)  # (P, 2K)
            flat = (kept + N * torch.arange(P, device=kept.device)[:, None]).flatten()  # (P 2K,)
            kept_captions = [captions[i // (2 * K)] for i in range(P * 2 * K)]
            with autocast(dev, optim.bf16):  # the training precision: bf16 with --bf16 (Sol-RL's), else fp32
                x0, images = sampler(behaviour, kept_captions, noise[flat], config.sample_steps)  # (P 2K, C, ...)
            full = reward(images, views.repeat_interleave(2 * K, 0)).view(P, 2 * K)  # (P, 2K)
            # 5. optimality probabilities within each prompt's group
            p = optimality(full, config.adv_clip).flatten()  # (P 2K,)
            # 6. DiffusionNFT at one random flow time a sample
            B = x0.shape[0]
            s = torch.rand(B, generator=gen, device=dev)  # (B,)
            eps = torch.randn(x0.shape, generator=gen, device=dev)
            x_s = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * eps  # (B, C, h, w)
            cond = text.encode(kept_captions).to(dev)
            with autocast(dev, optim.bf16):
                with torch.no_grad():
                    v_old = behaviour(x_s, t_scale * s, cond.hidden, cond.mask).float()
                    v_ref = reference(x_s, t_scale * s, cond.hidden, cond.mask).float()
                v = ddp(x_s, t_scale * s, cond.hidden, cond.mask).float()
                loss = nft_loss(v, v_old, x_s, x0, s, p, config.beta, config.adv_clip)
                loss = loss + config.kl_weight * (v - v_ref).square().mean()
            # 7. backward, clip, optimizer and LR step, EMA (the next step's behaviour policy)
            grad_norm, lr = train_run.optimizer_step(state, loss, optim.grad_clip)
            state.step = step
            state.data_state = {"source": "pool", "seed": run.seed, "next_step": step + 1}
            row = {"step": step, "preview_reward": float(preview.mean()), "reward": float(full.mean()),
                   "kept_best": float(full[:, :K].mean()), "kept_worst": float(full[:, K:].mean()),
                   "rank_corr": sum(spearman(a, b) for a, b in zip(preview.gather(1, kept), full)) / P}
            log.append(row)
            if info.is_main:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            loop.end_step(step, loss, lr=lr, grad_norm=grad_norm, items=P * N,
                          extra={k: v for k, v in row.items() if k != "step"})
    return TrainResult(losses=loop.losses, checkpoint=loop.checkpoint(), step=state.step, log=log)


# --- CLI -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    return train_run.build_parser(SolRLConfig, __doc__.split("\n\n")[0], {})


def main(argv: list[str] | None = None) -> TrainResult:
    return train_run.cli_main(build_parser(), SolRLConfig, train, argv)


if __name__ == "__main__":
    main()
