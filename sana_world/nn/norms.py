"""Normalisation layers used across the SANA family.

- `RMSNorm`: root-mean-square norm with the statistic taken in fp32 (diffusers `RMSNorm` numerics).
- `layer_norm`: LayerNorm without affine parameters (the adaLN blocks' pre-norm).
- `QKNorm`: a pair of RMSNorms over *all* heads at once ("rms_norm_across_heads"), applied to the
  projected queries and keys before the head split, as SANA-1.5 / Sprint do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QKNorm", "RMSNorm", "layer_norm"]


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dimension with no weight and no bias."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight over the last dimension.

    The mean square is computed in fp32; the normalised tensor is cast back to the input dtype before
    the weight is applied, so bf16 in gives bf16 out.
    """

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True, init: float = 1.0) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.full((dim,), float(init))) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.dtype == torch.float32 and x.device.type == "cpu" and (w is None or w.dtype == torch.float32):
            # fp32 on the CPU: one op, the steps below up to round-off (bitwise with torch 2.13's kernel;
            # tests/world_model/test_stream_fast_paths.py)
            return F.rms_norm(x, (self.dim,), w, self.eps)
        variance = x.float().pow(2).mean(-1, keepdim=True)  # (..., 1), fp32
        y = (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)
        if self.weight is None:
            return y
        return y * self.weight.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.weight is not None}"


class QKNorm(nn.Module):
    """RMSNorm on queries and on keys, each over the full projected width (all heads together)."""

    def __init__(self, q_dim: int, k_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.q = RMSNorm(q_dim, eps=eps)
        self.k = RMSNorm(k_dim, eps=eps)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q(q), self.k(k)
