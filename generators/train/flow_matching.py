"""SANA flow-matching trainer: text-to-image on frames of ground-truth trajectories.

Objective (notes/sana_family.md, section 3): ``x_sigma = (1 - sigma) x0 + sigma eps``, target
``v = eps - x0``, unweighted MSE; ``sigma`` is logit-normal, then shifted ``s sigma / (1 + (s - 1) sigma)``;
the network sees ``1000 sigma``; captions are replaced by the null caption with probability 0.1.

Exact resume: every random draw of step ``n`` on rank ``r`` comes from a generator seeded by
``(seed, n, r)``, and the frames of step ``n`` are a pure function of ``(seed, n)`` (one permutation of all
frames per epoch), so a run resumed from a checkpoint repeats the uninterrupted run bit for bit.

    python -m sana_world.generators.train.flow_matching --preset tiny --data-dir DS --steps 200
    torchrun --nproc-per-node 8 -m sana_world.generators.train.flow_matching --preset small ...
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sana_world.generators.image.dit import PRESETS, SanaDiT, SanaDiTConfig
from sana_world.generators.train.common import DistInfo, autocast, rank_seed, setup_distributed, wrap_ddp
from sana_world.generators.train.errors import usage_error
from sana_world.generators.train import run as train_run
from sana_world.generators.train.run import OptimConfig, RunConfig, nested_field
from sana_world.generators.train.run import config_field as _f

_SAMPLE_TAG = 7  # seed word of the (fixed) sampling noise, apart from any step number's
# fields that may change between a run and its resume without breaking exactness
_RUN_FIELDS = (*train_run.RESUMABLE_FIELDS, "sample_every", "num_samples", "sample_steps",
               "sample_guidance", "init_weights")  # a resume loads the checkpoint's weights, whatever the init was
INPUTS = ("autoencoder", "text_encoder", "data_dir")  # compared by content on a resume (train.resume)
DENSE_TIMESTEP_SCALE = 1e-3  # dense_time: the model's timestep is sigma itself


@dataclass(frozen=True)
class FlowMatchingConfig:
    """One flow-matching run. Defaults follow SANA (AdamW stands in for CAME); sizes are per rank.
    :meth:`from_flat` builds one from flat keyword arguments (``lr=``,
    ``steps=``), as the CLI does."""

    model: str | SanaDiTConfig = _f("tiny", "SanaDiT preset name (in/caption channels adapted to the "
                                    "codec and text encoder) or a full SanaDiTConfig (checked)")
    autoencoder: str = _f("pixels", '"pixels" (identity codec, latents = images in [-1, 1]) or a local '
                          "AutoencoderDC folder")
    text_encoder: str = _f("procedural", '"procedural" (offline ProceduralTextEncoder) or a local '
                           "Gemma folder")
    data: str = _f("shards", '"shards" (data_dir), "stream" (GPUStream rendered on the device every step) or '
                   '"pool" (trajectories rendered on the device once, see data.pool)')
    pool_trajectories: int = _f(1024, 'trajectories in the pool (data="pool"; all ranks together)')
    pool_workers: int = _f(8, 'CPU processes planning pooled trajectories (data="pool")')
    pool_supersample: int = _f(1, 'rays a side per pixel of pooled frames, box-filtered down (data="pool"; '
                               'antialiased frames, PoolConfig.supersample)')
    init_weights: str | None = _f(None, "start from these weights (a folder of .safetensors shards, e.g. a zoo "
                                  "image folder or a run's export/) instead of a fresh init: a fine-tune, e.g. "
                                  "on a new autoencoder's latents")
    data_dir: str | None = _f(None, "shard directory (sana_world.data.generate output)")
    verify_data: bool = _f(True, "hash every shard before training")
    stream_steps: int = _f(7, "trajectory length of the stream (frames per trajectory - 1)")
    resolution: int = _f(128, "training image side (frames are centre-cropped and resized to it)")
    batch_size: int = _f(32, "images per rank per step")
    logit_mean: float = _f(0.0, "mean of the logit-normal sigma distribution")
    logit_std: float = _f(1.0, "std of the logit-normal sigma distribution")
    shift: float = _f(3.0, "flow shift s: sigma' = s sigma / (1 + (s - 1) sigma)")
    cfg_dropout: float = _f(0.1, "probability of replacing a caption by the null caption")
    dense_time: bool = _f(False, "feed the model sigma itself, fractional, instead of 1000 sigma (timestep_scale "
                          "0.001): SANA-Sprint's dense time embedding, a teacher for stable sCM distillation "
                          "(generators.train.sprint)")
    optim: OptimConfig = nested_field(OptimConfig, "optimizer, LR schedule, EMA, numerics")
    run: RunConfig = nested_field(lambda: RunConfig(out_dir="runs/flow_matching"),
                                  "length, seed, output, logging, checkpoints")
    sample_every: int = _f(0, "EMA samples to TensorBoard every N steps (0: never)")
    num_samples: int = _f(4, "images per sample grid")
    sample_steps: int = _f(20, "Flow-Euler steps when sampling")
    sample_guidance: float = _f(4.5, "CFG scale when sampling")

    def __post_init__(self) -> None:
        for name in ("resolution", "batch_size", "stream_steps", "num_samples", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data not in ("shards", "stream", "pool"):
            raise ValueError(f'data must be "shards", "stream" or "pool", got {self.data!r}')
        if self.data == "shards" and not self.data_dir:
            raise ValueError('data="shards" needs data_dir')
        if isinstance(self.model, str) and self.model not in PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; choose one of {sorted(PRESETS)}")
        if not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"cfg_dropout must lie in [0, 1], got {self.cfg_dropout}")
        if self.shift <= 0 or self.logit_std <= 0:
            raise ValueError(f"shift and logit_std must be > 0, got {self.shift}, {self.logit_std}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if isinstance(self.pool_supersample, bool) or not isinstance(self.pool_supersample, int) \
                or self.pool_supersample < 1:
            raise ValueError(f"pool_supersample must be an int >= 1, got {self.pool_supersample!r}")

    @classmethod
    def from_flat(cls, **kwargs: Any) -> FlowMatchingConfig:
        """A config from flat keyword arguments (``lr=`` goes into ``optim``, ``steps=`` into ``run``)."""
        return train_run.config_from_flat(cls, **kwargs)


@dataclass
class TrainResult:
    losses: list[float]  # mean loss over ranks of every step this call ran
    checkpoint: Path  # the final checkpoint directory
    step: int  # last step trained


# --- The objective ---------------------------------------------------------------------------------------


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """SANA's resolution shift ``s sigma / (1 + (s - 1) sigma)``; maps 0.5 to ``s / (1 + s)``."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_sigmas(n: int, mean: float, std: float, shift: float, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) training sigmas: ``sigmoid(N(mean, std))``, then shifted."""
    u = torch.randn(n, generator=generator, device=device) * std + mean  # (n,)
    return shift_sigma(torch.sigmoid(u), shift)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor,
                       hidden: torch.Tensor, mask: torch.Tensor, timestep_scale: float = 1.0) -> torch.Tensor:
    """Unweighted MSE between the network's velocity at ``x_sigma`` (timestep ``1000 timestep_scale
    sigma``) and ``v = eps - x0``."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
    x_t = (1.0 - s) * x0 + s * eps  # (B, C, h, w)
    target = eps - x0  # (B, C, h, w)
    pred = model(x_t, 1000.0 * timestep_scale * sigma, hidden, mask)  # (B, C, h, w)
    return F.mse_loss(pred.float(), target.float())


# --- Components: codec, text encoder, model --------------------------------------------------------------


class PixelCodec(nn.Module):
    """Identity "autoencoder": latents are the images in [-1, 1], (B, 3, H, W). Lets tests skip the AE."""

    latent_channels = 3
    downsample_factor = 1

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"PixelCodec.encode wants float (B, 3, H, W) in [-1, 1], got {images.dtype} "
                             f"{tuple(images.shape)}")
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def build_codec(name: str, device: torch.device) -> nn.Module:
    if name == "pixels":
        return PixelCodec().to(device)
    from sana_world.generators.autoencoder import LatentCodec, load_autoencoder

    return LatentCodec(load_autoencoder(name, device=device)).eval().requires_grad_(False)


def build_text_encoder(name: str, device: torch.device) -> Any:
    from sana_world.generators import text_encoders

    if name == "procedural":
        return text_encoders.ProceduralTextEncoder().to(device)
    return text_encoders.GemmaTextEncoder.from_pretrained(name, device=device, dtype=torch.float32)


def resolve_model_config(model: str | SanaDiTConfig, latent_channels: int, caption_channels: int,
                         latent_size: int) -> SanaDiTConfig:
    """A preset adapted to the codec / text encoder, or an explicit config checked against them."""
    if isinstance(model, str):
        return dataclasses.replace(PRESETS[model](), in_channels=latent_channels,
                                   caption_channels=caption_channels, sample_size=latent_size)
    if model.in_channels != latent_channels or model.caption_channels != caption_channels:
        raise ValueError(f"model config has in_channels={model.in_channels}, caption_channels="
                         f"{model.caption_channels}; the codec gives {latent_channels} latent channels and "
                         f"the text encoder {caption_channels}-d captions")
    return model


def resolved_config(config: FlowMatchingConfig, model_cfg: SanaDiTConfig) -> dict[str, Any]:
    """The JSON written beside every checkpoint (diffusers-like ``config.json``)."""
    return train_run.resolved_config(config, model_cfg, "SanaDiT",
                                     "sana_world.generators.train.flow_matching", inputs=INPUTS)


# --- Data: the frames of each step as a pure function of (seed, step, rank) ------------------------------


class ShardFrames:
    """Single frames of a shard dataset; step ``n`` of ``world`` ranks reads global positions
    ``[(n - 1) W B, n W B)`` of an endless sequence of per-epoch permutations of every frame. With
    ``seed_below``, trajectories of scene seeds from it on (held-out scenes) are left out."""

    def __init__(self, root: str, seed: int, batch_size: int, info: DistInfo, verify: bool,
                 seed_below: int | None = None) -> None:
        from sana_world.data.shards import ShardFile, load_manifest

        self.root = Path(root)
        manifest = load_manifest(self.root)
        self.files = [ShardFile(self.root, e, manifest, checksum=verify) for e in manifest["shards"]]
        self.frames = int(manifest["steps"]) + 1
        # global trajectory index -> (shard, index within shard)
        self.where = [(si, j) for si, e in enumerate(manifest["shards"]) for j in range(int(e["count"]))
                      if seed_below is None or int(self.files[si].read("seed", j)) < seed_below]
        if not self.where:
            raise usage_error(ValueError, f"every trajectory in {root} is a held-out scene (seed >= "
                              f"{seed_below:,}); <data_dir> needs training scenes")
        self.num_frames = len(self.where) * self.frames
        self.info = info
        self.order = train_run.EpochOrder(self.num_frames, seed, batch_size, info)

    def indices(self, step: int) -> list[int]:
        """Global frame ids of this rank's part of step ``step`` (1-based)."""
        return self.order.indices(step)

    def batch_at(self, step: int) -> tuple[torch.Tensor, list[str]]:
        """uint8 frames (B, H, W, 3) on the device and their captions."""
        rgb, captions = [], []
        for g in self.indices(step):
            traj, f = divmod(g, self.frames)
            si, j = self.where[traj]
            rgb.append(self.files[si].read("rgb", j, f, f + 1)[0])  # (H, W, 3)
            captions.append(self.files[si].captions[j])
        return torch.stack(rgb).to(self.info.device), captions

    def first_frames(self, count: int) -> torch.Tensor:
        """The first ``count`` frames (or all) in stored order, uint8 (N, H, W, 3) on the device."""
        rgb = []
        for g in range(min(count, self.num_frames)):
            traj, f = divmod(g, self.frames)
            si, j = self.where[traj]
            rgb.append(self.files[si].read("rgb", j, f, f + 1)[0])  # (H, W, 3)
        return torch.stack(rgb).to(self.info.device)


