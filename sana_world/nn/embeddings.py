"""Input embeddings of the SANA DiT: timestep / guidance, caption, latent patches.

- `sinusoidal_embedding`: the DDPM sinusoid, [cos | sin] order, frequencies exp(-ln(max_period)·i/half).
- `TimestepEmbedding`: sinusoid(256) → Linear → SiLU → Linear. The guidance-scale embedding of
  SANA-Sprint is a second, independent instance of the same module.
- `CaptionProjection`: text features → Linear → tanh-GELU → Linear → RMSNorm.
- `PatchEmbed`: p×p strided conv to tokens, optionally plus a fixed 2-D sin-cos position table (only
  the high-resolution SANA checkpoints use one; the rest are NoPE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .norms import RMSNorm

__all__ = [
    "CaptionProjection",
    "CaptionProjectionConfig",
    "PatchEmbed",
    "PatchEmbedConfig",
    "TimestepEmbedding",
    "sincos_pos_embed_2d",
    "sinusoidal_embedding",
]


def sinusoidal_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps (fractions allowed) -> (B, dim) float32 as [cos(t·f) | sin(t·f)]."""
    if t.ndim != 1:
        raise ValueError(f"timesteps must be 1-D (B,), got shape {tuple(t.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t[:, None].float() * torch.exp(exponent)[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2·half)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """Scalar per sample (timestep or guidance scale) -> (B, dim) via a sinusoid and a 2-layer MLP."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.fc1 = nn.Linear(freq_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.freq_dim)  # (B, freq_dim) fp32
        emb = emb.to(self.fc1.weight.dtype if dtype is None else dtype)
        return self.fc2(F.silu(self.fc1(emb)))  # (B, dim)


@dataclass(frozen=True)
class CaptionProjectionConfig:
    """Attributes:
    in_dim: text-encoder width (2304 for Gemma-2-2B).
    dim: model width D.
    norm: apply an RMSNorm after the MLP (SANA does).
    norm_eps: its eps.
    norm_init: its initial weight (NVlabs starts it small; diffusers at 1).
    """

    in_dim: int
    dim: int
    norm: bool = True
    norm_eps: float = 1e-5
    norm_init: float = 1.0


class CaptionProjection(nn.Module):
    def __init__(self, cfg: CaptionProjectionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.in_dim, cfg.dim)
        self.fc2 = nn.Linear(cfg.dim, cfg.dim)
        self.norm = RMSNorm(cfg.dim, eps=cfg.norm_eps, init=cfg.norm_init) if cfg.norm else None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, L, in_dim) -> (B, L, dim)."""
        y = self.fc2(F.gelu(self.fc1(y), approximate="tanh"))
        return y if self.norm is None else self.norm(y)


def sincos_pos_embed_2d(
    dim: int,
    height: int,
    width: int,
    base_size: int,
    interpolation_scale: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed (H·W, dim) float32 table; positions are rescaled so a grid of any size spans `base_size`.

    Channel layout (as diffusers' `get_2d_sincos_pos_embed`): first dim/2 channels encode the column,
    the last dim/2 the row, each as [sin | cos] over dim/4 frequencies 10000^(-i/(dim/4)).
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos position embedding needs dim % 4 == 0, got {dim}")
    f32 = torch.float32
    rows = torch.arange(height, device=device, dtype=f32) / (height / base_size) / interpolation_scale  # (H,)
    cols = torch.arange(width, device=device, dtype=f32) / (width / base_size) / interpolation_scale  # (W,)
    quarter = dim // 4
    omega = torch.arange(quarter, device=device, dtype=torch.float64) / quarter
    omega = 1.0 / 10000**omega  # (dim/4,)

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        args = torch.outer(pos.to(torch.float64), omega)  # (S, dim/4)
        return torch.cat([args.sin(), args.cos()], dim=1)  # (S, dim/2)

    col_emb = one_axis(cols)[None, :, :].expand(height, width, dim // 2)  # (H, W, dim/2)
    row_emb = one_axis(rows)[:, None, :].expand(height, width, dim // 2)  # (H, W, dim/2)
    return torch.cat([col_emb, row_emb], dim=-1).reshape(height * width, dim).float()


@dataclass(frozen=True)
class PatchEmbedConfig:
    """Attributes:
    in_channels: latent channels.
    dim: model width D.
    patch_size: p; the latent height and width must be multiples of it.
    interpolation_scale: None for no position table (NoPE); else the sin-cos table's scale.
    base_size: grid size (in patches) the sin-cos positions are normalised to.
    """

    in_channels: int
    dim: int
    patch_size: int = 1
    interpolation_scale: float | None = None
    base_size: int = 32


class PatchEmbed(nn.Module):
    def __init__(self, cfg: PatchEmbedConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_channels, cfg.dim, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, (H/p)·(W/p), D), tokens in row-major order."""
        p = self.cfg.patch_size
        if x.shape[-2] % p != 0 or x.shape[-1] % p != 0:
            raise ValueError(f"latent size {tuple(x.shape[-2:])} is not a multiple of patch_size={p}")
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.cfg.interpolation_scale is None:
            return tokens
        pos = sincos_pos_embed_2d(
            self.cfg.dim,
            x.shape[-2] // p,
            x.shape[-1] // p,
            self.cfg.base_size,
            self.cfg.interpolation_scale,
            device=x.device,
        )  # (N, D)
        return (tokens + pos[None]).to(tokens.dtype)
