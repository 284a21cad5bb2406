"""Fused kernels for speed on CUDA (optional: triton); `sana_world.nn`'s pure-torch modules stay the reference.

Nothing here imports triton at import time; a kernel that needs it raises `TritonUnavailableError` when
called.
"""

from .linear_attention import (
    LinearAttentionKernelConfig,
    TritonUnavailableError,
    triton_available,
    triton_relu_linear_attention,
)

__all__ = [
    "LinearAttentionKernelConfig",
    "TritonUnavailableError",
    "triton_available",
    "triton_relu_linear_attention",
]
