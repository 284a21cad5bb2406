"""SANA-WM world-model trainer: camera-conditioned video flow matching with diffusion forcing.

Objective (notes/sana_family.md, sections 3 and 7): each latent frame ``t`` of a GT clip gets its own
``sigma_t`` (logit-normal, then shifted; diffusion forcing), ``x_t = (1 - sigma_t) x0_t + sigma_t eps_t``,
the target is ``v = eps - x0`` and the loss is the unweighted MSE over the non-anchor frames. Latent frame 0
may stay clean as the anchor (image conditioning: its timestep is ``min(t, 0)`` via
:func:`~sana_world.world_model.image_conditioned_timesteps`). Cameras come from the GT poses and
intrinsics (:mod:`~sana_world.generators.train.wm_data` documents how raw frames map to latent frames,
``camera_conditions`` and ``chunk_plucker``). With ``chunk_size`` the model runs chunk-causally (each
chunk of latent frames sees itself and earlier chunks), if this ``SanaWM`` supports it; otherwise the run
falls back to bidirectional attention and says so in the log and in ``TrainResult.chunk_causal``.

Self-forcing (optional, probability ``self_forcing_prob`` per step): pick a chunk ``c >= 1``, stream
chunks ``< c`` from the GT first frame with the model's own samples exactly as the Dreamer does (no
gradient), then train chunk ``c`` and later frames on that context (GT targets, context re-noised to
``self_forcing_context_sigma``, no loss on it).

Exact resume as in :mod:`~sana_world.generators.train.flow_matching`: every draw of step ``n`` on rank ``r``
comes from a generator seeded by ``(seed, n, r)`` and the clips of step ``n`` are a pure function of
``(seed, n)``.

    python -m sana_world.generators.train.world_model --preset tiny --data-dir DS --clip-frames 9
    torchrun --nproc-per-node 8 -m sana_world.generators.train.world_model --preset small ...
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.generators.train import wm_data
from sana_world.generators.train.attention_cost import check_clip_cost, clip_cost
from sana_world.generators.train.common import autocast, rank_seed, setup_distributed, unwrap, wrap_ddp
from sana_world.generators.train.flow_matching import build_components, sample_sigmas
from sana_world.generators.train import run as train_run
from sana_world.generators.train.errors import usage_error
from sana_world.generators.train.run import OptimConfig, RunConfig, nested_field
from sana_world.generators.train.run import config_field as _f
from sana_world.world_model import PRESETS, SanaWM, SanaWMConfig
from sana_world.world_model.cameras import WMCameraInputs

log = logging.getLogger(__name__)

_SAMPLE_TAG = 7  # seed word of the (fixed) dream noise, apart from any step number's
# fields that may change between a run and its resume without breaking exactness
_RUN_FIELDS = (*train_run.RESUMABLE_FIELDS, "sample_every", "num_samples", "sample_steps", "sample_mode",
               "sample_fps", "allow_large_attention",
               "init_weights")  # a resume loads the checkpoint's weights, whatever the init was
INPUTS = ("autoencoder", "text_encoder", "data_dir")  # compared by content on a resume (train.resume)
_OPTIONAL_INT = ("chunk_size", "temporal_stride", "clip_spacing")


@dataclass(frozen=True)
class WorldModelTrainConfig:
    """One world-model run; sizes are per rank. AdamW stands in for CAME. :meth:`from_flat` builds one
    from flat keyword arguments (``lr=``, ``steps=``), as the CLI does."""

    model: str | SanaWMConfig = _f("tiny", "SanaWM preset (in/caption channels and plucker_stride adapted "
                                   "to codec, text encoder and temporal_stride) or a full SanaWMConfig "
                                   "(checked)")
    autoencoder: str = _f("pixels", '"pixels" (identity codec, latents = frames in [-1, 1]) or a local '
                          "AutoencoderDC folder; both encode frame by frame (no temporal compression)")
    text_encoder: str = _f("procedural", '"procedural" (offline ProceduralTextEncoder) or a local Gemma '
                           "folder")
    init_weights: str | None = _f(None, "start from these weights (a folder of .safetensors shards, e.g. a zoo "
                                  "world_model folder or a run's export/) instead of a fresh init")
    data: str = _f("shards", '"shards" (data_dir), "stream" (GPUStream clips rendered on the device every '
                   'step) or "pool" (a pool of trajectories rendered on the device once, see data.pool)')
    pool_trajectories: int = _f(1024, 'trajectories in the pool (data="pool"; all ranks together)')
    pool_steps: int = _f(40, 'steps per pooled trajectory (data="pool"; clips are random windows)')
    pool_workers: int = _f(8, 'CPU processes planning pooled trajectories (data="pool")')
    pool_supersample: int = _f(1, 'rays a side per pixel of pooled frames, box-filtered down (data="pool"; '
                               'antialiased frames, PoolConfig.supersample)')
    data_dir: str | None = _f(None, "shard directory (sana_world.data.generate output)")
    verify_data: bool = _f(True, "hash every shard before training")
    clip_frames: int = _f(17, "raw frames per clip, temporal_stride * k + 1; latent frames are raw frames "
                          "0, s, ..., s k (T_lat = k + 1), the frames between them only feed chunk_plucker")
    temporal_stride: int | None = _f(None, "raw frames per latent frame s (None: the model's plucker_stride; "
                                     "8 for LTX-2 parity, smaller for short clips)")
    clip_spacing: int | None = _f(None, "raw frames between clip starts within a shard trajectory "
                                  "(None: clip_frames, non-overlapping)")
    resolution: int = _f(64, "training frame side (centre square crop, resized; intrinsics follow)")
    batch_size: int = _f(8, "clips per rank per step")
    chunk_size: int | None = _f(3, "latent frames per causal chunk, aligned to frame 0 (SANA-WM streaming: "
                                "3); None: bidirectional")
    anchor_frame: bool = _f(True, "keep latent frame 0 clean as the anchor (image conditioning), no loss "
                            "on it")
    logit_mean: float = _f(0.0, "mean of the logit-normal per-frame sigma distribution")
    logit_std: float = _f(1.0, "std of the logit-normal per-frame sigma distribution")
    shift: float = _f(3.0, "flow shift s: sigma' = s sigma / (1 + (s - 1) sigma) (SANA-WM 720p: 9.95)")
    sigma_one_prob: float = _f(0.0, "probability per latent frame of training at sigma = 1 (pure noise), the "
                               "input of a one-step sampler, which the logit-normal draws rarely")
    context_sigma_prob: float = _f(0.0, "probability per latent frame of training at exactly context_sigma_value, "
                                   "the level at which the Dreamer feeds its frames back (with sigma_one_prob: "
                                   "the one-step dream's inputs, a frame at 1 after frames at that level)")
    context_sigma_value: float = _f(0.5, "the sigma of context_sigma_prob (the zoo's dream context_sigma)")
    cfg_dropout: float = _f(0.1, "probability of replacing a caption by the null caption")
    self_forcing_prob: float = _f(0.0, "probability per step of training a chunk on the model's own "
                                  "generated context (needs chunk_size and >= 2 chunks)")
    self_forcing_steps: int = _f(1, "Flow-Euler steps per chunk of the self-forcing rollout (the Dreamer's "
                                 "num_steps)")
    self_forcing_context_sigma: float = _f(0.0, "noise level at which rolled-out frames enter the context (the "
                                           "Dreamer's context_sigma)")
    cuda_graph: bool = _f(False, "capture forward + backward in one CUDA graph (generators.train.graphs; "
                          "gradients all-reduced without DDP); CUDA only, no self-forcing")
    allow_large_attention: bool = _f(False, "train even when the softmax attention of a step is estimated to "
                                     "need more memory than the device has (generators.train.attention_cost)")
    optim: OptimConfig = nested_field(lambda: OptimConfig(warmup_steps=1000),
                                      "optimizer, LR schedule, EMA, numerics")
    run: RunConfig = nested_field(lambda: RunConfig(out_dir="runs/world_model"),
                                  "length, seed, output, logging, checkpoints")
    sample_every: int = _f(0, "EMA dream | GT videos to out_dir/samples every N steps (0: never)")
    num_samples: int = _f(2, "clips per sample video (the first clips of step 1, stacked vertically)")
    sample_steps: int = _f(4, "Flow-Euler steps per chunk when dreaming")
    sample_mode: str = _f("chunks", '"chunks" (chunk by chunk, earlier chunks clean, later ones noise) or '
                          '"clip" (every frame at once)')
    sample_fps: float = _f(4.0, "frame rate of the sample videos")

    def __post_init__(self) -> None:
        for name in ("resolution", "batch_size", "num_samples", "sample_steps", "self_forcing_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in _OPTIONAL_INT:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be None or >= 1, got {getattr(self, name)}")
        if self.data not in ("shards", "stream", "pool"):
            raise ValueError(f'data must be "shards", "stream" or "pool", got {self.data!r}')
        if self.data == "pool" and self.pool_steps + 1 < self.clip_frames:
            raise ValueError(f"pool_steps + 1 = {self.pool_steps + 1} frames cannot hold clips of {self.clip_frames}")
        if self.data == "shards" and not self.data_dir:
            raise ValueError('data="shards" needs data_dir')
        if isinstance(self.model, str) and self.model not in PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; choose one of {sorted(PRESETS)}")
        if (isinstance(self.model, SanaWMConfig) and self.temporal_stride is not None
                and self.temporal_stride != self.model.plucker_stride):
            raise ValueError(f"temporal_stride={self.temporal_stride} but the model config has "
                             f"plucker_stride={self.model.plucker_stride} (chunk_plucker has 6 * stride "
                             "channels)")
        s = temporal_stride(self)
        if self.clip_frames < s + 1 or (self.clip_frames - 1) % s:
            raise ValueError(f"clip_frames must be temporal_stride * k + 1 with k >= 1 ({s + 1}, "
                             f"{2 * s + 1}, ...) for temporal stride {s}, got {self.clip_frames}")
        for name in ("cfg_dropout", "self_forcing_prob", "sigma_one_prob", "context_sigma_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.sigma_one_prob + self.context_sigma_prob > 1.0:
            raise ValueError(f"sigma_one_prob + context_sigma_prob must be <= 1, got "
                             f"{self.sigma_one_prob} + {self.context_sigma_prob}")
        if not 0.0 < self.context_sigma_value < 1.0:
            raise ValueError(f"context_sigma_value must lie in (0, 1), got {self.context_sigma_value}")
        if self.shift <= 0 or self.logit_std <= 0 or self.sample_fps <= 0:
            raise ValueError("shift, logit_std and sample_fps must be > 0")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if self.sample_mode not in ("chunks", "clip"):
            raise ValueError(f'sample_mode must be "chunks" or "clip", got {self.sample_mode!r}')
        if self.chunk_size is None and (self.sample_mode == "chunks" or self.self_forcing_prob > 0):
            raise ValueError('sample_mode="chunks" and self_forcing_prob > 0 need a chunk_size')
        if not 0.0 <= self.self_forcing_context_sigma < 1.0:
            raise ValueError(f"self_forcing_context_sigma must lie in [0, 1), got {self.self_forcing_context_sigma}")
        if self.self_forcing_prob > 0 and not self.anchor_frame:
            raise ValueError("self-forcing rolls out from the GT anchor: it needs anchor_frame")
        if self.cuda_graph and self.self_forcing_prob > 0:
            raise ValueError("cuda_graph captures one fixed step; self-forcing rollouts vary per step")
        if self.self_forcing_prob > 0 and len(wm_data.chunk_bounds(self.latent_frames, self.chunk_size)) < 2:
            raise ValueError(f"self-forcing needs >= 2 chunks; {self.latent_frames} latent frames in chunks "
                             f"of {self.chunk_size} make one")

    @classmethod
    def from_flat(cls, **kwargs: Any) -> WorldModelTrainConfig:
        """A config from flat keyword arguments (``lr=`` goes into ``optim``, ``steps=`` into ``run``)."""
        return train_run.config_from_flat(cls, **kwargs)

    @property
    def latent_frames(self) -> int:
        """T_lat = (clip_frames - 1) / temporal_stride + 1."""
        return (self.clip_frames - 1) // temporal_stride(self) + 1


def temporal_stride(config: WorldModelTrainConfig) -> int:
    """The run's raw frames per latent frame (explicit, or the model's plucker_stride)."""
    if config.temporal_stride is not None:
        return config.temporal_stride
    model = PRESETS[config.model]() if isinstance(config.model, str) else config.model
    return model.plucker_stride


@dataclass
class TrainResult:
    losses: list[float]  # mean loss over ranks of every step this call ran
    checkpoint: Path  # the final checkpoint directory
    step: int  # last step trained
    chunk_causal: bool  # False when chunk_size was asked for but the model only runs bidirectionally
    samples: list[Path] = field(default_factory=list)  # sample videos written by this call


# --- Components ------------------------------------------------------------------------------------------


def resolve_model_config(config: WorldModelTrainConfig, latent_channels: int,
                         caption_channels: int) -> SanaWMConfig:
    """A preset adapted to codec / text encoder / stride, or an explicit config checked against them."""
    s = temporal_stride(config)
    if isinstance(config.model, str):
        return dataclasses.replace(PRESETS[config.model](), in_channels=latent_channels,
                                   caption_channels=caption_channels, plucker_stride=s)
    m = config.model
    if (m.in_channels, m.caption_channels) != (latent_channels, caption_channels):
        raise ValueError(f"model config has in_channels={m.in_channels}, caption_channels="
                         f"{m.caption_channels}; the codec gives {latent_channels} latent channels and the "
                         f"text encoder {caption_channels}-d captions")
    return m


def chunk_kwargs(model: nn.Module, chunk_size: int | None) -> dict[str, int]:
    """``{"chunk_size": n}`` when the model's forward takes it; ``{}`` (bidirectional, logged) otherwise."""
    if chunk_size is None:
        return {}
    if "chunk_size" in inspect.signature(unwrap(model).forward).parameters:
        return {"chunk_size": chunk_size}
    log.warning("SanaWM.forward has no chunk_size argument yet: training and sampling run BIDIRECTIONALLY "
                "(chunk_size=%d only shapes the chunk-by-chunk sampler and self-forcing)", chunk_size)
    return {}


