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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sana_world.generators.image.dit import PRESETS, SanaDiT, SanaDiTConfig
from sana_world.generators.train.common import (
    EMA,
    DistInfo,
    TensorBoard,
    TrainState,
    all_reduce_mean,
    autocast,
    cleanup_distributed,
    grad_clip,
    is_main_process,
    latest_checkpoint,
    load_checkpoint,
    load_config,
    rank_seed,
    save_checkpoint,
    seed_everything,
    set_gradient_checkpointing,
    setup_distributed,
    warmup_constant,
    wrap_ddp,
)

_SAMPLE_TAG = 7  # seed word of the (fixed) sampling noise, apart from any step number's
# fields that may change between a run and its resume without breaking exactness
_RUN_FIELDS = ("steps", "resume", "out_dir", "log_every", "ckpt_every", "sample_every", "keep_last",
               "progress", "device", "num_samples", "sample_steps", "sample_guidance")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FlowMatchingConfig:
    """One flow-matching run. Defaults follow SANA (AdamW stands in for CAME); sizes are per rank."""

    model: str | SanaDiTConfig = _f("tiny", "SanaDiT preset name (in/caption channels adapted to the "
                                    "codec and text encoder) or a full SanaDiTConfig (checked)")
    autoencoder: str = _f("pixels", '"pixels" (identity codec, latents = images in [-1, 1]) or a local '
                          "AutoencoderDC folder")
    text_encoder: str = _f("procedural", '"procedural" (offline ProceduralTextEncoder) or a local '
                           "Gemma folder")
    data: str = _f("shards", '"shards" (data_dir) or "stream" (GPUStream rendered on the device)')
    data_dir: str | None = _f(None, "shard directory (sana_world.data.generate output)")
    verify_data: bool = _f(True, "hash every shard before training")
    stream_steps: int = _f(7, "trajectory length of the stream (frames per trajectory - 1)")
    resolution: int = _f(128, "training image side (frames are centre-cropped and resized to it)")
    batch_size: int = _f(32, "images per rank per step")
    steps: int = _f(1000, "total optimizer steps")
    lr: float = _f(1e-4, "peak learning rate")
    warmup_steps: int = _f(2000, "linear warm-up steps, constant after")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    adam_betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas")
    logit_mean: float = _f(0.0, "mean of the logit-normal sigma distribution")
    logit_std: float = _f(1.0, "std of the logit-normal sigma distribution")
    shift: float = _f(3.0, "flow shift s: sigma' = s sigma / (1 + (s - 1) sigma)")
    cfg_dropout: float = _f(0.1, "probability of replacing a caption by the null caption")
    ema_decay: float = _f(0.9999, "EMA decay per step")
    grad_clip: float = _f(0.1, "global gradient-norm clip (<= 0: off)")
    bf16: bool = _f(False, "bf16 autocast (CUDA only)")
    grad_checkpointing: bool = _f(False, "recompute blocks in the backward pass")
    seed: int = _f(0, "seed of the init, the data order and every step's noise")
    out_dir: str = _f("runs/flow_matching", "checkpoints/ and tb/ go here")
    device: str | None = _f(None, "None: cuda:<local rank> if available, else cpu")
    resume: bool = _f(False, "continue from the latest checkpoint in out_dir/checkpoints (must exist)")
    log_every: int = _f(10, "TensorBoard scalars every N steps")
    ckpt_every: int = _f(1000, "checkpoint every N steps (and at the end)")
    keep_last: int = _f(3, "checkpoints kept")
    sample_every: int = _f(0, "EMA samples to TensorBoard every N steps (0: never)")
    num_samples: int = _f(4, "images per sample grid")
    sample_steps: int = _f(20, "Flow-Euler steps when sampling")
    sample_guidance: float = _f(4.5, "CFG scale when sampling")
    progress: bool = _f(True, "tqdm progress bar on the main process")

    def __post_init__(self) -> None:
        for name in ("resolution", "batch_size", "steps", "log_every", "ckpt_every", "keep_last",
                     "stream_steps", "num_samples", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data not in ("shards", "stream"):
            raise ValueError(f'data must be "shards" or "stream", got {self.data!r}')
        if self.data == "shards" and not self.data_dir:
            raise ValueError('data="shards" needs data_dir')
        if isinstance(self.model, str) and self.model not in PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; choose one of {sorted(PRESETS)}")
        if not 0.0 <= self.cfg_dropout <= 1.0 or not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"cfg_dropout and ema_decay must lie in [0, 1], got {self.cfg_dropout}, "
                             f"{self.ema_decay}")
        if self.shift <= 0 or self.logit_std <= 0 or self.lr <= 0:
            raise ValueError(f"shift, logit_std and lr must be > 0, got {self.shift}, {self.logit_std}, "
                             f"{self.lr}")
        if self.warmup_steps < 0 or self.sample_every < 0:
            raise ValueError("warmup_steps and sample_every must be >= 0")


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
                       hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unweighted MSE between the network's velocity at ``x_sigma`` and ``v = eps - x0``."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
    x_t = (1.0 - s) * x0 + s * eps  # (B, C, h, w)
    target = eps - x0  # (B, C, h, w)
    pred = model(x_t, 1000.0 * sigma, hidden, mask)  # (B, C, h, w)
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
    d = dataclasses.asdict(config)
    d["preset"] = config.model if isinstance(config.model, str) else None
    d["model"] = dataclasses.asdict(model_cfg)
    d["adam_betas"] = list(config.adam_betas)
    return {"_class_name": "SanaDiT", "_trainer": "sana_world.generators.train.flow_matching", **d}


