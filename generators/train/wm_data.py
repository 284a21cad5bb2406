"""World-model trainer helpers: GT clips of each step as a pure function of ``(seed, step, rank)``, the
map from raw frames to latent frames and camera inputs, the chunk-by-chunk clip sampler and sample videos.

Raw frames, latent frames and cameras (temporal stride ``s``; a clip has ``F = s k + 1`` raw frames):

- Our codecs are per-image (``PixelCodec`` or a DC-AE): no temporal compression. We therefore encode only
  the raw frames ``0, s, 2s, ..., s k``: latent frame ``t`` *is* raw frame ``s t`` (``T_lat = k + 1``),
  exactly the raw frames whose poses ``camera_conditions[:, t]`` carries.
- ``chunk_plucker[:, :, t]`` stacks the Plücker maps of the ``s`` raw frames ``max(0, s t - s + 1) ...
  s t`` (the camera path that leads *into* latent frame ``t``; latent frame 0 repeats frame 0), so the
  in-between raw frames still inform the model through their poses although their pixels are never
  encoded. ``s`` must equal the model's ``plucker_stride`` (``6 s`` Plücker channels).
- With a video codec of temporal stride 8 (LTX-2) the same tensors apply unchanged with ``s = 8``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sana_world.generators.train.common import DistInfo
from sana_world.generators.train.flow_matching import to_model_images
from sana_world.generators.train.run import EpochOrder
from sana_world.samplers import FlowEulerSampler
from sana_world.world_model import image_conditioned_timesteps
from sana_world.world_model.cameras import WMCameraInputs, latent_num_frames, prepare_camera_inputs


@dataclass(frozen=True)
class ClipBatch:
    """GT clips of one step on the training device."""

    rgb: torch.Tensor  # (B, F, H, W, 3) uint8
    c2w: torch.Tensor  # (B, F, 4, 4) float32, OpenCV camera-to-world
    K: torch.Tensor  # (B, 3, 3) float32, pixels of (H, W)
    captions: list[str]
    latents: torch.Tensor | None = None  # (B, F, C, h, w) codec latents of every frame, when cached

    def __post_init__(self) -> None:
        B, F = self.rgb.shape[:2]
        if self.latents is not None and tuple(self.latents.shape[:2]) != (B, F):
            raise ValueError(f"latents {tuple(self.latents.shape)} do not match rgb {tuple(self.rgb.shape)}")
        if self.rgb.ndim != 5 or self.rgb.dtype != torch.uint8 or self.rgb.shape[-1] != 3:
            raise ValueError(f"rgb must be uint8 (B, F, H, W, 3), got {self.rgb.dtype} "
                             f"{tuple(self.rgb.shape)}")
        if (tuple(self.c2w.shape) != (B, F, 4, 4) or tuple(self.K.shape) != (B, 3, 3)
                or len(self.captions) != B):
            raise ValueError(f"clip batch disagrees: rgb {tuple(self.rgb.shape)}, c2w "
                             f"{tuple(self.c2w.shape)}, K {tuple(self.K.shape)}, "
                             f"{len(self.captions)} captions")

    def head(self, n: int) -> ClipBatch:
        """The first ``n`` clips."""
        return ClipBatch(self.rgb[:n], self.c2w[:n], self.K[:n], self.captions[:n],
                         None if self.latents is None else self.latents[:n])


class ShardClips:
    """Clips of ``clip_frames`` raw frames from a shard dataset (windows every ``spacing`` frames of each
    trajectory); step ``n`` of ``W`` ranks reads positions ``[(n - 1) W B, n W B)`` of an endless sequence of
    per-epoch permutations of every window, rank ``r`` its ``r``-th slice of ``B``."""

    def __init__(self, root: str, clip_frames: int, spacing: int, seed: int, batch_size: int, info: DistInfo,
                 verify: bool) -> None:
        from sana_world.data.shards import TrajectoryDataset

        self.dataset = TrajectoryDataset(root, clip_len=clip_frames, clip_stride=spacing, verify=verify)
        self.num_clips = len(self.dataset)
        self.info = info
        self.order = EpochOrder(self.num_clips, seed, batch_size, info)

    def indices(self, step: int) -> list[int]:
        """Dataset items of this rank's part of step ``step`` (1-based)."""
        return self.order.indices(step)

    def batch_at(self, step: int) -> ClipBatch:
        items = [self.dataset[i] for i in self.indices(step)]
        dev = self.info.device
        return ClipBatch(rgb=torch.stack([it["rgb"] for it in items]).to(dev),  # (B, F, H, W, 3)
                         c2w=torch.stack([it["c2w"] for it in items]).float().to(dev),  # (B, F, 4, 4)
                         K=torch.stack([it["K"] for it in items]).float().to(dev),  # (B, 3, 3)
                         captions=[it["caption"] for it in items])


