"""Mix-FFN (GLUMBConv): the feed-forward of a linear DiT block, run on the latent grid.

    1×1 conv C → 2H (bias) → SiLU → 3×3 depthwise conv over 2H (bias) → split into value, gate
    → value · SiLU(gate) → 1×1 conv H → C_out (no bias)

The depthwise conv is the only place image SANA mixes neighbouring tokens, i.e. its positional
signal. `forward` takes tokens (B, N, C) plus the grid size; `forward_grid` takes (B, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GLUMBConv", "GLUMBConvConfig"]


@dataclass(frozen=True)
class GLUMBConvConfig:
    """Attributes:
    dim: input channels C.
    mlp_ratio: hidden width H = int(mlp_ratio · dim) (2.5 in SANA).
    out_dim: output channels; None means dim.
    kernel_size: size of the depthwise conv (odd).
    """

    dim: int
    mlp_ratio: float = 2.5
    out_dim: int | None = None
    kernel_size: int = 3

    def __post_init__(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ValueError(f"GLUMBConvConfig.kernel_size must be odd, got {self.kernel_size}")

    @property
    def hidden_dim(self) -> int:
        return int(self.mlp_ratio * self.dim)


class GLUMBConv(nn.Module):
    def __init__(self, cfg: GLUMBConvConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden, out_dim = cfg.hidden_dim, cfg.out_dim or cfg.dim
        self.inverted = nn.Conv2d(cfg.dim, 2 * hidden, kernel_size=1)
        self.depthwise = nn.Conv2d(
            2 * hidden, 2 * hidden, cfg.kernel_size, padding=cfg.kernel_size // 2, groups=2 * hidden
        )
        self.pointwise = nn.Conv2d(hidden, out_dim, kernel_size=1, bias=False)

    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C_out, H, W)."""
        h = F.silu(self.inverted(x))  # (B, 2H, H, W)
        h = self.depthwise(h)  # (B, 2H, H, W)
        value, gate = h.chunk(2, dim=1)  # 2 × (B, H, H, W)
        return self.pointwise(value * F.silu(gate))  # (B, C_out, H, W)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Tokens (B, N, C) in row-major order over a (height, width) grid -> (B, N, C_out)."""
        grid = x.unflatten(1, (height, width)).permute(0, 3, 1, 2)  # (B, C, H, W)
        return self.forward_grid(grid).flatten(2).transpose(1, 2)  # (B, N, C_out)
