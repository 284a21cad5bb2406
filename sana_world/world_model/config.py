"""`SanaWMConfig`: the typed description of a SANA-WM transformer, plus size presets.

Presets are plain functions returning configs (`tiny`, `small`, `sana_wm_2600m`), gathered in `PRESETS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PRESETS", "SanaWMConfig", "rooms", "rooms_l12", "rooms_p1", "sana_wm_2600m", "small", "tiny"]

# SDPA head sizes diffusers' softmax camera branch leaves unpadded (FlashAttention-2 sizes).
_FLASH_HEAD_DIMS = (32, 64, 128, 256)


@dataclass(frozen=True)
class SanaWMConfig:
    """Attributes:
    in_channels: latent channels C (128 for LTX-2); the model predicts the same number.
    num_layers: number of blocks.
    dim: model width D.
    head_dim: channels per self-attention head (GDN, softmax and camera branches); heads = dim // head_dim.
        Must be a multiple of 8 (half of each head is UCPE-transformed in groups of 4).
    cross_heads: cross-attention heads (head size dim // cross_heads).
    caption_channels: text-encoder width (2304 for Gemma-2-2B).
    patch_size: (p_t, p_h, p_w); p_t must be 1.
    softmax_every_n: block i is softmax attention when (i + 1) % n == 0; 0 means every block is GDN.
    mlp_ratio: GLUMBConvTemp hidden width = int(mlp_ratio · dim).
    t_kernel_size: temporal kernel of GLUMBConvTemp's residual conv (odd).
    conv_kernel_size: causal kernel K of the GDN blocks' short conv on K (non-causal span 2K − 1).
    qk_norm: RMSNorm over all heads on self-attention q and k (main and camera branch).
    cross_norm: RMSNorm on the cross-attention q and k.
    y_norm: RMSNorm after the caption projection.
    plucker_stride: raw frames per latent frame in the Plücker tensor; it has 6 · stride channels.
    plucker_blocks: blocks (from the first) that add `plucker_proj(plücker embedding)`; None means all.
    rope_theta: base of the 3-D RoPE frequencies.
    gdn_eps: added to the GDN normaliser.
    norm_eps: eps of the q/k RMSNorms and the caption RMSNorm.
    cross_norm_eps: eps of the cross-attention RMSNorms.
    softmax_in_bf16: cast q, k, v to bf16 before softmax attention, as diffusers does with fp32 inputs;
        False (default) keeps fp32.
    """

    in_channels: int = 128
    num_layers: int = 20
    dim: int = 2240
    head_dim: int = 112
    cross_heads: int = 20
    caption_channels: int = 2304
    patch_size: tuple[int, int, int] = (1, 1, 1)
    softmax_every_n: int = 4
    mlp_ratio: float = 3.0
    t_kernel_size: int = 3
    conv_kernel_size: int = 4
    qk_norm: bool = True
    cross_norm: bool = True
    y_norm: bool = True
    plucker_stride: int = 8
    plucker_blocks: int | None = None
    rope_theta: float = 10000.0
    gdn_eps: float = 1e-8
    norm_eps: float = 1e-5
    cross_norm_eps: float = 1e-6
    softmax_in_bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_layers", "dim", "head_dim", "cross_heads", "caption_channels",
                     "conv_kernel_size", "t_kernel_size", "plucker_stride"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"SanaWMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.head_dim != 0:
            raise ValueError(f"SanaWMConfig.dim={self.dim} is not a multiple of head_dim={self.head_dim}")
        if self.head_dim % 8 != 0 or self.head_dim < 16:
            raise ValueError(f"SanaWMConfig.head_dim must be a multiple of 8 and >= 16, got {self.head_dim}")
        if self.dim % self.cross_heads != 0:
            raise ValueError(
                f"SanaWMConfig.dim={self.dim} is not a multiple of cross_heads={self.cross_heads}"
            )
        if len(self.patch_size) != 3 or self.patch_size[0] != 1 or min(self.patch_size) < 1:
            raise ValueError(f"SanaWMConfig.patch_size must be (1, p_h, p_w), got {self.patch_size}")
        if self.softmax_every_n < 0:
            raise ValueError(f"SanaWMConfig.softmax_every_n must be >= 0, got {self.softmax_every_n}")
        if self.t_kernel_size % 2 != 1:
            raise ValueError(f"SanaWMConfig.t_kernel_size must be odd, got {self.t_kernel_size}")
        if self.plucker_blocks is not None and self.plucker_blocks < 0:
            raise ValueError(f"SanaWMConfig.plucker_blocks must be None or >= 0, got {self.plucker_blocks}")

    @property
    def heads(self) -> int:
        return self.dim // self.head_dim

    @property
    def cross_head_dim(self) -> int:
        return self.dim // self.cross_heads

    @property
    def plucker_channels(self) -> int:
        """6 Plücker channels (direction, moment) for each of `plucker_stride` raw frames."""
        return 6 * self.plucker_stride

    def is_softmax_block(self, index: int) -> bool:
        return self.softmax_every_n > 0 and (index + 1) % self.softmax_every_n == 0

    def has_plucker_proj(self, index: int) -> bool:
        return self.plucker_blocks is None or index < self.plucker_blocks

    @property
    def cam_softmax_scale(self) -> float:
        """Logit scale of the softmax camera branch.

        diffusers zero-pads head sizes outside (32, 64, 128, 256) to 128 (or 256) for FlashAttention and
        lets SDPA use the padded size for its default scale, so 112-wide heads get 1/√128.
        """
        d = self.head_dim
        padded = d if d in _FLASH_HEAD_DIMS or d >= 256 else (128 if d <= 128 else 256)
        return padded**-0.5


# Presets: plain functions returning configs.


def tiny() -> SanaWMConfig:
    """Debug size for CPU tests: 4 blocks (block 3 softmax), width 64 = 4 heads × 16."""
    return SanaWMConfig(
        in_channels=4, num_layers=4, dim=64, head_dim=16, cross_heads=2, caption_channels=16,
        mlp_ratio=2.0, plucker_stride=2,
    )  # fmt: skip


def small() -> SanaWMConfig:
    """Our worlds (~30M): 8 blocks (3 and 7 softmax), width 384 = 6 heads × 64, 32-channel latents,
    256-d captions (`ProceduralTextEncoder`), Plücker stride 4.
    """
    return SanaWMConfig(
        in_channels=32, num_layers=8, dim=384, head_dim=64, cross_heads=6, caption_channels=256,
        plucker_stride=4,
    )  # fmt: skip


def rooms() -> SanaWMConfig:
    """The shipped world model for 128^2 rooms (~11M): 6 blocks (2 and 5 softmax), width 256 = 4 heads × 64,
    patch 2 on the 16x16x16 ``f8c16_lite`` latents (64 tokens a frame), one env step per latent frame
    (Plücker stride 1), 256-d procedural captions. About 1.1 GFLOP a frame, so a CPU steps it in tens of ms.
    """
    return SanaWMConfig(
        in_channels=16, num_layers=6, dim=256, head_dim=64, cross_heads=4, caption_channels=256,
        patch_size=(1, 2, 2), softmax_every_n=3, plucker_stride=1,
    )  # fmt: skip


def rooms_l12() -> SanaWMConfig:
    """``rooms`` with 12 blocks (2, 5, 8, 11 softmax): grown from trained ``rooms`` weights by appending identity
    blocks (``generators.train.grow``). About 2x the compute a frame."""
    return dataclasses.replace(rooms(), num_layers=12)


def rooms_p1() -> SanaWMConfig:
    """``rooms`` with patch 1: one token per latent pixel (256 tokens a frame, 4x ``rooms``), grown from
    trained ``rooms`` weights (``generators.train.grow``)."""
    return dataclasses.replace(rooms(), patch_size=(1, 1, 1))


def sana_wm_2600m() -> SanaWMConfig:
    """The released SANA-WM (diffusers `SanaWMTransformer3DModel` defaults): 20 blocks × 2240, 112-d heads."""
    return SanaWMConfig()


PRESETS: dict[str, Callable[[], SanaWMConfig]] = {
    "tiny": tiny,
    "small": small,
    "rooms": rooms,
    "rooms_l12": rooms_l12,
    "rooms_p1": rooms_p1,
    "sana_wm_2600m": sana_wm_2600m,
}
