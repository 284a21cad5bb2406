"""Autoencoder trainer: a diffusers ``AutoencoderDC`` reconstructing GT frames from a rendered pool or shards.

Objective: ``l1_weight * |x - D(E(x))| + mse_weight * (x - D(E(x)))^2`` on frames in [-1, 1] (no GAN, no
perceptual term: our renderer's frames are clean and PSNR is the bar). Frames come from a
:class:`~sana_world.data.pool.ClipPool` of training scenes (each rank renders its share) or, with
``data_dir``, from a shard dataset (``sana_world.data.generate`` output; centre-cropped and resized to
``resolution``, trajectories of held-out scene seeds left out); at the end the
EMA weights are scored on frames of held-out scenes (scene seeds >= ``HELDOUT_START``, never trained
on), the latent scale is fitted (1 / RMS of the latents, SANA's definition) and the model is written as a
diffusers folder (``export/``: ``config.json`` + safetensors) that :func:`load_autoencoder` reads.

Exact resume as in the other trainers: the pool is a pure function of the seed and the ranks, and the
frames and noise of step ``n`` on rank ``r`` come from generators seeded by ``(seed, n, r)``.

    python -m sana_world.generators.train.autoencoder --preset f8c16_lite --steps 20000 --out-dir runs/ae
    python -m sana_world.generators.train.autoencoder --data-dir DS ...   # frames of generated shards
    python -m sana_world.generators.train.autoencoder --init-weights sana_world/zoo/rooms-128/autoencoder \
        --freeze-encoder ...   # a better decoder for the same latents
    python -m sana_world.generators.train.autoencoder --preset f8c16_lite_wide --init-weights \
        sana_world/zoo/rooms-128/autoencoder --init-encoder-only --freeze-encoder ...   # a larger one
    python -m sana_world.generators.train.autoencoder --init-weights AE --anchor-weight 1 ...   # near AE's latents
    torchrun --nproc-per-node 4 -m sana_world.generators.train.autoencoder --time-limit-s 240 ...
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.data.pool import ClipPool, PoolConfig, pool_generator
from sana_world.worlds.sampler import HELDOUT_START
from sana_world.generators.autoencoder import (
    AE_PRESETS, AutoencoderSpec, build_autoencoder, fit_scaling_factor, latent_drift,
)
from sana_world.generators.train import run as train_run
from sana_world.generators.train.common import DistInfo, autocast, setup_distributed, wrap_ddp
from sana_world.generators.train.flow_matching import ShardFrames, to_model_images
from sana_world.generators.train.errors import usage_error
from sana_world.generators.train.run import OptimConfig, RunConfig, nested_field
from sana_world.generators.train.run import config_field as _f

log = logging.getLogger(__name__)

_RUN_FIELDS = (*train_run.RESUMABLE_FIELDS, "eval_trajectories")
INPUTS = ("init_weights", "data_dir")  # compared by content on a resume (train.resume)
HELDOUT_SEED = HELDOUT_START  # the first held-out scene (sana_world.worlds.sampler)


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """One autoencoder run; sizes are per rank."""

    model: str = _f("f8c16_lite", "AutoencoderDC preset (generators.autoencoder.AE_PRESETS)")
    pool_trajectories: int = _f(512, "trajectories in the training pool (all ranks)")
    pool_steps: int = _f(15, "steps per pooled trajectory")
    pool_workers: int = _f(8, "CPU processes planning pooled trajectories")
    pool_supersample: int = _f(1, "render pooled (and held-out) frames at this many rays a side per pixel and "
                               "box-filter them down: antialiased frames (PoolConfig.supersample)")
    data_dir: str | None = _f(None, "train on the frames of this shard dataset (sana_world.data.generate "
                              "output) instead of a rendered pool; held-out scene seeds are left out")
    verify_data: bool = _f(True, "hash every shard of data_dir before training")
    resolution: int = _f(128, "frame side")
    batch_size: int = _f(32, "frames per rank per step")
    l1_weight: float = _f(1.0, "weight of the L1 reconstruction term")
    mse_weight: float = _f(1.0, "weight of the squared-error reconstruction term")
    eval_trajectories: int = _f(32, "held-out trajectories scored at the end (pool_steps + 1 frames each)")
    init_weights: str | None = _f(None, "start from this AutoencoderDC folder (e.g. a zoo autoencoder) instead of "
                                  "a fresh init; its architecture must be the preset's")
    freeze_encoder: bool = _f(False, "train the decoder only (needs init_weights): the latent space, and its "
                              "scaling factor, stay exactly those of init_weights, so models trained on its "
                              "latents keep working")
    init_encoder_only: bool = _f(False, "take only the encoder (and latent scale) from init_weights; the decoder "
                                 "starts fresh with the preset's decoder, which may differ from the init's "
                                 "(a larger decoder for the same latents; needs freeze_encoder)")
    anchor_weight: float = _f(0.0, "with init_weights and a trainable encoder: add anchor_weight * mean((s E(x) - "
                              "s E0(x))^2), E0 the init's encoder (frozen copy), s its scaling factor; the latents "
                              "stay near the init's, so a world model trained on them needs only a short fine-tune")
    optim: OptimConfig = nested_field(lambda: OptimConfig(lr=1e-3, warmup_steps=200, ema_decay=0.999,
                                                          grad_clip=1.0), "optimizer, LR, EMA, numerics")
    run: RunConfig = nested_field(lambda: RunConfig(out_dir="runs/autoencoder"),
                                  "length, seed, output, logging, checkpoints")

    def __post_init__(self) -> None:
        if self.model not in AE_PRESETS:
            raise ValueError(f"unknown autoencoder preset {self.model!r}; choose one of {sorted(AE_PRESETS)}")
        for name in ("pool_trajectories", "pool_steps", "pool_supersample", "resolution", "batch_size",
                     "eval_trajectories"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pool_workers < 0:
            raise ValueError(f"pool_workers must be >= 0, got {self.pool_workers}")
        f = self.spec().downsample_factor
        if self.resolution % f:
            raise usage_error(ValueError, f"<resolution={self.resolution}> is not divisible by the "
                              f"{self.model} autoencoder's downsampling factor {f}; pick a multiple of {f}")
        if self.l1_weight < 0 or self.mse_weight < 0 or self.l1_weight + self.mse_weight == 0:
            raise ValueError("l1_weight and mse_weight must be >= 0 and not both 0")
        if not (math.isfinite(self.anchor_weight) and self.anchor_weight >= 0):
            raise ValueError(f"anchor_weight must be finite and >= 0, got {self.anchor_weight}")
        if self.anchor_weight > 0 and (not self.init_weights or self.freeze_encoder or self.init_encoder_only):
            raise ValueError("anchor_weight > 0 anchors a trainable encoder to the init's: it needs init_weights "
                             "and refuses freeze_encoder and init_encoder_only (nothing left to anchor)")
        if self.freeze_encoder and not self.init_weights:
            raise ValueError("freeze_encoder needs init_weights (a trained encoder to keep)")
        if self.init_encoder_only and not self.freeze_encoder:
            raise ValueError("init_encoder_only needs freeze_encoder (the fresh decoder learns the init's latents)")

    @classmethod
    def from_flat(cls, **kwargs: Any) -> AutoencoderTrainConfig:
        return train_run.config_from_flat(cls, **kwargs)

    def spec(self) -> AutoencoderSpec:
        return AE_PRESETS[self.model]()


@dataclass
class TrainResult:
    losses: list[float]
    checkpoint: Path
    step: int
    export: Path | None  # the diffusers folder (main process only)
    heldout_psnr_db: float | None  # EMA weights on held-out frames (main process only)


def to_unit(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return rgb.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class ReconAndLatent(nn.Module):
    """``ae``'s reconstruction and raw latent in one forward (DDP wraps this, syncing both's gradients)."""

    def __init__(self, ae: nn.Module) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.ae.encode(x).latent  # (B, C, h, w)
        return self.ae.decode(z).sample, z


def training_loss(net: nn.Module, x: torch.Tensor, config: AutoencoderTrainConfig, anchor: nn.Module | None,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``l1 |x - x̂| + mse (x - x̂)^2`` averaged over pixels (x (B, 3, H, W) in [-1, 1]), plus with ``anchor``
    (the frozen E0) ``anchor_weight * mean((s E(x) - s E0(x))^2)``; ``net`` a :class:`ReconAndLatent` (or its
    DDP). Returns (loss, the unweighted anchor term or None)."""
    out, z = net(x)  # (B, 3, H, W), (B, C, h, w)
    err = out.float() - x
    loss = config.l1_weight * err.abs().mean() + config.mse_weight * err.square().mean()
    if anchor is None:
        return loss, None
    with torch.no_grad():
        z0 = anchor(x).float()
    term = (scale * (z.float() - z0)).square().mean()
    return loss + config.anchor_weight * term, term.detach()