def resolved_config(config: WorldModelTrainConfig, model_cfg: SanaWMConfig,
                    chunk_causal: bool) -> dict[str, Any]:
    """The JSON written beside every checkpoint (diffusers-like ``config.json``)."""
    return train_run.resolved_config(config, model_cfg, "SanaWM", "sana_world.generators.train.world_model",
                                     inputs=INPUTS, temporal_stride=model_cfg.plucker_stride,
                                     chunk_causal=chunk_causal)


# --- The objective and self-forcing ----------------------------------------------------------------------


def diffusion_forcing_loss(model: nn.Module, x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor,
                           clean: torch.Tensor, loss_mask: torch.Tensor, emb: Any, cam: WMCameraInputs,
                           chunk_kw: dict[str, int]) -> torch.Tensor:
    """Unweighted MSE of ``v = eps - x0`` over the frames of ``loss_mask`` (B, T); x0, eps (B, C, T, h, w)."""
    s = sigma[:, None, :, None, None]  # (B, 1, T, 1, 1)
    x_t = (1.0 - s) * x0 + s * eps  # (B, C, T, h, w)
    pred = wm_data.velocity(model, x_t, sigma, clean, emb, cam, chunk_kw)  # (B, C, T, h, w)
    err = (pred.float() - (eps - x0).float()).square().mean(dim=(1, 3, 4))  # (B, T)
    return (err * loss_mask).sum() / loss_mask.sum().clamp(min=1.0)


