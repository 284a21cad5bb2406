"""Fused kernels for speed on CUDA (optional: triton); `sana_world.nn`'s pure-torch modules stay the reference.

Nothing here imports triton at import time; a kernel that needs it raises `TritonUnavailableError` when
called.
"""

from .gdn_scan import GDNKernelConfig, triton_bidirectional_gdn
from .linear_attention import (
    LinearAttentionKernelConfig,
    TritonUnavailableError,
    triton_available,
    triton_relu_linear_attention,
)

__all__ = [
    "GDNKernelConfig",
    "LinearAttentionKernelConfig",
    "TritonUnavailableError",
    "triton_available",
    "triton_bidirectional_gdn",
    "triton_relu_linear_attention",
]