class StreamClips:
    """Clips rendered on the device by :class:`~sana_world.data.GPUStream` (trajectories of exactly
    ``clip_frames`` frames): step ``n`` on rank ``r`` is stream batch ``(n - 1) W + r``."""

    def __init__(self, clip_frames: int, resolution: int, seed: int, batch_size: int, info: DistInfo) -> None:
        from sana_world.data.stream import GPUStream

        self.stream = GPUStream(batch_size=batch_size, steps=clip_frames - 1, height=resolution,
                                width=resolution, device=info.device, seed=seed)
        self.info = info

    def batch_at(self, step: int) -> ClipBatch:
        out = self.stream.batch((step - 1) * self.info.world_size + self.info.rank)
        return ClipBatch(rgb=out["rgb"], c2w=out["c2w"].float(), K=out["K"].float(),
                         captions=list(out["caption"]))


class PoolClips:
    """Random ``clip_frames`` windows of a device-resident :class:`~sana_world.data.pool.ClipPool` (this
    rank's share); the clips of step ``n`` on rank ``r`` are drawn with a generator seeded by
    ``(seed, n, r)``."""

    def __init__(self, pool_config: Any, clip_frames: int, seed: int, batch_size: int, info: DistInfo) -> None:
        from sana_world.data.pool import ClipPool

        self.pool = ClipPool(pool_config, info.device, info.rank, info.world_size, progress=info.is_main)
        self.clip_frames, self.seed, self.batch_size, self.info = clip_frames, seed, batch_size, info
        self.latents: torch.Tensor | None = None  # (N, F, C, h, w) after cache_latents

    @torch.no_grad()
    def cache_latents(self, codec: nn.Module, resolution: int, bf16: bool, batch: int = 256) -> None:
        """Encode every pooled frame once (as :func:`encode_latent_frames` would each step) and keep the
        latents on the device; later batches carry theirs."""
        from .common import autocast

        rgb = self.pool.rgb  # (N, F, H, W, 3) uint8
        flat, out = rgb.flatten(0, 1), []
        for i in range(0, flat.shape[0], batch):  # 1. encode a slice of frames at a time
            images = to_model_images(flat[i : i + batch], resolution)  # (b, 3, R, R)
            with autocast(rgb.device, bf16):
                out.append(codec.encode(images))
        z = torch.cat(out)  # (N·F, C, h, w)
        self.latents = z.view(*rgb.shape[:2], *z.shape[1:])

    def batch_at(self, step: int) -> ClipBatch:
        from sana_world.data.pool import pool_generator

        out = self.pool.clips(self.clip_frames, self.batch_size, pool_generator(self.seed, step, self.info.rank))
        latents = None if self.latents is None else self.latents[out["index"]]  # (B, L, C, h, w)
        return ClipBatch(rgb=out["rgb"], c2w=out["c2w"].float(), K=out["K"].float(), captions=out["captions"],
                         latents=latents)


