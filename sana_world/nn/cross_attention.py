"""Softmax cross-attention from image tokens to caption tokens, with key-padding masks.

Padding is expressed as an additive bias of -10000 on masked keys (diffusers' convention; a finite
value keeps an all-padding row finite instead of NaN). `cross_norm` puts an RMSNorm over the full
projected width of q and of k (SANA-1.5's `cross_norm`, diffusers' qk_norm on attn2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .norms import QKNorm

__all__ = ["CrossAttention", "CrossAttentionConfig", "key_padding_bias"]

MASKED_BIAS = -10000.0


def key_padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Keep-mask (B, L) (bool or 1 = keep, 0 = pad) -> additive bias (B, 1, 1, L) in `dtype`."""
    if mask.ndim != 2:
        raise ValueError(f"key padding mask must be (B, L), got shape {tuple(mask.shape)}")
    return ((1 - mask.to(dtype)) * MASKED_BIAS)[:, None, None, :]


@dataclass(frozen=True)
class CrossAttentionConfig:
    """Attributes:
    dim: query (image token) width D.
    context_dim: key/value (caption token) width.
    heads: number of heads.
    head_dim: channels per head (heads · head_dim need not equal D).
    qkv_bias: bias on the q, k, v projections.
    out_bias: bias on the output projection.
    cross_norm: RMSNorm on q and k over all heads.
    norm_eps: eps of those RMSNorms.
    """

    dim: int
    context_dim: int
    heads: int
    head_dim: int
    qkv_bias: bool = True
    out_bias: bool = True
    cross_norm: bool = False
    norm_eps: float = 1e-5

    @property
    def inner_dim(self) -> int:
        return self.heads * self.head_dim


class CrossAttention(nn.Module):
    def __init__(self, cfg: CrossAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        inner = cfg.inner_dim
        self.q = nn.Linear(cfg.dim, inner, bias=cfg.qkv_bias)
        self.kv = nn.Linear(cfg.context_dim, 2 * inner, bias=cfg.qkv_bias)
        self.qk_norm = QKNorm(inner, inner, eps=cfg.norm_eps) if cfg.cross_norm else None
        self.proj = nn.Linear(inner, cfg.dim, bias=cfg.out_bias)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (normed with `cross_norm`) and values 2 × (B, L, inner) of a caption: fixed while it is."""
        k, v = self.kv(context).chunk(2, dim=-1)  # 2 × (B, L, inner)
        if self.qk_norm is not None:
            k = self.qk_norm.k(k)
        return k, v

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, attn_bias: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x (B, N, D), context (B, L, context_dim), attn_bias (B, 1, 1, L) additive or None -> (B, N, D).
        kv: `project_context(context)`, if already computed."""
        B, N, _ = x.shape
        q = self.q(x)  # (B, N, inner)
        if self.qk_norm is not None:
            q = self.qk_norm.q(q)
        k, v = self.project_context(context) if kv is None else kv
        heads = self.cfg.heads
        q = q.view(B, N, heads, -1).transpose(1, 2)  # (B, h, N, d)
        k = k.view(B, -1, heads, q.shape[-1]).transpose(1, 2)  # (B, h, L, d)
        v = v.view(B, -1, heads, q.shape[-1]).transpose(1, 2)  # (B, h, L, d)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, -1))  # (B, N, D)