def graph_loss(model: nn.Module, chunk_kw: dict[str, int], device: torch.device, bf16: bool):
    """:func:`diffusion_forcing_loss` on plain tensors, as :class:`~.graphs.GraphedLoss` captures it."""
    from sana_world.generators.text_encoders import TextEmbedding

    def loss_fn(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor, clean: torch.Tensor,
                loss_mask: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor,
                camera_conditions: torch.Tensor, chunk_plucker: torch.Tensor) -> torch.Tensor:
        emb, cam = TextEmbedding(hidden, mask), WMCameraInputs(camera_conditions, chunk_plucker)
        with autocast(device, bf16, cache=False):
            return diffusion_forcing_loss(model, x0, eps, sigma, clean, loss_mask, emb, cam, chunk_kw)

    return loss_fn


def frame_sigmas(config: WorldModelTrainConfig, B: int, T: int, gen: torch.Generator,
                 dev: torch.device) -> torch.Tensor:
    """Per-frame sigmas (B, T): shifted logit-normal; then a ``sigma_one_prob`` share at 1 (the one-step
    sampler's input) and a ``context_sigma_prob`` share at ``context_sigma_value`` (the level of the
    Dreamer's fed-back frames), drawn independently so each share is that probability per frame."""
    sigma = sample_sigmas(B * T, config.logit_mean, config.logit_std, config.shift, gen, dev).view(B, T)
    if config.sigma_one_prob > 0:
        one = torch.rand(B, T, generator=gen, device=dev) < config.sigma_one_prob
        sigma = torch.where(one, torch.ones_like(sigma), sigma)
    if config.context_sigma_prob > 0:  # among the frames not at 1: probability p_ctx / (1 - p_one)
        u = torch.rand(B, T, generator=gen, device=dev) * (1.0 - config.sigma_one_prob)
        at_ctx = (u < config.context_sigma_prob) & (sigma < 1.0)
        sigma = torch.where(at_ctx, torch.full_like(sigma, config.context_sigma_value), sigma)
    return sigma