@torch.no_grad()
def reconstruction_psnr(ae: nn.Module, rgb: torch.Tensor, batch: int = 64) -> float:
    """Mean per-frame PSNR (dB, uint8 scale) of ``ae``'s reconstructions of uint8 frames (N, H, W, 3)."""
    scores = []
    for a in range(0, rgb.shape[0], batch):
        x = to_unit(rgb[a:a + batch])  # (b, 3, H, W)
        y = ae(x.to(next(ae.parameters()).dtype)).sample.float().clamp(-1, 1)
        got = ((y + 1) * 127.5).round()
        mse = (got - rgb[a:a + batch].permute(0, 3, 1, 2).float()).square().mean(dim=(1, 2, 3))  # (b,)
        scores.append(10 * torch.log10(255.0**2 / mse.clamp(min=1e-10)))
    return float(torch.cat(scores).mean())


def train(config: AutoencoderTrainConfig) -> TrainResult:
    """Train (or, with ``config.run.resume``, continue) an AutoencoderDC; see the module doc."""
    run, optim = config.run, config.optim
    info = setup_distributed(run.device)
    dev = info.device
    spec = config.spec()
    state = train_run.init_train_state(lambda: build_initial(config), optim, run.seed, info)
    # anchor_weight's frozen E0 and s: the init's encoder and scale, taken before a resume loads the checkpoint
    anchor = copy.deepcopy(state.model.encoder).eval().requires_grad_(False) if config.anchor_weight > 0 else None
    scale = float(state.model.config.scaling_factor)
    resolved = train_run.resolved_config(config, spec, "AutoencoderDC",
                                         "sana_world.generators.train.autoencoder", inputs=INPUTS)
    # 1. resume, or refuse to mix a fresh run into an old one
    train_run.resume_or_start(state, run, resolved, info, _RUN_FIELDS,
                              train_run.field_defaults(AutoencoderTrainConfig))
    # 2. the training frames: this rank's share of a rendered pool, or the shards
    data: ShardSource | PoolSource = (ShardSource(config, info) if config.data_dir
                                      else PoolSource(config, info))
    ddp = wrap_ddp(ReconAndLatent(state.model), info)
    ddp.train()
    loop = train_run.RunLoop(run, state, resolved, info, desc="autoencoder", rate_name="frames_per_s")
    with loop:
        while state.step < run.steps and not loop.stopped:
            step = state.step + 1
            # 1. frames of this step
            x = data.batch_at(step)  # (B, 3, R, R) in [-1, 1]
            # 2. reconstruction loss
            with autocast(dev, optim.bf16):
                loss, term = training_loss(ddp, x, config, anchor, scale)
            # 3. backward, clip, optimizer and LR step, EMA
            grad_norm, lr = train_run.optimizer_step(state, loss, optim.grad_clip)
            state.step = step
            state.data_state = {"source": data.name, "seed": run.seed, "next_step": step + 1}
            # 4. log, checkpoint
            loop.end_step(step, loss, lr=lr, grad_norm=grad_norm, items=config.batch_size,
                          extra=None if term is None else {"anchor_mse": float(term)})
    export, psnr = (finish(state.ema.model if state.ema else state.model, data.sample(), config,
                           Path(run.out_dir), dev, anchor) if info.is_main else (None, None))
    return TrainResult(loop.losses, loop.checkpoint(), state.step, export, psnr)


