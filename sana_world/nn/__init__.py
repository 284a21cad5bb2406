"""Building blocks of the SANA-family DiTs (pure torch, torch.compile-traceable)."""

from .cross_attention import CrossAttention, CrossAttentionConfig, key_padding_bias
from .embeddings import (
    CaptionProjection,
    CaptionProjectionConfig,
    PatchEmbed,
    PatchEmbedConfig,
    TimestepEmbedding,
    sincos_pos_embed_2d,
    sinusoidal_embedding,
)
from .ffn import GLUMBConv, GLUMBConvConfig
from .fp8 import (
    FP8Config, FP8Linear, FP8PointwiseConv2d, FP8Summary, FP8UnsupportedError, convert_to_fp8, fp8_copy,
)
from .linear_attention import (
    LinearAttention,
    LinearAttentionConfig,
    relu_linear_attention,
    rotary_relu_linear_attention,
)
from .modulation import AdaLNSingle, BlockModulation, FinalLayer, modulate
from .norms import QKNorm, RMSNorm, layer_norm
from .rope import (
    Rope2DConfig,
    Rope3DConfig,
    RotaryEmbedding2D,
    RotaryEmbedding3D,
    apply_rotary,
    axial_rope_tables,
    rope_1d,
)

__all__ = [
    "AdaLNSingle",
    "BlockModulation",
    "CaptionProjection",
    "CaptionProjectionConfig",
    "CrossAttention",
    "CrossAttentionConfig",
    "FP8Config",
    "FP8Linear",
    "FP8PointwiseConv2d",
    "FP8Summary",
    "FP8UnsupportedError",
    "FinalLayer",
    "GLUMBConv",
    "GLUMBConvConfig",
    "LinearAttention",
    "LinearAttentionConfig",
    "PatchEmbed",
    "PatchEmbedConfig",
    "QKNorm",
    "RMSNorm",
    "Rope2DConfig",
    "Rope3DConfig",
    "RotaryEmbedding2D",
    "RotaryEmbedding3D",
    "TimestepEmbedding",
    "apply_rotary",
    "axial_rope_tables",
    "convert_to_fp8",
    "fp8_copy",
    "key_padding_bias",
    "layer_norm",
    "modulate",
    "relu_linear_attention",
    "rope_1d",
    "rotary_relu_linear_attention",
    "sincos_pos_embed_2d",
    "sinusoidal_embedding",
]
