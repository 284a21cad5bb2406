"""Mix-FFN (GLUMBConv): the feed-forward of a linear DiT block, run on the latent grid.

    1×1 conv C → 2H (bias) → SiLU → 3×3 depthwise conv over 2H (bias) → split into value, gate
    → value · SiLU(gate) → 1×1 conv H → C_out (no bias)

The depthwise conv is the only place image SANA mixes neighbouring tokens, i.e. its positional
signal. `forward` takes tokens (B, N, C) plus the grid size, `forward_channels_last` (B, H, W, C): both
run the 1×1 convs as linears over the channels (GEMMs on the tokens as they lie, no layout change) and the
depthwise conv on a channels-last view. `forward_grid` takes (B, C, H, W) and runs the three convs.
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

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C_out); `forward_grid`'s function with the 1×1 convs as linears."""
        h = F.silu(_pointwise(self.inverted, x))  # (B, H, W, 2H)
        h = self.depthwise(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, 2H)
        value, gate = h.chunk(2, dim=-1)  # 2 × (B, H, W, H)
        return _pointwise(self.pointwise, value * F.silu(gate))  # (B, H, W, C_out)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Tokens (B, N, C) in row-major order over a (height, width) grid -> (B, N, C_out)."""
        grid = x.unflatten(1, (height, width))  # (B, H, W, C)
        return self.forward_channels_last(grid).flatten(1, 2)  # (B, N, C_out)


def _pointwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv on channels-last x (B, H, W, C) -> (B, H, W, N): a linear over the channels; a module
    that replaced the Conv2d (`nn.fp8.FP8PointwiseConv2d`) is called on the (B, C, H, W) view instead."""
    if isinstance(conv, nn.Conv2d):
        return F.linear(x, conv.weight.flatten(1), conv.bias)
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