def self_forcing_context(model: nn.Module, x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor,
                         loss_mask: torch.Tensor, emb: Any, cam: WMCameraInputs, config: WorldModelTrainConfig,
                         gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace the frames before a random chunk ``c >= 1`` by the model's own streamed rollout from the GT
    anchor, made exactly as the Dreamer makes it (:func:`~.wm_data.stream_rollout`). They become context at
    ``self_forcing_context_sigma`` (the model reads ``(1 - s) z + s eps``, as a dreamed frame enters the
    stream) without loss; chunk ``c`` and later frames keep their GT targets and drawn sigmas, so the model
    learns to continue the truth from its own past. Returns (x0, sigma, loss_mask)."""
    chunks = wm_data.chunk_bounds(x0.shape[2], config.chunk_size)
    c = int(torch.randint(1, len(chunks), (1,), generator=gen, device=gen.device))
    a = chunks[c][0]
    noise = torch.randn(x0[:, :, :a].shape, generator=gen, device=gen.device).to(x0.device)  # (B, C, a, h, w)
    s = config.self_forcing_context_sigma
    with autocast(x0.device, config.optim.bf16):
        rollout = wm_data.stream_rollout(model, x0[:, :, 0], noise, eps[:, :, :a], emb, cam, chunks[:c],
                                         config.self_forcing_steps, config.shift, s).float()  # (B, C, a, h, w)
    x0 = torch.cat([rollout, x0[:, :, a:]], dim=2)
    sigma = sigma.clone()
    sigma[:, 1:a] = s  # frame 0 is the clean anchor
    mask = loss_mask.clone()
    mask[:, :a] = 0.0
    return x0, sigma, mask


# --- Sample videos ---------------------------------------------------------------------------------------


@torch.no_grad()
def write_sample_video(model: nn.Module, codec: nn.Module, text: Any, batch: wm_data.ClipBatch,
                       config: WorldModelTrainConfig, chunk_kw: dict[str, int],
                       path: Path) -> tuple[Path, float]:
    """Dream the clips of ``batch`` from their GT first frame and GT cameras (fixed noise) and write
    ``dream | GT`` side by side, one clip per row; returns the path and the PSNR (dB) of latent frames
    1.. to GT."""
    s, dev = temporal_stride(config), batch.rgb.device
    images, K = wm_data.to_clip_images(batch.rgb, batch.K, config.resolution)  # (B, F, 3, R, R)
    with autocast(dev, config.optim.bf16):
        x0 = wm_data.encode_latent_frames(codec, images, s).float()  # (B, C, T, h, w)
    cam = wm_data.build_camera_inputs(batch.c2w, K, config.resolution, tuple(x0.shape[-2:]), s)
    gen = torch.Generator(dev).manual_seed(rank_seed(config.run.seed, _SAMPLE_TAG))
    noise = torch.randn(x0.shape, generator=gen, device=dev)  # (B, C, T, h, w)
    chunks = wm_data.chunk_bounds(x0.shape[2], config.chunk_size if config.sample_mode == "chunks" else None)
    anchor = x0[:, :, 0] if config.anchor_frame else None
    with autocast(dev, config.optim.bf16):
        z = wm_data.dream(model, anchor, noise, text.encode(batch.captions).to(dev), cam, chunk_kw, chunks,
                          config.sample_steps, config.shift)  # (B, C, T, h, w)
    return wm_data.write_dream_video(path, codec, z.float(), images, s, config.sample_fps)


# --- Training --------------------------------------------------------------------------------------------


def train(config: WorldModelTrainConfig) -> TrainResult:
    """Train (or, with ``config.run.resume``, continue) a SanaWM world model; see the module doc."""
    from sana_world.generators.text_encoders import caption_dropout

    run, optim = config.run, config.optim
    info = setup_distributed(run.device)
    dev = info.device
    out = Path(run.out_dir)
    s = temporal_stride(config)
    # 0. components; the init is identical on every rank (DDP also broadcasts rank 0's weights)
    codec, text, side = build_components(config, dev)
    latent_size = (side, side)
    model_cfg = resolve_model_config(config, codec.latent_channels, text.dim)
    if latent_size[0] % model_cfg.patch_size[1] or latent_size[1] % model_cfg.patch_size[2]:
        raise usage_error(ValueError, f"latent size {latent_size} (<resolution={config.resolution}> / codec "
                          f"factor {codec.downsample_factor}) is not divisible by patch_size "
                          f"{model_cfg.patch_size}")
    cost = clip_cost(model_cfg, config.latent_frames, latent_size, config.batch_size, dev,
                     masked=config.chunk_size is not None)
    if info.is_main:
        log.info("world model: %s", cost.summary())
    check_clip_cost(cost, config.allow_large_attention)
    build = train_run.initialised(lambda: SanaWM(model_cfg), config.init_weights)
    state = train_run.init_train_state(build, optim, run.seed, info)
    model, ema = state.model, state.ema
    chunk_kw = chunk_kwargs(model, config.chunk_size)
    if chunk_kw and optim.grad_checkpointing:
        log.warning("grad_checkpointing is on; SanaWM's chunk-causal forward may not checkpoint blocks")
    resolved = resolved_config(config, model_cfg, bool(chunk_kw))
    # 1. resume, or refuse to mix a fresh run into an old one
    train_run.resume_or_start(state, run, resolved, info, _RUN_FIELDS,
                              train_run.field_defaults(WorldModelTrainConfig))
    data: wm_data.ShardClips | wm_data.StreamClips | wm_data.PoolClips
    if config.data == "shards":
        data = wm_data.ShardClips(str(config.data_dir), config.clip_frames,
                                  config.clip_spacing or config.clip_frames, run.seed, config.batch_size, info,
                                  config.verify_data)
    elif config.data == "stream":
        data = wm_data.StreamClips(config.clip_frames, config.resolution, run.seed, config.batch_size, info)
    else:
        from sana_world.data.pool import PoolConfig

        data = wm_data.PoolClips(PoolConfig(trajectories=config.pool_trajectories, steps=config.pool_steps,
                                            size=config.resolution, workers=config.pool_workers,
                                            supersample=config.pool_supersample, seed=run.seed),
                                 config.clip_frames, run.seed, config.batch_size, info)
    if isinstance(data, wm_data.PoolClips):  # encode the pool once instead of every step's clips
        data.cache_latents(codec, config.resolution, optim.bf16)
    null = text.null_embedding().to(dev)  # (1, L, D)
    fixed = data.batch_at(1).head(config.num_samples) if config.sample_every and info.is_main else None
    if config.cuda_graph:
        if dev.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        from sana_world.generators.train.graphs import GraphedLoss, all_reduce_grads

        model.train()
        if info.distributed:  # no DDP to broadcast rank 0's weights: do it here
            import torch.distributed as dist

            for p in model.parameters():
                dist.broadcast(p.data, src=0)
        graphed = GraphedLoss(graph_loss(model, chunk_kw, dev, optim.bf16), model)
    ddp = model if config.cuda_graph else wrap_ddp(model, info)
    ddp.train()
    samples: list[Path] = []
    loop = train_run.RunLoop(run, state, resolved, info, desc="world-model", rate_name="clips_per_s")
    with loop:
        while state.step < run.steps and not loop.stopped:
            step = state.step + 1
            gen = torch.Generator(dev).manual_seed(rank_seed(run.seed, step, info.rank))
            # 1. clip batch: GT frames, poses, intrinsics, captions
            batch = data.batch_at(step)  # rgb (B, F, H, W, 3) uint8, c2w (B, F, 4, 4), K (B, 3, 3)
            images, K = wm_data.to_clip_images(batch.rgb, batch.K, config.resolution)  # (B, F, 3, R, R)
            with torch.no_grad(), autocast(dev, optim.bf16):
                # 2. latents of raw frames 0, s, 2s, ... (frame by frame; cached for a pool)
                if batch.latents is not None:
                    x0 = batch.latents[:, wm_data.latent_frame_indices(images.shape[1], s)]  # (B, T, C, h, w)
                    x0 = x0.transpose(1, 2).float().contiguous()  # (B, C, T, h, w)
                else:
                    x0 = wm_data.encode_latent_frames(codec, images, s).float()  # (B, C, T, h, w)
                emb = caption_dropout(text.encode(batch.captions).to(dev), null, config.cfg_dropout, gen)
            # 3. camera inputs from the GT poses and the cropped intrinsics
            cam = wm_data.build_camera_inputs(batch.c2w, K, config.resolution, latent_size, s)
            # 4. diffusion forcing: one sigma per latent frame; frame 0 optionally the clean anchor
            B, _, T = x0.shape[:3]
            sigma = frame_sigmas(config, B, T, gen, dev)  # (B, T)
            eps = torch.randn(x0.shape, generator=gen, device=dev)  # (B, C, T, h, w)
            clean = torch.zeros(B, T, device=dev)  # (B, T)
            if config.anchor_frame:
                clean[:, 0] = 1.0
            sigma = sigma * (1.0 - clean)
            loss_mask = 1.0 - clean  # (B, T)
            use_sf = config.self_forcing_prob > 0 and float(torch.rand((), generator=gen, device=dev)) < \
                config.self_forcing_prob
            if use_sf:  # the context of a random chunk from the model's own few-step rollout
                x0, sigma, loss_mask = self_forcing_context(model, x0, eps, sigma, loss_mask, emb, cam, config, gen)
            # 5. chunk-causal forward (all chunks in one pass), v-target MSE over the non-anchor frames
            if config.cuda_graph:  # forward + backward replayed, then one flat gradient all-reduce
                loss = graphed(x0=x0, eps=eps, sigma=sigma, clean=clean, loss_mask=loss_mask, hidden=emb.hidden,
                               mask=emb.mask, camera_conditions=cam.camera_conditions,
                               chunk_plucker=cam.chunk_plucker)
                all_reduce_grads(model)
                grad_norm, lr = train_run.optimizer_step(state, None, optim.grad_clip)
            else:
                with autocast(dev, optim.bf16):
                    loss = diffusion_forcing_loss(ddp, x0, eps, sigma, clean, loss_mask, emb, cam, chunk_kw)
                # 6. backward, clip, optimizer and LR step, EMA
                grad_norm, lr = train_run.optimizer_step(state, loss, optim.grad_clip)
            state.step = step
            state.data_state = {"source": config.data, "seed": run.seed, "next_step": step + 1}
            # 7. log, checkpoint, sample videos
            loop.end_step(step, loss, lr=lr, grad_norm=grad_norm, items=B,
                          extra={"self_forcing": float(use_sf)})
            if fixed is not None and step % config.sample_every == 0:
                path, db = write_sample_video(ema.model, codec, text, fixed, config, chunk_kw,
                                              out / "samples" / f"step-{step:08d}.mp4")
                samples.append(path)
                loop.tb.scalars({"samples/psnr_db": db}, step)
    return TrainResult(losses=loop.losses, checkpoint=loop.checkpoint(), step=state.step,
                       chunk_causal=bool(chunk_kw), samples=samples)


# --- CLI -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """One flag per (flat) config field (``--preset`` for ``model``), help text from the field metadata."""
    return train_run.build_parser(WorldModelTrainConfig, __doc__.split("\n\n")[0], PRESETS, _OPTIONAL_INT)


def main(argv: list[str] | None = None) -> TrainResult:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    config = train_run.cli_config(parser, WorldModelTrainConfig, argv)
    result, main_rank = train_run.run_cli(train, config, parser.prog)
    if main_rank:
        print(f"trained to step {result.step} (chunk-causal: {result.chunk_causal}); "
              f"checkpoint {result.checkpoint}")
    return result


if __name__ == "__main__":
    main()