def to_clip_images(rgb: torch.Tensor, K: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips (B, F, H, W, 3) -> float (B, F, 3, R, R) in [-1, 1] (centre square crop, resize, as
    :func:`~sana_world.generators.train.flow_matching.to_model_images`) and the intrinsics (B, 3, 3) of the
    cropped, resized frames (pixel-edge convention: crop shifts the principal point, resize scales all)."""
    B, F, H, W = rgb.shape[:4]
    images = to_model_images(rgb.flatten(0, 1), resolution).view(B, F, 3, resolution, resolution)
    side = min(H, W)
    top, left, scale = (H - side) // 2, (W - side) // 2, resolution / side
    K = K.clone().float()
    K[:, 0, 2] -= left
    K[:, 1, 2] -= top
    K[:, :2] *= scale  # fx, cx, fy, cy (the skew term too)
    return images, K


def latent_frame_indices(clip_frames: int, stride: int) -> list[int]:
    """Raw frames encoded as latent frames: ``0, s, ..., s k`` (module doc); raises unless ``F = s k + 1``."""
    return list(range(0, clip_frames, stride))[: latent_num_frames(clip_frames, stride)]


def encode_latent_frames(codec: nn.Module, images: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, F, 3, R, R) raw frames -> (B, C, T_lat, h, w) latents of raw frames ``0, s, 2s, ...``."""
    B, F = images.shape[:2]
    picked = images[:, latent_frame_indices(F, stride)]  # (B, T, 3, R, R)
    z = codec.encode(picked.flatten(0, 1))  # (B·T, C, h, w)
    return z.view(B, picked.shape[1], *z.shape[1:]).transpose(1, 2).contiguous()  # (B, C, T, h, w)


def decode_latent_frames(codec: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, T, h, w) -> uint8 frames (B, T, R, R, 3)."""
    B, T = latents.shape[0], latents.shape[2]
    x = codec.decode(latents.transpose(1, 2).flatten(0, 1)).float()  # (B·T, 3, R, R) in [-1, 1]
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.view(B, T, *x.shape[1:]).permute(0, 1, 3, 4, 2)  # (B, T, R, R, 3)


def build_camera_inputs(c2w: torch.Tensor, K: torch.Tensor, resolution: int, latent_size: tuple[int, int],
                        stride: int) -> WMCameraInputs:
    """camera_conditions (B, T_lat, 20) and chunk_plucker (B, 6 s, T_lat, h, w) of GT poses (B, F, 4, 4)
    and the model images' intrinsics (B, 3, 3), on the poses' device."""
    return prepare_camera_inputs(c2w, K[:, None], (resolution, resolution), latent_size, stride)


def chunk_bounds(num_frames: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """Latent-frame ranges ``[a, b)`` of the chunks (one range for ``None``: the whole clip)."""
    size = num_frames if chunk_size is None else chunk_size
    return [(a, min(a + size, num_frames)) for a in range(0, num_frames, size)]


# --- The velocity of a clip and the chunk-by-chunk sampler ------------------------------------------------


def velocity(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, clean: torch.Tensor, emb: Any,
             cam: WMCameraInputs, chunk_kw: dict[str, int]) -> torch.Tensor:
    """Velocity (B, C, T, h, w) at per-frame ``sigma`` (B, T); ``clean`` (B, T) frames get timestep 0."""
    t = image_conditioned_timesteps(1000.0 * sigma, clean)  # (B, T)
    return model(x, t, emb.hidden, emb.mask, camera_conditions=cam.camera_conditions,
                 chunk_plucker=cam.chunk_plucker, **chunk_kw)


@torch.no_grad()
def dream(model: nn.Module, anchor: torch.Tensor | None, noise: torch.Tensor, emb: Any, cam: WMCameraInputs,
          chunk_kw: dict[str, int], chunks: list[tuple[int, int]], num_steps: int,
          shift: float) -> torch.Tensor:
    """Sample latents (B, C, T, h, w) with Flow-Euler, chunk after chunk in ``chunks``: while chunk ``[a, b)``
    is denoised, earlier frames stay clean and later ones stay pure noise (sigma 1, as in diffusion-forcing
    training); ``anchor`` (B, C, h, w) pins latent frame 0 clean. Frames past the last chunk stay noise."""
    B, _, T = noise.shape[:3]
    x = noise.clone()
    clean = torch.zeros(B, T, device=noise.device)  # (B, T)
    if anchor is not None:
        x[:, :, 0] = anchor
        clean[:, 0] = 1.0
    sampler = FlowEulerSampler(num_steps, shift)
    sigmas = sampler.schedule(noise.device)  # (N + 1,)

    def denoise(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # s (B, 1, T, 1, 1)
        return velocity(model, x, s.reshape(B, T), clean, emb, cam, chunk_kw).float()

    for a, b in chunks:
        sched = torch.ones(num_steps + 1, 1, 1, T, 1, 1, device=noise.device)  # future frames: noise
        sched[:, :, :, :a] = 0.0  # done frames: clean
        sched[:, :, :, a:b] = sigmas.view(-1, 1, 1, 1, 1, 1)
        if anchor is not None:
            sched[:, :, :, 0] = 0.0
        x = sampler.sample(denoise, x, schedule=sched)
    return x


def camera_slice(cam: WMCameraInputs, a: int, b: int) -> WMCameraInputs:
    """The camera inputs of latent frames ``[a, b)`` of a clip."""
    return WMCameraInputs(cam.camera_conditions[:, a:b], cam.chunk_plucker[:, :, a:b])


@torch.no_grad()
def stream_rollout(model: nn.Module, anchor: torch.Tensor, noise: torch.Tensor, ctx_noise: torch.Tensor,
                   emb: Any, cam: WMCameraInputs, chunks: list[tuple[int, int]], num_steps: int, shift: float,
                   context_sigma: float) -> torch.Tensor:
    """Dream the chunks ``chunks`` (from frame 0 on) exactly as :class:`~sana_world.generators.dreamer.Dreamer`
    does: through the streaming engine (constant-size state, softmax sink + window), each chunk sampled from
    ``noise`` (B, C, T, h, w) with ``num_steps`` Flow-Euler steps, then appended to the state re-noised to
    ``context_sigma`` with ``ctx_noise`` (same shape) at timestep ``1000 * context_sigma``; ``anchor``
    (B, C, h, w) is latent frame 0, appended clean. Returns the latents (B, C, b_last, h, w), frame 0 the
    anchor. (The Dreamer's ``defer_append`` folds each append into the next step's first pass: the same
    frames up to float round-off, tests/generators/test_dreamer.py.)"""
    from sana_world.generators.dreamer import context_entry
    from sana_world.generators.train.common import unwrap
    from sana_world.world_model.causal import ChunkCausalConfig
    from sana_world.world_model.streaming import WMStreamConfig, WMStreamEngine, WMText

    B, _, _, h, w = noise.shape
    engine = WMStreamEngine(unwrap(model), FlowEulerSampler(num_steps, shift),
                            WMStreamConfig(causal=ChunkCausalConfig()))
    text = WMText(emb.hidden, emb.mask)
    state = engine.init_state(B, (h, w), noise.device, torch.float32)
    out = []
    for i, (a, b) in enumerate(chunks):
        # 1. sample the chunk (the first keeps its frame 0 pinned to the anchor)
        cam_c = camera_slice(cam, a, b)
        first = anchor if i == 0 else None
        if i == 0 and b - a == 1:
            z = anchor[:, :, None].to(noise.dtype)  # (B, C, 1, h, w)
        else:
            z = engine.denoise_chunk(state, noise[:, :, a:b], text, cam_c, first_frame=first).to(noise.dtype)
        out.append(z)
        # 2. append it to the state as a noisy observation at context_sigma (the anchor clean)
        ctx, t = context_entry(z, ctx_noise[:, :, a:b], context_sigma)  # (B, C, T_c, h, w), (B, T_c)
        if i == 0:
            t[:, 0] = 0.0
            ctx[:, :, 0] = anchor
        state = engine.advance(state, ctx, text, cam_c, timesteps=t)
    return torch.cat(out, dim=2)


# --- Sample videos ---------------------------------------------------------------------------------------


def frames_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, R, R) in [-1, 1] -> (B, T, R, R, 3) uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 tensors of the same shape."""
    mse = float((a.float() - b.float()).square().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def write_dream_video(path: Path, codec: nn.Module, dreamed: torch.Tensor, images: torch.Tensor, stride: int,
                      fps: float) -> tuple[Path, float]:
    """Decode dreamed latents (B, C, T, h, w) and write them beside the GT latent frames of ``images``
    (B, F, 3, R, R): ``dream | GT``, one clip per row. Returns the path and the PSNR (dB) to GT of latent
    frames 1.. (frame 0 is the anchor when image-conditioned)."""
    from sana_world.video import grid, write_video

    dream_u8 = decode_latent_frames(codec, dreamed).cpu()  # (B, T, R, R, 3)
    gt = frames_to_uint8(images[:, latent_frame_indices(images.shape[1], stride)]).cpu()  # (B, T, R, R, 3)
    labels = images.shape[-1] >= 32  # the label banner needs some width
    rows = [grid({"dream": d.numpy(), "GT": g.numpy()}, labels=labels) for d, g in zip(dream_u8, gt)]
    return write_video(path, np.concatenate(rows, axis=1), fps=fps), psnr(dream_u8[:, 1:], gt[:, 1:])
