"""SANA linear DiT for image latents, numerically matching diffusers' `SanaTransformer2DModel`.

Per block (adaLN-single, no positional encoding unless `interpolation_scale` is set):

    1. x += g_a · LinearAttn(LN(x)(1 + sc_a) + sh_a)
    2. x += CrossAttn(x, caption)            (no modulation, no gate)
    3. x += g_f · MixFFN(LN(x)(1 + sc_f) + sh_f)

Timesteps: with `truncate_timesteps=True` (NVlabs SANA and diffusers SANA-WM) the model casts t to an
integer (`.long()`, i.e. 500.7 → 500) before the sinusoid. diffusers' image `SanaTransformer2DModel`
does *not* truncate, so `from_diffusers` builds configs with `truncate_timesteps=False`; SANA-Sprint
needs it off too (it feeds t in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sana_world.nn import (
    AdaLNSingle,
    BlockModulation,
    CaptionProjection,
    CaptionProjectionConfig,
    CrossAttention,
    CrossAttentionConfig,
    FinalLayer,
    GLUMBConv,
    GLUMBConvConfig,
    LinearAttention,
    LinearAttentionConfig,
    PatchEmbed,
    PatchEmbedConfig,
    TimestepEmbedding,
    key_padding_bias,
    layer_norm,
    modulate,
)

__all__ = ["PRESETS", "SanaBlock", "SanaDiT", "SanaDiTConfig", "param_count"]


@dataclass(frozen=True)
class SanaDiTConfig:
    """Attributes:
    in_channels: latent channels C.
    out_channels: predicted channels; None means in_channels.
    num_layers: number of blocks.
    dim: model width D (a multiple of head_dim).
    head_dim: linear-attention channels per head (heads = dim // head_dim).
    cross_heads: cross-attention heads.
    cross_head_dim: cross-attention channels per head.
    caption_channels: text-encoder width.
    mlp_ratio: Mix-FFN hidden width = int(mlp_ratio · dim).
    patch_size: p.
    attention_bias: bias on the linear attention's q/k/v projection.
    qk_norm: RMSNorm on q, k of the linear attention (SANA-1.5, Sprint).
    cross_norm: RMSNorm on q, k of the cross-attention (SANA-1.5, Sprint).
    guidance_embeds: add an embedding of the guidance scale to the timestep embedding (Sprint).
    truncate_timesteps: embed t.long() instead of t (NVlabs behaviour; see module docstring).
    norm_eps: eps of the two per-block LayerNorms.
    linear_attn_eps: eps of the linear-attention normaliser.
    interpolation_scale: None = NoPE; else add a sin-cos position table with this scale.
    sample_size: latent size the sin-cos table is normalised to (base grid = sample_size // p).
    timestep_scale: factor a sampler applies to t before calling the model (kept for diffusers).
    guidance_embeds_scale: factor a sampler applies to the guidance scale (kept for diffusers).
    caption_norm_init: initial weight of the caption RMSNorm.
    """

    in_channels: int = 32
    out_channels: int | None = None
    num_layers: int = 20
    dim: int = 2240
    head_dim: int = 32
    cross_heads: int = 20
    cross_head_dim: int = 112
    caption_channels: int = 2304
    mlp_ratio: float = 2.5
    patch_size: int = 1
    attention_bias: bool = False
    qk_norm: bool = False
    cross_norm: bool = False
    guidance_embeds: bool = False
    truncate_timesteps: bool = True
    norm_eps: float = 1e-6
    linear_attn_eps: float = 1e-15
    interpolation_scale: float | None = None
    sample_size: int = 32
    timestep_scale: float = 1.0
    guidance_embeds_scale: float = 0.1
    caption_norm_init: float = 1.0

    def __post_init__(self) -> None:
        if self.dim % self.head_dim != 0:
            raise ValueError(f"SanaDiTConfig.dim={self.dim} is not a multiple of head_dim={self.head_dim}")
        for name in ("in_channels", "num_layers", "dim", "cross_heads", "cross_head_dim", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SanaDiTConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def heads(self) -> int:
        return self.dim // self.head_dim

    @property
    def out_dim(self) -> int:
        """Channels predicted per latent position."""
        return self.out_channels if self.out_channels is not None else self.in_channels


class SanaBlock(nn.Module):
    def __init__(self, cfg: SanaDiTConfig) -> None:
        super().__init__()
        self.norm_eps = cfg.norm_eps
        attn_cfg = LinearAttentionConfig(
            cfg.dim, cfg.head_dim, qkv_bias=cfg.attention_bias, qk_norm=cfg.qk_norm, eps=cfg.linear_attn_eps
        )
        cross_cfg = CrossAttentionConfig(
            cfg.dim, cfg.dim, cfg.cross_heads, cfg.cross_head_dim, cross_norm=cfg.cross_norm
        )
        self.attn = LinearAttention(attn_cfg)
        self.cross_attn = CrossAttention(cross_cfg)
        self.ffn = GLUMBConv(GLUMBConvConfig(cfg.dim, cfg.mlp_ratio))
        self.mod = BlockModulation(cfg.dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        attn_bias: torch.Tensor | None,
        t0: torch.Tensor,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """x (B, N, D), context (B, L, D), attn_bias (B, 1, 1, L) | None, t0 (B, 6D) -> (B, N, D)."""
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.mod(t0)  # 6 × (B, 1, D)
        # 1. Linear self-attention.
        h = modulate(layer_norm(x, self.norm_eps), shift_a, scale_a).to(x.dtype)
        x = x + gate_a * self.attn(h)
        # 2. Cross-attention to the caption.
        x = x + self.cross_attn(x, context, attn_bias)
        # 3. Mix-FFN on the latent grid.
        h = modulate(layer_norm(x, self.norm_eps), shift_f, scale_f)
        return x + gate_f * self.ffn(h, height, width)


class SanaDiT(nn.Module):
    """forward(x (B, C, H, W), timestep (B,), encoder_hidden_states (B, L, caption_channels),
    encoder_attention_mask (B, L) | None, guidance (B,) | None) -> (B, C_out, H, W).

    Set `gradient_checkpointing = True` to recompute each block in the backward pass.
    """

    def __init__(self, cfg: SanaDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.patch_embed = PatchEmbed(
            PatchEmbedConfig(
                cfg.in_channels, D, cfg.patch_size, cfg.interpolation_scale, cfg.sample_size // cfg.patch_size
            )
        )
        self.t_embed = TimestepEmbedding(D)
        self.guidance_embed = TimestepEmbedding(D) if cfg.guidance_embeds else None
        self.t_block = AdaLNSingle(D)
        self.caption_proj = CaptionProjection(
            CaptionProjectionConfig(cfg.caption_channels, D, norm_init=cfg.caption_norm_init)
        )
        self.blocks = nn.ModuleList(SanaBlock(cfg) for _ in range(cfg.num_layers))
        self.final = FinalLayer(D, cfg.patch_size**2 * cfg.out_dim)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """PixArt-style init: xavier-uniform linears/patch conv, N(0, 0.02) embedding MLPs, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(self.cfg.dim, -1))
        embedders = [self.t_embed, self.caption_proj] + ([self.guidance_embed] if self.guidance_embed else [])
        for emb in embedders:
            nn.init.normal_(emb.fc1.weight, std=0.02)
            nn.init.normal_(emb.fc2.weight, std=0.02)
        nn.init.normal_(self.t_block.linear.weight, std=0.02)

    def embed_timestep(
        self, timestep: torch.Tensor, guidance: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        """(B,) timesteps [+ (B,) guidance] -> timestep embedding (B, D)."""
        if self.cfg.truncate_timesteps:
            timestep = timestep.long()  # deliberate: 500.7 -> 500, as NVlabs SANA
        temb = self.t_embed(timestep, dtype)  # (B, D)
        if self.guidance_embed is not None:
            if guidance is None:
                raise ValueError("this model has guidance_embeds=True: pass guidance (B,)")
            temb = temb + self.guidance_embed(guidance, dtype)
        elif guidance is not None:
            raise ValueError("guidance was passed but the model has guidance_embeds=False")
        return temb

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, _, H, W = x.shape
        p = self.cfg.patch_size
        h, w = H // p, W // p
        # 1. Inputs: tokens, conditioning, caption, padding bias.
        attn_bias = None  # (B, 1, 1, L) additive, or None
        if encoder_attention_mask is not None:
            attn_bias = key_padding_bias(encoder_attention_mask, x.dtype)
        if timestep.ndim == 0:
            timestep = timestep.expand(B)
        if guidance is not None and guidance.ndim == 0:
            guidance = guidance.expand(B)
        tokens = self.patch_embed(x)  # (B, N, D)
        temb = self.embed_timestep(timestep, guidance, tokens.dtype)  # (B, D)
        t0 = self.t_block(temb)  # (B, 6D)
        context = self.caption_proj(encoder_hidden_states)  # (B, L, D)
        # 2. Blocks.
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, context, attn_bias, t0, h, w, use_reentrant=False)
            else:
                tokens = block(tokens, context, attn_bias, t0, h, w)
        # 3. Output head and unpatchify.
        out = self.final(tokens, temb)  # (B, N, p·p·C_out)
        out = out.reshape(B, h, w, p, p, -1).permute(0, 5, 1, 3, 2, 4)  # (B, C_out, h, p, w, p)
        return out.reshape(B, -1, h * p, w * p)


def param_count(cfg: SanaDiTConfig) -> int:
    """Number of parameters, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = SanaDiT(cfg)
    return sum(p.numel() for p in model.parameters())


# Presets: plain functions returning configs, gathered in a plain dict.


def tiny() -> SanaDiTConfig:
    """Debug size for CPU tests: 2 blocks, width 64."""
    return SanaDiTConfig(
        in_channels=4, num_layers=2, dim=64, head_dim=32, cross_heads=2, cross_head_dim=32,
        caption_channels=32,
    )  # fmt: skip


def small() -> SanaDiTConfig:
    """Default world model: 12 blocks, width 384, 32-channel DC-AE latents, 256-d captions (~29M).

    256 is the default width of `ProceduralTextEncoder`; set caption_channels=2304 for Gemma features.
    """
    return SanaDiTConfig(
        in_channels=32, num_layers=12, dim=384, head_dim=32, cross_heads=6, cross_head_dim=64,
        caption_channels=256,
    )  # fmt: skip


def rooms() -> SanaDiTConfig:
    """The shipped scene-start model for 128^2 rooms: 6 blocks, width 256, patch 2 on the 16x16x16
    ``f8c16_lite`` latents (64 tokens), 256-d procedural captions."""
    return SanaDiTConfig(
        in_channels=16, num_layers=6, dim=256, head_dim=32, cross_heads=4, cross_head_dim=64,
        caption_channels=256, patch_size=2, sample_size=16,
    )  # fmt: skip


def sana_600m() -> SanaDiTConfig:
    """SanaMS_600M_P1_D28."""
    return SanaDiTConfig(num_layers=28, dim=1152, cross_heads=16, cross_head_dim=72)


def sana_1600m() -> SanaDiTConfig:
    """SanaMS_1600M_P1_D20."""
    return SanaDiTConfig(num_layers=20, dim=2240, cross_heads=20, cross_head_dim=112)


def sana_4800m() -> SanaDiTConfig:
    """SANA-1.5 4.8B: SanaMS_4800M_P1_D60 with qk_norm and cross_norm."""
    return SanaDiTConfig(
        num_layers=60, dim=2240, cross_heads=20, cross_head_dim=112, qk_norm=True, cross_norm=True
    )


def sprint_600m() -> SanaDiTConfig:
    """SANA-Sprint 0.6B: qk/cross norm, guidance embedding, fractional t in [0, 1] (no truncation)."""
    return SanaDiTConfig(
        num_layers=28, dim=1152, cross_heads=16, cross_head_dim=72, qk_norm=True, cross_norm=True,
        guidance_embeds=True, truncate_timesteps=False,
    )  # fmt: skip


def sprint_1600m() -> SanaDiTConfig:
    """SANA-Sprint 1.6B: qk/cross norm, guidance embedding, fractional t in [0, 1] (no truncation)."""
    return SanaDiTConfig(
        num_layers=20, dim=2240, cross_heads=20, cross_head_dim=112, qk_norm=True, cross_norm=True,
        guidance_embeds=True, truncate_timesteps=False,
    )  # fmt: skip


PRESETS: dict[str, Callable[[], SanaDiTConfig]] = {
    "rooms": rooms,
    "tiny": tiny,
    "small": small,
    "sana_600m": sana_600m,
    "sana_1600m": sana_1600m,
    "sana_4800m": sana_4800m,
    "sprint_600m": sprint_600m,
    "sprint_1600m": sprint_1600m,
}
