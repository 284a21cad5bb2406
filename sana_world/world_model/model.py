"""SANA-WM: a camera-controlled video DiT with hybrid GDN / softmax attention, numerically matching
diffusers' `SanaWMTransformer3DModel` (bidirectional form).

Per block, with adaLN-single modulation *per latent frame* (each frame has its own timestep):

    1. x += g_a · Attn(LN(x)(1 + sc_a) + sh_a)            GDN+UCPE, or softmax+UCPE every n-th block
    2. x += plucker_proj(Plücker embedding)               if Plücker rays are given
    3. x += CrossAttn(x, caption)
    4. x += g_f · GLUMBConvTemp(LN(x)(1 + sc_f) + sh_f)  spatial GLU conv + residual temporal conv

Timesteps are truncated to integers (`t.long()`, so 500.7 acts as 500) before the sinusoid, as diffusers
does. Image conditioning lives outside the transformer: a clean first frame is marked by giving its
tokens timestep 0, see `image_conditioned_timesteps`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, get_args

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
    Rope3DConfig,
    RotaryEmbedding3D,
    TimestepEmbedding,
    key_padding_bias,
    layer_norm,
    modulate,
)
from sana_world.nn.gdn import GDNBackend

from .attention import CameraAttentionConfig, GDNCameraAttention, SoftmaxCameraAttention
from .causal import (
    BLOCK_NORM_EPS,
    BlockInputs,
    CausalContext,
    ChunkCausalConfig,
    causal_block_forward,
    rope_tables_at,
)
from .config import SanaWMConfig
from .ucpe import UcpeTransforms, prepare_ucpe

__all__ = ["CaptionContext", "GLUMBConvTemp", "SanaWM", "SanaWMBlock", "image_conditioned_timesteps",
           "param_count"]


class CaptionContext(NamedTuple):
    """A caption as the blocks read it: projected tokens context (B, L, D), the additive padding bias
    attn_bias (B, 1, 1, L) or None, and every block's cross-attention keys and values kv (2 × (B, L, inner)
    per block). Fixed while the caption and the weights are (`SanaWM.caption_context`)."""

    context: torch.Tensor
    attn_bias: torch.Tensor | None
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]


def image_conditioned_timesteps(timestep: torch.Tensor, clean_mask: torch.Tensor) -> torch.Tensor:
    """Per-frame timesteps with conditioning frames pinned clean: min(t, 1000 · (1 − mask)).

    timestep: scalar, (B,) or (B, T); clean_mask (B, T), 1 for a given (clean) frame. Returns (B, T).
    """
    t = timestep.float()
    t = t.view(-1, 1) if t.ndim == 1 else t
    return torch.minimum(t, 1000.0 * (1.0 - clean_mask.float()))


class GLUMBConvTemp(nn.Module):
    """GLUMBConv on every frame's grid, then x + Conv2d_(k×1)(x) mixing frames (full channel mixing)."""

    def __init__(self, dim: int, mlp_ratio: float, t_kernel_size: int) -> None:
        super().__init__()
        self.glu = GLUMBConv(GLUMBConvConfig(dim, mlp_ratio))
        self.t_conv = nn.Conv2d(dim, dim, (t_kernel_size, 1), padding=(t_kernel_size // 2, 0), bias=False)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """x (B, T·h·w, C) -> (B, T·h·w, C)."""
        B, N, C = x.shape
        T, h, w = grid
        frames = x.reshape(B * T, h, w, C).permute(0, 3, 1, 2)  # (B·T, C, h, w)
        y = self.glu.forward_grid(frames)  # (B·T, C, h, w)
        y = y.view(B, T, C, h * w).transpose(1, 2)  # (B, C, T, h·w)
        y = y + self.t_conv(y)
        return y.permute(0, 2, 3, 1).reshape(B, N, C)


class SanaWMBlock(nn.Module):
    def __init__(self, cfg: SanaWMConfig, index: int) -> None:
        super().__init__()
        D = cfg.dim
        attn_cfg = CameraAttentionConfig(
            D, cfg.head_dim, qk_norm=cfg.qk_norm, norm_eps=cfg.norm_eps,
            conv_kernel_size=cfg.conv_kernel_size, gdn_eps=cfg.gdn_eps, softmax_in_bf16=cfg.softmax_in_bf16,
            cam_softmax_scale=cfg.cam_softmax_scale,
        )  # fmt: skip
        self.is_softmax = cfg.is_softmax_block(index)
        self.attn = SoftmaxCameraAttention(attn_cfg) if self.is_softmax else GDNCameraAttention(attn_cfg)
        if self.is_softmax:
            self.attn.gates.requires_grad_(False)  # kept for the shared checkpoint layout, never read
        self.plucker_proj = nn.Linear(D, D) if cfg.has_plucker_proj(index) else None
        self.cross_attn = CrossAttention(
            CrossAttentionConfig(D, D, cfg.cross_heads, cfg.cross_head_dim, cross_norm=cfg.cross_norm,
                                 norm_eps=cfg.cross_norm_eps)
        )  # fmt: skip
        self.ffn = GLUMBConvTemp(D, cfg.mlp_ratio, cfg.t_kernel_size)
        self.mod = BlockModulation(D)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        attn_bias: torch.Tensor | None,
        t0: torch.Tensor,
        grid: tuple[int, int, int],
        rope: tuple[torch.Tensor, torch.Tensor],
        ucpe: UcpeTransforms | None,
        plucker: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, N, D), context (B, L, D), attn_bias (B, 1, 1, L) | None, t0 (B, T, 6D),
        plucker (B, N, D) | None -> (B, N, D)."""
        B, N, D = x.shape
        T = grid[0]

        def per_frame(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(B * T, N // T, D)  # (B·T, S, D)

        mods = self.mod(t0.reshape(B * T, -1))  # 6 × (B·T, 1, D)
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = mods
        # 1. Self-attention (GDN or softmax) with the camera branch.
        h = modulate(layer_norm(per_frame(x), BLOCK_NORM_EPS), shift_a, scale_a).reshape(B, N, D)
        x = x + (gate_a * per_frame(self.attn(h, grid, rope, ucpe))).reshape(B, N, D)
        # 2. Plücker rays.
        if plucker is not None and self.plucker_proj is not None:
            x = x + self.plucker_proj(plucker)
        # 3. Cross-attention to the caption.
        x = x + self.cross_attn(x, context, attn_bias)
        # 4. Feed-forward over space and time.
        h = modulate(layer_norm(per_frame(x), BLOCK_NORM_EPS), shift_f, scale_f).reshape(B, N, D)
        return x + (gate_f * per_frame(self.ffn(h, grid))).reshape(B, N, D)


def _patch_conv(in_channels: int, dim: int, patch: tuple[int, int, int]) -> nn.Conv3d:
    """Strided Conv3d patch embedder (odd kernels get k // 2 padding, as diffusers' SanaWMPatchEmbed)."""
    padding = tuple(k // 2 for k in patch) if patch[-1] % 2 == 1 else 0
    return nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch, padding=padding)


class SanaWM(nn.Module):
    """forward(hidden_states (B, C, T, H, W), timestep (B,) | (B, T) | (B, 1, T),
    encoder_hidden_states (B, L, caption_channels) | (B, 1, L, ·), encoder_attention_mask (B, L) | None,
    camera_conditions (B, T, 20) | None, chunk_plucker (B, 6·stride, T, H, W) | None) -> (B, C, T, H, W).

    Without camera_conditions the camera branches are skipped; without chunk_plucker the Plücker
    projections are. Set `gradient_checkpointing = True` to recompute blocks in the backward pass.
    """

    def __init__(self, cfg: SanaWMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, p = cfg.dim, cfg.patch_size
        self.patch_embed = _patch_conv(cfg.in_channels, D, p)
        self.plucker_embed = _patch_conv(cfg.plucker_channels, D, p)
        # Absolute-map embedder of diffusers' no-Plücker path: in the checkpoint, never used here.
        self.raymap_embed = _patch_conv(3, D, p).requires_grad_(False)
        self.t_embed = TimestepEmbedding(D)
        self.t_block = AdaLNSingle(D)
        self.caption_proj = CaptionProjection(
            CaptionProjectionConfig(cfg.caption_channels, D, norm=cfg.y_norm, norm_eps=cfg.norm_eps)
        )
        self.rope = RotaryEmbedding3D(Rope3DConfig(cfg.head_dim, cfg.rope_theta))
        self.blocks = nn.ModuleList(SanaWMBlock(cfg, i) for i in range(cfg.num_layers))
        self.final = FinalLayer(D, math.prod(p) * cfg.in_channels)
        self.gradient_checkpointing = False
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Xavier linears and patch convs with zero biases, N(0, 0.02) embedding MLPs, Mamba-style GDN
        gates; the Plücker embedder and the camera output projections start at zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.cfg.dim, -1))
        for emb in (self.t_embed, self.caption_proj):
            nn.init.normal_(emb.fc1.weight, std=0.02)
            nn.init.normal_(emb.fc2.weight, std=0.02)
        nn.init.normal_(self.t_block.linear.weight, std=0.02)
        nn.init.zeros_(self.plucker_embed.weight)
        nn.init.zeros_(self.plucker_embed.bias)
        for block in self.blocks:
            block.attn.gates.reset_gate_parameters()
            nn.init.zeros_(block.attn.out_proj_cam.weight)

    def embed_timesteps(self, timestep: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Scalar, (B,), (B, T) or (B, 1, T) timesteps -> per-frame embedding (B, T, D), after t.long()."""
        if timestep.ndim == 3:
            if timestep.shape[1] != 1:
                raise ValueError(f"3-D timesteps must be (B, 1, T), got {tuple(timestep.shape)}")
            timestep = timestep[:, 0]
        if timestep.ndim <= 1:
            timestep = timestep.reshape(-1, 1)
        if timestep.ndim != 2 or timestep.shape[1] not in (1, frames):
            shape = tuple(timestep.shape)
            raise ValueError(f"timesteps must broadcast to (B={batch}, T={frames}), got {shape}")
        t = timestep.expand(batch, frames).long().float()  # deliberate truncation: 500.7 -> 500
        return self.t_embed(t.reshape(-1)).view(batch, frames, -1)

    def caption_context(
        self, encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> CaptionContext:  # fmt: skip
        """The caption projected for the blocks, in `dtype` (that of the patch embedding's output)."""
        if encoder_hidden_states.ndim == 4:
            encoder_hidden_states = encoder_hidden_states.squeeze(1)
        context = self.caption_proj(encoder_hidden_states.to(dtype))  # (B, L, D)
        attn_bias = None  # (B, 1, 1, L) additive, or None
        if encoder_attention_mask is not None:
            attn_bias = key_padding_bias(encoder_attention_mask, dtype)
        kv = tuple(block.cross_attn.project_context(context) for block in self.blocks)
        return CaptionContext(context, attn_bias, kv)

    def prepare_inputs(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        camera_conditions: torch.Tensor | None = None,
        chunk_plucker: torch.Tensor | None = None,
        frame_offset: int | tuple[int, ...] = 0,
        caption: CaptionContext | None = None,
    ) -> BlockInputs:
        """Everything the blocks read: tokens, modulation, caption, position tables and camera tensors.

        `frame_offset` shifts the temporal RoPE positions (absolute frame index of the first latent frame,
        for streaming; a tuple: one per row, tables per row); 0 reproduces the plain forward. `caption`: `caption_context` of the encoder states,
        if already computed (they are then not read; the caller hands its keys and values to the blocks).
        """
        cfg = self.cfg
        B, _, F_, H, W = hidden_states.shape
        _, ph, pw = cfg.patch_size
        if H % ph != 0 or W % pw != 0:
            raise ValueError(f"latent size {(H, W)} is not a multiple of the patch size {(ph, pw)}")
        grid = (F_, H // ph, W // pw)  # (T, h, w)
        # 1. Tokens, timestep modulation, caption, padding bias, position tables.
        x = self.patch_embed(hidden_states).flatten(2).transpose(1, 2)  # (B, N, D)
        temb = self.embed_timesteps(timestep, B, F_).to(x.dtype)  # (B, T, D)
        t0 = self.t_block(temb)  # (B, T, 6D)
        if caption is None:
            if encoder_hidden_states.ndim == 4:
                encoder_hidden_states = encoder_hidden_states.squeeze(1)
            context = self.caption_proj(encoder_hidden_states.to(x.dtype))  # (B, L, D)
            attn_bias = None  # (B, 1, 1, L) additive, or None
            if encoder_attention_mask is not None:
                attn_bias = key_padding_bias(encoder_attention_mask, x.dtype)
        else:
            context, attn_bias = caption.context, caption.attn_bias
        if frame_offset == 0:
            rope = self.rope(grid, device=x.device)  # 2 × (N, head_dim)
        else:
            rope = rope_tables_at(self.rope.cfg, grid, frame_offset, x.device)
        # 2. Camera conditioning: UCPE ray transforms and the Plücker embedding.
        ucpe = None
        if camera_conditions is not None:
            ucpe = prepare_ucpe(camera_conditions.float(), grid, cfg.patch_size, *rope, cfg.head_dim)
        plucker = None
        if chunk_plucker is not None:
            if chunk_plucker.shape[1] != cfg.plucker_channels:
                raise ValueError(
                    f"chunk_plucker has {chunk_plucker.shape[1]} channels, expected {cfg.plucker_channels}"
                )
            plucker = self.plucker_embed(chunk_plucker.to(x.dtype)).flatten(2).transpose(1, 2)  # (B, N, D)
        return BlockInputs(x, temb, t0, context, attn_bias, grid, rope, ucpe, plucker)

    def output_head(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """Per-frame output head and unpatchify: tokens (B, N, D) -> (B, C, T, H, W)."""
        cfg = self.cfg
        _, ph, pw = cfg.patch_size
        T, h, w = inputs.grid
        B = x.shape[0]
        out = self.final(x.reshape(B * T, h * w, -1), inputs.temb.reshape(B * T, -1))  # (B·T, h·w, ph·pw·C)
        out = out.view(B, T, h, w, ph, pw, cfg.in_channels)
        out = out.permute(0, 6, 1, 2, 4, 3, 5)  # (B, C, T, h, ph, w, pw)
        return out.reshape(B, cfg.in_channels, T, h * ph, w * pw)

    def compile_blocks(self, **compile_kwargs: Any) -> SanaWM:
        """Compile every block in place (regional ``torch.compile``: blocks of one kind share a compiled graph,
        so this compiles in a fraction of a whole-model compile) and return self. The bidirectional forward
        then runs compiled blocks; the chunk-causal and streaming paths stay eager. A CUDA speed option."""
        for block in self.blocks:
            block.compile(**compile_kwargs)
        return self

    def set_gdn_backend(self, backend: GDNBackend) -> SanaWM:
        """Run every bidirectional GDN scan with ``backend`` ("torch": the reference; "triton": the fused CUDA
        kernels, `sana_world.kernels.gdn_scan`) and return self. Weights and outputs (to fp32 summation
        order) are unchanged; the chunk-causal and streaming scans stay in torch."""
        if backend not in get_args(GDNBackend):
            raise ValueError(f"backend must be one of {get_args(GDNBackend)}, got {backend!r}")
        for m in self.modules():
            if isinstance(m, GDNCameraAttention):
                m.cfg = dataclasses.replace(m.cfg, gdn_backend=backend)
        return self

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        camera_conditions: torch.Tensor | None = None,
        chunk_plucker: torch.Tensor | None = None,
        chunk_size: int | None = None,
        causal: ChunkCausalConfig | None = None,
    ) -> torch.Tensor:
        """chunk_size None: bidirectional (diffusers parity). chunk_size k: the chunk-causal mode of the same
        weights (see `causal.py`), with the softmax window of `causal` (default `ChunkCausalConfig()`)."""
        inp = self.prepare_inputs(
            hidden_states, timestep, encoder_hidden_states, encoder_attention_mask, camera_conditions,
            chunk_plucker,
        )  # fmt: skip
        x = inp.x
        if chunk_size is not None:
            # 3'. Chunk-causal blocks: empty stream state, chunks separated by masks.
            causal = causal or ChunkCausalConfig()
            ctx = CausalContext.full_sequence(inp.grid[0], chunk_size, causal, x.device)
            for block in self.blocks:
                x, _ = causal_block_forward(block, x, inp, ctx, None)
            return self.output_head(x, inp)
        # 3. Blocks.
        for block in self.blocks:
            args = (x, inp.context, inp.attn_bias, inp.t0, inp.grid, inp.rope, inp.ucpe, inp.plucker)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        # 4. Per-frame output head and unpatchify.
        return self.output_head(x, inp)


def param_count(cfg: SanaWMConfig) -> int:
    """Number of parameters, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = SanaWM(cfg)
    return sum(p.numel() for p in model.parameters())
