"""Axial rotary position embeddings (RoPE) for 2-D latent grids and 3-D (frames, height, width) grids.

The head dimension is split into one band per axis; each band is an ordinary 1-D RoPE over that
axis' integer positions. Channel pairs are *interleaved*: channels (2i, 2i+1) rotate together by the
angle pos · theta^(-2i/band). Tables are built in float64 and returned as float32, as diffusers does.

3-D split (Wan / SANA-Video / SANA-WM): h = w = 2·(head_dim // 6) channels, t gets the rest, in the
order [t, h, w]. 2-D split: [h, w], half each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Rope2DConfig",
    "Rope3DConfig",
    "RotaryEmbedding2D",
    "RotaryEmbedding3D",
    "apply_rotary",
    "axial_rope_tables",
    "rope_1d",
]


def rope_1d(
    dim: int, positions: torch.Tensor, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (len(positions), dim) float32, every frequency repeated twice in a row."""
    if dim % 2 != 0:
        raise ValueError(f"a RoPE band needs an even number of channels, got {dim}")
    exponent = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim  # (dim/2,)
    freqs = 1.0 / (theta**exponent)  # (dim/2,)
    angles = torch.outer(positions.to(torch.float64), freqs)  # (S, dim/2)
    cos = angles.cos().repeat_interleave(2, dim=1).float()  # (S, dim)
    sin = angles.sin().repeat_interleave(2, dim=1).float()  # (S, dim)
    return cos, sin


def axial_rope_tables(
    band_dims: tuple[int, ...],
    grid: tuple[int, ...],
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (prod(grid), sum(band_dims)) for tokens flattened row-major over `grid`."""
    if len(band_dims) != len(grid):
        raise ValueError(f"{len(band_dims)} bands for a {len(grid)}-D grid {grid}")
    n_axes = len(grid)
    cos_parts, sin_parts = [], []
    # 1. One 1-D table per axis, broadcast over the other axes.
    for axis, (dim, size) in enumerate(zip(band_dims, grid)):
        cos, sin = rope_1d(dim, torch.arange(size, device=device), theta)  # (size, dim)
        view = [1] * n_axes + [dim]
        view[axis] = size
        cos_parts.append(cos.view(view).expand(*grid, dim))
        sin_parts.append(sin.view(view).expand(*grid, dim))
    # 2. Concatenate the bands along channels and flatten the grid.
    n_tokens = 1
    for size in grid:
        n_tokens *= size
    cos = torch.cat(cos_parts, dim=-1).reshape(n_tokens, -1)  # (N, head_dim)
    sin = torch.cat(sin_parts, dim=-1).reshape(n_tokens, -1)  # (N, head_dim)
    return cos, sin


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (B, N, H, d) by tables cos, sin of shape (N, d) (or (B, N, d):
    one table per row).

    Computed in fp32, returned in x's dtype.
    """
    xf = x.float()
    x1, x2 = xf.unflatten(-1, (-1, 2)).unbind(-1)  # 2 × (B, N, H, d/2)
    rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)  # (B, N, H, d)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (N, 1, d) or (B, N, 1, d)
    return (xf * cos + rotated * sin).to(x.dtype)


@dataclass(frozen=True)
class Rope3DConfig:
    """Wan-style 3-D RoPE.

    Attributes:
        head_dim: channels per head; split as t = head_dim - 4·(head_dim // 6), h = w = 2·(head_dim // 6).
        theta: base of the frequency ladder.
    """

    head_dim: int
    theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.head_dim % 2 != 0 or self.head_dim < 6:
            raise ValueError(f"Rope3DConfig.head_dim must be even and >= 6, got {self.head_dim}")

    @property
    def bands(self) -> tuple[int, int, int]:
        hw = 2 * (self.head_dim // 6)
        return (self.head_dim - 2 * hw, hw, hw)


class RotaryEmbedding3D(nn.Module):
    """cos/sin tables (T·H·W, head_dim) for a (frames, height, width) token grid."""

    def __init__(self, cfg: Rope3DConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self, grid: tuple[int, int, int], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return axial_rope_tables(self.cfg.bands, tuple(grid), self.cfg.theta, device)


@dataclass(frozen=True)
class Rope2DConfig:
    """Axial 2-D RoPE: the first half of each head encodes the row, the second half the column.

    Attributes:
        head_dim: channels per head, a multiple of 4.
        theta: base of the frequency ladder.
    """

    head_dim: int
    theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.head_dim % 4 != 0:
            raise ValueError(f"Rope2DConfig.head_dim must be a multiple of 4, got {self.head_dim}")

    @property
    def bands(self) -> tuple[int, int]:
        return (self.head_dim // 2, self.head_dim // 2)


class RotaryEmbedding2D(nn.Module):
    """cos/sin tables (H·W, head_dim) for a (height, width) token grid."""

    def __init__(self, cfg: Rope2DConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self, grid: tuple[int, int], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return axial_rope_tables(self.cfg.bands, tuple(grid), self.cfg.theta, device)