# --- Data: the frames of each step as a pure function of (seed, step, rank) ------------------------------


class ShardFrames:
    """Single frames of a shard dataset; step ``n`` of ``world`` ranks reads global positions
    ``[(n - 1) W B, n W B)`` of an endless sequence of per-epoch permutations of every frame."""

    def __init__(self, root: str, seed: int, batch_size: int, info: DistInfo, verify: bool) -> None:
        from sana_world.data.shards import ShardFile, load_manifest

        self.root = Path(root)
        manifest = load_manifest(self.root)
        self.files = [ShardFile(self.root, e, manifest, checksum=verify) for e in manifest["shards"]]
        self.frames = int(manifest["steps"]) + 1
        # global trajectory index -> (shard, index within shard)
        self.where = [(si, j) for si, e in enumerate(manifest["shards"]) for j in range(int(e["count"]))]
        self.num_frames = len(self.where) * self.frames
        self.seed, self.batch, self.info = seed, batch_size, info
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_frames))
        return self._perm[1]

    def indices(self, step: int) -> list[int]:
        """Global frame ids of this rank's part of step ``step`` (1-based)."""
        first = (step - 1) * self.info.world_size * self.batch + self.info.rank * self.batch
        out = []
        for p in range(first, first + self.batch):
            epoch, i = divmod(p, self.num_frames)
            out.append(int(self._permutation(epoch)[i]))
        return out

    def batch_at(self, step: int) -> tuple[torch.Tensor, list[str]]:
        """uint8 frames (B, H, W, 3) on the device and their captions."""
        rgb, captions = [], []
        for g in self.indices(step):
            traj, f = divmod(g, self.frames)
            si, j = self.where[traj]
            rgb.append(self.files[si].read("rgb", j, f, f + 1)[0])  # (H, W, 3)
            captions.append(self.files[si].captions[j])
        return torch.stack(rgb).to(self.info.device), captions