class PoolSource:
    """Frames of this rank's share of a rendered pool; step ``n`` on rank ``r`` draws them with
    ``pool_generator(seed, n, r)``."""

    name = "pool"

    def __init__(self, config: AutoencoderTrainConfig, info: DistInfo) -> None:
        pool = PoolConfig(trajectories=config.pool_trajectories, steps=config.pool_steps, size=config.resolution,
                          workers=config.pool_workers, supersample=config.pool_supersample, seed=config.run.seed)
        self.pool = ClipPool(pool, info.device, info.rank, info.world_size, progress=info.is_main)
        self.seed, self.batch, self.rank = config.run.seed, config.batch_size, info.rank

    def batch_at(self, step: int) -> torch.Tensor:
        rgb, _ = self.pool.frames(self.batch, pool_generator(self.seed, step, self.rank))  # (B, R, R, 3)
        return to_unit(rgb)  # (B, 3, R, R)

    def sample(self) -> torch.Tensor:
        """About 1024 uint8 training frames (N, R, R, 3): whole trajectories from the first."""
        return self.pool.rgb[: max(1, 1024 // self.pool.frames_per_trajectory)].flatten(0, 1)


class ShardSource:
    """Frames of a shard dataset's training scenes (:class:`~.flow_matching.ShardFrames`: step ``n`` is a
    pure function of ``(seed, n, rank)``), centre-cropped and resized to ``resolution``."""

    name = "shards"

    def __init__(self, config: AutoencoderTrainConfig, info: DistInfo) -> None:
        self.frames = ShardFrames(str(config.data_dir), config.run.seed, config.batch_size, info,
                                  config.verify_data, seed_below=HELDOUT_START)
        self.resolution = config.resolution

    def batch_at(self, step: int) -> torch.Tensor:
        return to_model_images(self.frames.batch_at(step)[0], self.resolution)  # (B, 3, R, R)

    def sample(self) -> torch.Tensor:
        """The first 1024 training frames (N, R, R, 3) uint8, at the training resolution."""
        x = to_model_images(self.frames.first_frames(1024), self.resolution)  # (N, 3, R, R)
        return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def build_initial(config: AutoencoderTrainConfig) -> nn.Module:
    """The preset's AutoencoderDC, with ``init_weights`` loaded (strictly: all of it, or with
    ``init_encoder_only`` every encoder tensor) and the encoder frozen if asked."""
    ae = build_autoencoder(config.spec())
    if config.init_weights is None:
        return ae
    from sana_world.generators.zoo import load_state_dict

    folder = Path(config.init_weights)
    weights = load_state_dict(folder)  # every shard; a folder without weights raises
    if config.init_encoder_only:
        load_encoder(ae, weights, folder)
    else:
        ae.load_state_dict(weights, strict=True)
    scale = json.loads((folder / "config.json").read_text())["scaling_factor"]
    ae.register_to_config(scaling_factor=float(scale))
    if config.freeze_encoder:
        ae.encoder.requires_grad_(False)
    return ae


def load_encoder(ae: nn.Module, weights: dict[str, torch.Tensor], source: Path | str) -> None:
    """Load the ``encoder.*`` tensors of ``weights`` into ``ae``'s encoder; every encoder tensor must be
    there with ``ae``'s shape (the two encoders are one architecture), the decoder's are not read."""
    enc = {k.removeprefix("encoder."): v for k, v in weights.items() if k.startswith("encoder.")}
    mine = ae.encoder.state_dict()
    bad = sorted(k for k in mine if k in enc and enc[k].shape != mine[k].shape)
    if set(enc) != set(mine) or bad:
        raise ValueError(f"{source}: its encoder is not this preset's: missing {sorted(set(mine) - set(enc))[:5]}, "
                         f"unexpected {sorted(set(enc) - set(mine))[:5]}, shapes differ {bad[:5]}")
    ae.encoder.load_state_dict(enc, strict=True)


def finish(ae: nn.Module, train_frames: torch.Tensor, config: AutoencoderTrainConfig, out: Path,
           device: torch.device, anchor: nn.Module | None = None) -> tuple[Path, float]:
    """Score ``ae`` on frames of held-out scenes (rendered) and on ``train_frames`` (N, R, R, 3) uint8, fit
    its latent scale on those (or keep the init's; with ``anchor``, E0, score the latents' drift too) and
    write ``out/export`` + ``out/eval.json``."""
    ae = ae.eval()
    heldout = ClipPool(PoolConfig(trajectories=config.eval_trajectories, steps=config.pool_steps,
                                  size=config.resolution, workers=config.pool_workers,
                                  supersample=config.pool_supersample, seed=HELDOUT_SEED),
                       device, progress=False)
    frames = heldout.rgb.flatten(0, 1)  # (N, H, W, 3)
    psnr = reconstruction_psnr(ae, frames)
    train_psnr = reconstruction_psnr(ae, train_frames[:1024])
    if config.freeze_encoder or config.anchor_weight > 0:  # the init's latents (or near them): keep its scale
        scale = float(ae.config.scaling_factor)
    else:
        scale = fit_scaling_factor(ae, train_frames)
        ae.register_to_config(scaling_factor=scale)
    export = out / "export"
    ae.save_pretrained(export, safe_serialization=True)
    report = {"preset": config.model, "heldout_psnr_db": psnr, "train_psnr_db": train_psnr,
              "supersample": config.pool_supersample,
              "heldout_frames": int(frames.shape[0]), "scaling_factor": scale,
              "params": sum(p.numel() for p in ae.parameters())}
    if anchor is not None:
        drift = latent_drift(lambda x: ae.encode(x).latent, anchor, frames)
        report.update(anchor_weight=config.anchor_weight, anchor_drift=drift)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    log.info("autoencoder %s: held-out PSNR %.2f dB (train %.2f), scale %.4f", config.model, psnr, train_psnr,
             scale)
    return export, psnr


def build_parser() -> argparse.ArgumentParser:
    return train_run.build_parser(AutoencoderTrainConfig, __doc__.split("\n\n")[0], AE_PRESETS)


def main(argv: list[str] | None = None) -> TrainResult:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    config = train_run.cli_config(parser, AutoencoderTrainConfig, argv)
    result, main_rank = train_run.run_cli(train, config, parser.prog)
    if main_rank:
        print(f"trained to step {result.step}; held-out PSNR {result.heldout_psnr_db:.2f} dB; "
              f"export {result.export}")
    return result


if __name__ == "__main__":
    main()
