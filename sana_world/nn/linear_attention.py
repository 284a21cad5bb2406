"""ReLU linear attention (SANA's LiteLA) with fp32 accumulation.

For one head with φ = ReLU:

    out_i = Σ_j v_j (φ(k_j)·φ(q_i)) / (Σ_j φ(k_j)·φ(q_i) + eps)

computed in O(N·d²): a row of ones is appended to V so that the normaliser comes out of the same
matmul as the numerator, ((V;1) φ(K)ᵀ) φ(Q), and the first d rows are divided by the last one. q, k
and v are cast to fp32 before both matmuls whatever the input dtype; the result is cast back.

`backend="triton"` (opt-in, CUDA only) runs the same function as the Triton kernels of
`sana_world.kernels`; the default torch path is the reference.

`rotary_relu_linear_attention` is the SANA-Video variant: ReLU first, then RoPE on q and k for the
numerator only; the denominator keeps the un-rotated (non-negative) features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .norms import QKNorm
from .rope import apply_rotary

__all__ = [
    "LinearAttention",
    "LinearAttentionBackend",
    "LinearAttentionConfig",
    "relu_linear_attention",
    "rotary_relu_linear_attention",
]

FP16_MAX = 65504.0

LinearAttentionBackend = Literal["torch", "triton"]


def relu_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: float = 1e-15,
    backend: LinearAttentionBackend = "torch",
) -> torch.Tensor:
    """Linear attention with φ = ReLU on (B, H, N, d) tensors; returns (B, H, N, d) in q's dtype.

    Accumulates in fp32 and gets the normaliser from a ones-padded value matrix. backend="triton" runs
    `sana_world.kernels.triton_relu_linear_attention` instead (CUDA tensors, triton installed; same
    function up to fp32 summation order; its output is laid out as (B, N, H, d) in memory).
    """
    if backend == "triton":
        from sana_world.kernels import triton_relu_linear_attention

        return triton_relu_linear_attention(q, k, v, eps=eps)
    if backend != "torch":
        raise ValueError(f"backend must be one of {get_args(LinearAttentionBackend)}, got {backend!r}")
    out_dtype = q.dtype
    q, k, v = F.relu(q).float(), F.relu(k).float(), v.float()
    v = F.pad(v, (0, 1), value=1.0)  # (B, H, N, d+1): last channel is all ones
    kv = torch.matmul(v.transpose(-1, -2), k)  # (B, H, d+1, d) = Σ_j v'_j φ(k_j)ᵀ
    out = torch.matmul(q, kv.transpose(-1, -2))  # (B, H, N, d+1)
    out = out[..., :-1] / (out[..., -1:] + eps)  # (B, H, N, d)
    return out.to(out_dtype)


def rotary_relu_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float = 1e-15,
) -> torch.Tensor:
    """SANA-Video linear attention on (B, N, H, d) tensors with RoPE tables cos, sin of shape (N, d).

    Numerator: Σ_j v_j (R_j φ(k_j))·(R_i φ(q_i)); denominator: Σ_j φ(k_j)·φ(q_i) + eps.
    Returns (B, N, H, d) in q's dtype.
    """
    out_dtype = q.dtype
    q, k = F.relu(q), F.relu(k)
    q_rot, k_rot = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, N, H, d)
    # 1. Denominator from the un-rotated features: φ(q_i)·Σ_j φ(k_j).
    k_sum = k.float().sum(dim=1, keepdim=True)  # (B, 1, H, d)
    den = (q.float() * k_sum).sum(-1, keepdim=True)  # (B, N, H, 1)
    # 2. Numerator from the rotated features: (Σ_j v_j k̃_jᵀ) q̃_i.
    q_rot, k_rot, v = (t.float().transpose(1, 2) for t in (q_rot, k_rot, v))  # (B, H, N, d)
    kv = torch.matmul(v.transpose(-1, -2), k_rot)  # (B, H, d, d)
    num = torch.matmul(q_rot, kv.transpose(-1, -2)).transpose(1, 2)  # (B, N, H, d)
    return (num / (den + eps)).to(out_dtype)


@dataclass(frozen=True)
class LinearAttentionConfig:
    """Self-attention of one linear DiT block.

    Attributes:
        dim: model width D; the number of heads is D // head_dim.
        head_dim: channels per head (32 in every SANA image model).
        qkv_bias: bias on the fused q/k/v projection (False in SANA).
        out_bias: bias on the output projection.
        qk_norm: RMSNorm over all D channels of q and of k before the head split (SANA-1.5, Sprint).
        norm_eps: eps of those RMSNorms.
        eps: added to the normaliser (1e-15 in diffusers, 1e-8 in NVlabs LiteLA).
        backend: "torch" (reference, any device) or "triton" (fused kernels, CUDA and triton only).
    """

    dim: int
    head_dim: int = 32
    qkv_bias: bool = False
    out_bias: bool = True
    qk_norm: bool = False
    norm_eps: float = 1e-5
    eps: float = 1e-15
    backend: LinearAttentionBackend = "torch"

    def __post_init__(self) -> None:
        if self.dim % self.head_dim != 0:
            raise ValueError(f"dim={self.dim} is not a multiple of head_dim={self.head_dim}")
        if self.backend not in get_args(LinearAttentionBackend):
            choices = get_args(LinearAttentionBackend)
            raise ValueError(f"backend must be one of {choices}, got {self.backend!r}")

    @property
    def heads(self) -> int:
        return self.dim // self.head_dim


class LinearAttention(nn.Module):
    """Fused qkv projection → optional qk-norm → ReLU linear attention → output projection."""

    def __init__(self, cfg: LinearAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.qk_norm = QKNorm(cfg.dim, cfg.dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 × (B, N, D)
        if self.qk_norm is not None:
            q, k = self.qk_norm(q, k)
        heads = self.cfg.heads
        q, k, v = (t.view(B, N, heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, N, d)
        out = relu_linear_attention(q, k, v, eps=self.cfg.eps, backend=self.cfg.backend)  # (B, H, N, d)
        out = self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)
        if out.dtype == torch.float16:
            out = out.clamp(-FP16_MAX, FP16_MAX)
        return out