class StreamFrames:
    """Frames rendered on the device by :class:`~sana_world.data.GPUStream`: step ``n`` on rank ``r``
    renders stream batch ``(n - 1) W + r`` and keeps a seeded random ``batch_size`` of its frames."""

    def __init__(self, config: FlowMatchingConfig, info: DistInfo) -> None:
        from sana_world.data.stream import GPUStream

        frames = config.stream_steps + 1
        self.stream = GPUStream(batch_size=math.ceil(config.batch_size / frames), steps=config.stream_steps,
                                height=config.resolution, width=config.resolution, device=info.device,
                                seed=config.seed)
        self.seed, self.batch, self.info = config.seed, config.batch_size, info

    def batch_at(self, step: int) -> tuple[torch.Tensor, list[str]]:
        out = self.stream.batch((step - 1) * self.info.world_size + self.info.rank)
        n, frames = out["rgb"].shape[:2]
        keep = np.random.default_rng([self.seed, step, self.info.rank]).permutation(n * frames)[: self.batch]
        rgb = out["rgb"].flatten(0, 1)[torch.as_tensor(keep, device=out["rgb"].device)]  # (B, H, W, 3)
        return rgb, [out["caption"][int(k) // frames] for k in keep]


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


def _check_resume(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in _RUN_FIELDS and saved.get(k) != current.get(k))
    if diff:
        raise ValueError(f"cannot resume exactly from {path}: config differs in {diff} "
                         f"(saved {[saved.get(k) for k in diff]}, now {[current.get(k) for k in diff]})")


@torch.no_grad()
def sample_images(model: nn.Module, codec: nn.Module, text: Any, captions: list[str],
                  config: FlowMatchingConfig, latent_shape: tuple[int, int, int],
                  device: torch.device) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]: Flow-Euler with CFG from fixed noise (same at every call)."""
    from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig

    pipe = ImagePipeline(model, text, codec, ImagePipelineConfig(
        sampler="euler", num_steps=config.sample_steps, shift=config.shift, guidance_scale=config.sample_guidance))
    gen = torch.Generator(device).manual_seed(rank_seed(config.seed, _SAMPLE_TAG))
    noise = torch.randn(len(captions), *latent_shape, generator=gen, device=device)  # (N, C, h, w)
    f = codec.downsample_factor
    images = pipe(captions, latent_shape[1] * f, latent_shape[2] * f, noise=noise, output="float")
    return ((images + 1) / 2).cpu()


def train(config: FlowMatchingConfig) -> TrainResult:
    """Train (or, with ``config.resume``, continue) a SanaDiT with flow matching; see the module doc."""
    from tqdm import tqdm

    from sana_world.generators.text_encoders import caption_dropout

    info = setup_distributed(config.device)
    dev = info.device
    out = Path(config.out_dir)
    ckpt_root = out / "checkpoints"
    # 0. components; the init is identical on every rank (DDP also broadcasts rank 0's weights)
    codec = build_codec(config.autoencoder, dev)
    text = build_text_encoder(config.text_encoder, dev)
    f = codec.downsample_factor
    if config.resolution % f:
        raise ValueError(f"resolution {config.resolution} is not divisible by the codec's factor {f}")
    latent_shape = (codec.latent_channels, config.resolution // f, config.resolution // f)
    model_cfg = resolve_model_config(config.model, codec.latent_channels, text.dim, latent_shape[1])
    if latent_shape[1] % model_cfg.patch_size:
        raise ValueError(f"latent side {latent_shape[1]} is not divisible by patch_size "
                         f"{model_cfg.patch_size}")
    torch.manual_seed(rank_seed(config.seed, 0, 0))
    model = SanaDiT(model_cfg).to(dev)
    set_gradient_checkpointing(model, config.grad_checkpointing)
    seed_everything(config.seed, info.rank)
    ema = EMA(model, config.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.adam_betas,
                            weight_decay=config.weight_decay)
    sched = warmup_constant(opt, config.warmup_steps)
    state = TrainState(model=model, optimizer=opt, scheduler=sched, ema=ema)
    resolved = resolved_config(config, model_cfg)
    # 1. resume, or refuse to mix a fresh run into an old one
    latest = latest_checkpoint(ckpt_root)
    if config.resume:
        if latest is None:
            raise FileNotFoundError(f"resume=True but {ckpt_root} holds no complete checkpoint")
        _check_resume(load_config(latest), resolved, latest)
        load_checkpoint(latest, state, info)
    elif latest is not None:
        raise FileExistsError(f"{ckpt_root} already holds checkpoints ({latest.name}); pass resume=True "
                              "or choose a new out_dir")
    if state.step >= config.steps:
        raise ValueError(f"checkpoint is at step {state.step}, nothing to do for steps={config.steps}")
    data: ShardFrames | StreamFrames = (
        ShardFrames(str(config.data_dir), config.seed, config.batch_size, info, config.verify_data)
        if config.data == "shards" else StreamFrames(config, info))
    null = text.null_embedding().to(dev)  # (1, L, D)
    fixed_captions = data.batch_at(1)[1][: config.num_samples] if config.sample_every else []
    ddp = wrap_ddp(model, info)
    ddp.train()
    tb = TensorBoard(out / "tb", enabled=info.is_main)
    bar = tqdm(total=config.steps, initial=state.step, desc="flow-matching", unit="step",
               disable=not (info.is_main and config.progress))
    losses: list[float] = []
    window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0  # TensorBoard averages
    final: Path | None = None
    try:
        while state.step < config.steps:
            step = state.step + 1
            gen = torch.Generator(dev).manual_seed(rank_seed(config.seed, step, info.rank))
            # 1. batch: frames of GT trajectories and their captions
            rgb, captions = data.batch_at(step)  # (B, H, W, 3) uint8
            images = to_model_images(rgb, config.resolution)  # (B, 3, R, R)
            with torch.no_grad(), autocast(dev, config.bf16):
                # 2. latents
                x0 = codec.encode(images).float()  # (B, C, h, w)
                # 3. captions, each replaced by the null caption with probability cfg_dropout
                emb = caption_dropout(text.encode(captions).to(dev), null, config.cfg_dropout, gen)
            # 4. sigma ~ logit-normal, shifted; noise
            B = x0.shape[0]
            sigma = sample_sigmas(B, config.logit_mean, config.logit_std, config.shift, gen, dev)  # (B,)
            eps = torch.randn(x0.shape, generator=gen, device=dev)  # (B, C, h, w)
            # 5. loss
            with autocast(dev, config.bf16):
                loss = flow_matching_loss(ddp, x0, eps, sigma, emb.hidden, emb.mask)
            # 6. backward, clip, optimizer and LR step, EMA
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = grad_clip(model.parameters(), config.grad_clip)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            ema.update(model)
            state.step = step
            state.data_state = {"source": config.data, "seed": config.seed, "next_step": step + 1}
            # 7. log, checkpoint, sample
            loss_value = float(all_reduce_mean(loss.detach(), info))
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}")
            losses.append(loss_value)
            window_steps, window_loss = window_steps + 1, window_loss + loss_value
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                images_per_s = window_steps * B * info.world_size / elapsed
                tb.scalars({"train/loss": window_loss / window_steps, "train/lr": lr,
                            "train/grad_norm": grad_norm, "train/images_per_s": images_per_s}, step)
                window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0
            if step % config.ckpt_every == 0 or step == config.steps:
                final = save_checkpoint(ckpt_root, state, resolved, info, keep_last=config.keep_last)
            if config.sample_every and step % config.sample_every == 0 and info.is_main:
                tb.images("samples/ema", sample_images(ema.model, codec, text, fixed_captions, config,
                                                       latent_shape, dev), step)
    finally:
        bar.close()
        tb.close()
    assert final is not None  # the last step always checkpoints
    return TrainResult(losses=losses, checkpoint=final, step=state.step)


# --- CLI -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """One flag per config field (``--preset`` for ``model``), help text from the field metadata."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for fld in dataclasses.fields(FlowMatchingConfig):
        default, help_ = fld.default, fld.metadata["help"]
        if fld.name == "model":
            p.add_argument("--preset", dest="model", default=default, choices=sorted(PRESETS), help=help_)
        elif isinstance(default, bool):
            p.add_argument(f"--{fld.name.replace('_', '-')}", default=default,
                           action=argparse.BooleanOptionalAction, help=help_)
        elif isinstance(default, tuple):
            p.add_argument(f"--{fld.name.replace('_', '-')}", default=default, type=float, nargs=len(default),
                           help=help_)
        else:
            p.add_argument(f"--{fld.name.replace('_', '-')}", default=default,
                           type=str if default is None else type(default), help=help_)
    return p


def main(argv: list[str] | None = None) -> TrainResult:
    args = vars(build_parser().parse_args(argv))
    args["adam_betas"] = tuple(args["adam_betas"])
    try:
        result = train(FlowMatchingConfig(**args))
        main_rank = is_main_process()
    finally:
        cleanup_distributed()
    if main_rank:
        print(f"trained to step {result.step}; checkpoint {result.checkpoint}")
    return result


if __name__ == "__main__":
    main()