class StreamFrames:
    """Frames rendered on the device by :class:`~sana_world.data.GPUStream`: step ``n`` on rank ``r``
    renders stream batch ``(n - 1) W + r`` and keeps a seeded random ``batch_size`` of its frames."""

    def __init__(self, config: FlowMatchingConfig, info: DistInfo) -> None:
        from sana_world.data.stream import GPUStream

        frames = config.stream_steps + 1
        self.stream = GPUStream(batch_size=math.ceil(config.batch_size / frames), steps=config.stream_steps,
                                height=config.resolution, width=config.resolution, device=info.device,
                                seed=config.run.seed)
        self.seed, self.batch, self.info = config.run.seed, config.batch_size, info

    def batch_at(self, step: int) -> tuple[torch.Tensor, list[str]]:
        out = self.stream.batch((step - 1) * self.info.world_size + self.info.rank)
        n, frames = out["rgb"].shape[:2]
        keep = np.random.default_rng([self.seed, step, self.info.rank]).permutation(n * frames)[: self.batch]
        rgb = out["rgb"].flatten(0, 1)[torch.as_tensor(keep, device=out["rgb"].device)]  # (B, H, W, 3)
        return rgb, [out["caption"][int(k) // frames] for k in keep]


class PoolFrames:
    """Random frames of a device-resident :class:`~sana_world.data.pool.ClipPool` (trajectories of
    ``stream_steps`` steps, this rank's share); step ``n`` on rank ``r`` draws with a generator seeded by
    ``(seed, n, r)``."""

    def __init__(self, config: FlowMatchingConfig, info: DistInfo) -> None:
        from sana_world.data.pool import ClipPool, PoolConfig

        cfg = PoolConfig(trajectories=config.pool_trajectories, steps=config.stream_steps,
                         size=config.resolution, workers=config.pool_workers,
                         supersample=config.pool_supersample, seed=config.run.seed)
        self.pool = ClipPool(cfg, info.device, info.rank, info.world_size, progress=info.is_main)
        self.seed, self.batch, self.info = config.run.seed, config.batch_size, info

    def batch_at(self, step: int) -> tuple[torch.Tensor, list[str]]:
        from sana_world.data.pool import pool_generator

        return self.pool.frames(self.batch, pool_generator(self.seed, step, self.info.rank))


def frame_source(config: Any, info: DistInfo) -> ShardFrames | StreamFrames | PoolFrames:
    """The frames ``config.data`` names (a flow-matching or Sprint config: data, data_dir, batch_size, ...)."""
    if config.data == "shards":
        return ShardFrames(str(config.data_dir), config.run.seed, config.batch_size, info, config.verify_data)
    return StreamFrames(config, info) if config.data == "stream" else PoolFrames(config, info)


def to_model_images(rgb: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, R, R) in [-1, 1]: centre square crop, area/bilinear resize."""
    x = rgb.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
    H, W = x.shape[-2:]
    side = min(H, W)
    x = x[..., (H - side) // 2:(H - side) // 2 + side, (W - side) // 2:(W - side) // 2 + side]
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)
    return x


# --- Training --------------------------------------------------------------------------------------------


@torch.no_grad()
def latent_batch(data: Any, step: int, codec: nn.Module, text: Any, resolution: int,
                 bf16: bool) -> tuple[torch.Tensor, Any]:
    """Step ``step``'s frames of ``data`` as latents (B, C, h, w) float32 and their captions encoded (a
    flow-matching or Sprint batch)."""
    rgb, captions = data.batch_at(step)  # (B, H, W, 3) uint8
    dev = rgb.device
    with autocast(dev, bf16):
        x0 = codec.encode(to_model_images(rgb, resolution)).float()  # (B, C, h, w)
        emb = text.encode(captions).to(dev)
    return x0, emb


@torch.no_grad()
def sample_images(model: nn.Module, codec: nn.Module, text: Any, captions: list[str],
                  config: FlowMatchingConfig, latent_shape: tuple[int, int, int],
                  device: torch.device) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]: Flow-Euler with CFG from fixed noise (same at every call)."""
    from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig

    pipe = ImagePipeline(model, text, codec, ImagePipelineConfig(
        sampler="euler", num_steps=config.sample_steps, shift=config.shift, guidance_scale=config.sample_guidance))
    gen = torch.Generator(device).manual_seed(rank_seed(config.run.seed, _SAMPLE_TAG))
    noise = torch.randn(len(captions), *latent_shape, generator=gen, device=device)  # (N, C, h, w)
    f = codec.downsample_factor
    images = pipe(captions, latent_shape[1] * f, latent_shape[2] * f, noise=noise, output="float")
    return ((images + 1) / 2).cpu()


def build_components(config: FlowMatchingConfig | Any, device: torch.device) -> tuple[nn.Module, Any, int]:
    """The codec and text encoder of ``config`` and the latent side of its ``resolution``."""
    codec = build_codec(config.autoencoder, device)
    text = build_text_encoder(config.text_encoder, device)
    f = codec.downsample_factor
    if config.resolution % f:
        raise usage_error(ValueError, f"<resolution={config.resolution}> is not divisible by the codec's "
                          f"factor {f}; pick a multiple of {f}")
    return codec, text, config.resolution // f


def train(config: FlowMatchingConfig) -> TrainResult:
    """Train (or, with ``config.run.resume``, continue) a SanaDiT with flow matching; see the module doc."""
    from sana_world.generators.text_encoders import caption_dropout

    run, optim = config.run, config.optim
    info = setup_distributed(run.device)
    dev = info.device
    # 0. components; the init is identical on every rank (DDP also broadcasts rank 0's weights)
    codec, text, side = build_components(config, dev)
    latent_shape = (codec.latent_channels, side, side)
    model_cfg = resolve_model_config(config.model, codec.latent_channels, text.dim, side)
    if config.dense_time:
        model_cfg = dataclasses.replace(model_cfg, timestep_scale=DENSE_TIMESTEP_SCALE, truncate_timesteps=False)
    if side % model_cfg.patch_size:
        raise usage_error(ValueError, f"latent side {side} (<resolution={config.resolution}> / codec factor "
                          f"{codec.downsample_factor}) is not divisible by patch_size {model_cfg.patch_size}")
    build = train_run.initialised(lambda: SanaDiT(model_cfg), config.init_weights)
    state = train_run.init_train_state(build, optim, run.seed, info)
    model, ema = state.model, state.ema
    resolved = resolved_config(config, model_cfg)
    # 1. resume, or refuse to mix a fresh run into an old one
    train_run.resume_or_start(state, run, resolved, info, _RUN_FIELDS,
                              train_run.field_defaults(FlowMatchingConfig))
    data = frame_source(config, info)
    null = text.null_embedding().to(dev)  # (1, L, D)
    fixed_captions = data.batch_at(1)[1][: config.num_samples] if config.sample_every else []
    ddp = wrap_ddp(model, info)
    ddp.train()
    loop = train_run.RunLoop(run, state, resolved, info, desc="flow-matching", rate_name="images_per_s")
    with loop:
        while state.step < run.steps and not loop.stopped:
            step = state.step + 1
            gen = torch.Generator(dev).manual_seed(rank_seed(run.seed, step, info.rank))
            # 1. batch: latents of GT frames and their encoded captions
            x0, emb = latent_batch(data, step, codec, text, config.resolution, optim.bf16)  # x0 (B, C, h, w)
            # 2. captions, each replaced by the null caption with probability cfg_dropout
            emb = caption_dropout(emb, null, config.cfg_dropout, gen)
            # 3. sigma ~ logit-normal, shifted; noise
            B = x0.shape[0]
            sigma = sample_sigmas(B, config.logit_mean, config.logit_std, config.shift, gen, dev)  # (B,)
            eps = torch.randn(x0.shape, generator=gen, device=dev)  # (B, C, h, w)
            # 4. loss
            with autocast(dev, optim.bf16):
                loss = flow_matching_loss(ddp, x0, eps, sigma, emb.hidden, emb.mask, model_cfg.timestep_scale)
            # 5. backward, clip, optimizer and LR step, EMA
            grad_norm, lr = train_run.optimizer_step(state, loss, optim.grad_clip)
            state.step = step
            state.data_state = {"source": config.data, "seed": run.seed, "next_step": step + 1}
            # 6. log, checkpoint, sample
            loop.end_step(step, loss, lr=lr, grad_norm=grad_norm, items=B)
            if config.sample_every and step % config.sample_every == 0 and info.is_main:
                loop.tb.images("samples/ema", sample_images(ema.model, codec, text, fixed_captions, config,
                                                            latent_shape, dev), step)
    return TrainResult(losses=loop.losses, checkpoint=loop.checkpoint(), step=state.step)


# --- CLI -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """One flag per (flat) config field (``--preset`` for ``model``), help text from the field metadata."""
    return train_run.build_parser(FlowMatchingConfig, __doc__.split("\n\n")[0], PRESETS)


def main(argv: list[str] | None = None) -> TrainResult:
    return train_run.cli_main(build_parser(), FlowMatchingConfig, train, argv)


if __name__ == "__main__":
    main()
