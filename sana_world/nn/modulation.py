"""adaLN-single (PixArt-α / SANA) modulation.

One shared `AdaLNSingle` maps the timestep embedding to t0 = Linear(SiLU(temb)) of width 6·D. Every
block owns a learnt `scale_shift_table` (6, D) that is added to t0 and split into shift/scale/gate
for attention and for the FFN. The final layer has its own (2, D) table added to the *plain* timestep
embedding (shift, scale), then LayerNorm → modulate → Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from .norms import layer_norm

__all__ = ["AdaLNSingle", "BlockModulation", "FinalLayer", "modulate"]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x · (1 + scale) + shift, with shift/scale (B, 1, D) broadcast over tokens."""
    return x * (1 + scale) + shift


class AdaLNSingle(nn.Module):
    """temb (B, D) -> t0 (B, n·D), shared by all blocks."""

    def __init__(self, dim: int, n: int = 6) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, n * dim)

    def forward(self, temb: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.nn.functional.silu(temb))


class BlockModulation(nn.Module):
    """Per-block table (n, D); forward(t0 (B, n·D)) -> n tensors (B, 1, D).

    For n = 6 the order is shift_attn, scale_attn, gate_attn, shift_ffn, scale_ffn, gate_ffn.
    """

    def __init__(self, dim: int, n: int = 6) -> None:
        super().__init__()
        self.n = n
        self.scale_shift_table = nn.Parameter(torch.randn(n, dim) / dim**0.5)

    def forward(self, t0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B = t0.shape[0]
        mod = self.scale_shift_table[None] + t0.reshape(B, self.n, -1)  # (B, n, D)
        return mod.chunk(self.n, dim=1)


class FinalLayer(nn.Module):
    """LayerNorm (no affine) → shift/scale from table (2, D) + temb → Linear(D, out_dim)."""

    def __init__(self, dim: int, out_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), temb (B, D) -> (B, N, out_dim)."""
        shift, scale = (self.scale_shift_table[None] + temb[:, None]).chunk(2, dim=1)  # 2 × (B, 1, D)
        return self.proj(modulate(layer_norm(x, self.eps), shift, scale))
