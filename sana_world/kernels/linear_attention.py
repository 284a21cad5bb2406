"""ReLU linear attention (SANA's LiteLA) as Triton kernels, forward and backward.

Computes exactly `sana_world.nn.relu_linear_attention` (the pure-torch reference):

    out_i = Σ_j v_j (φ(k_j)·φ(q_i)) / (Σ_j φ(k_j)·φ(q_i) + eps),   φ = ReLU,

with every sum accumulated in fp32 whatever the input dtype; the result comes back in q's dtype. Per
(batch, head) the forward makes two passes over the tokens: S = φ(K)ᵀV and z = Σ_j φ(k_j) in fp32 (the
torch path's ones-padded (V;1)ᵀφ(K)), then out = φ(Q)S / (φ(Q)z + eps). Backward recomputes the
numerator and denominator from the saved S and z (no N-sized activations are saved besides q, k, v).

Triton is optional: this module imports without it and fails only when called. Use it through
``relu_linear_attention(..., backend="triton")`` or ``LinearAttentionConfig(backend="triton")``.

Example:
    >>> import torch
    >>> from sana_world.kernels import triton_relu_linear_attention
    >>> q, k, v = torch.randn(3, 2, 70, 4096, 32, device="cuda").bfloat16().unbind(0)  # doctest: +SKIP
    >>> out = triton_relu_linear_attention(q, k, v, eps=1e-15)  # doctest: +SKIP
    >>> out.shape  # doctest: +SKIP
    torch.Size([2, 70, 4096, 32])
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "LinearAttentionKernelConfig",
    "TritonUnavailableError",
    "triton_available",
    "triton_relu_linear_attention",
]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class TritonUnavailableError(RuntimeError):
    """The triton backend was asked for where it cannot run (no triton package, or no CUDA tensors)."""


@dataclass(frozen=True)
class LinearAttentionKernelConfig:
    """Launch settings of the Triton kernels (results do not depend on them beyond fp32 summation order).

    Attributes:
        block_n: tokens per tile (a power of two, at least 16).
        num_warps: warps per program.
        splits: programs per (batch, head) for the token sums S, z and their gradients; None picks enough to
            give every multiprocessor about `programs_per_sm` programs (1 under the interpreter).
        programs_per_sm: target programs per multiprocessor when `splits` is None.
    """

    block_n: int = 64
    num_warps: int = 4
    splits: int | None = None
    programs_per_sm: int = 4

    def __post_init__(self) -> None:
        if self.block_n < 16 or self.block_n & (self.block_n - 1):
            raise ValueError(f"block_n must be a power of two >= 16, got {self.block_n}")
        if self.splits is not None and self.splits < 1:
            raise ValueError(f"splits must be >= 1 or None, got {self.splits}")
        if self.num_warps < 1 or self.programs_per_sm < 1:
            raise ValueError("num_warps and programs_per_sm must be >= 1")


def triton_available() -> bool:
    """Whether the triton package can be imported (says nothing about a GPU)."""
    return importlib.util.find_spec("triton") is not None


def require_cuda(device: torch.device, interpret: bool) -> None:
    """TritonUnavailableError unless the kernels can run on ``device`` (CUDA, or triton's CPU interpreter)."""
    if device.type != "cuda" and not interpret:
        raise TritonUnavailableError(
            f"backend='triton' runs on CUDA tensors, got {device.type}; use backend='torch' on this device "
            "(tests run the kernels on CPU in triton's interpreter: TRITON_INTERPRET=1 before importing it)"
        )


def _kernels() -> Any:
    """The private kernel module, imported on first use (it needs triton)."""
    if not triton_available():
        raise TritonUnavailableError(
            "backend='triton' needs the triton package (pip install triton; CUDA builds of torch ship it); "
            "use backend='torch' otherwise"
        )
    from . import _triton_linear_attention

    return _triton_linear_attention


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, interpret: bool) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one (B, H, N, d) shape, got {q.shape}, {k.shape}, {v.shape}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        got = (q.dtype, k.dtype, v.dtype)
        raise ValueError(f"q, k, v must share one dtype of {SUPPORTED_DTYPES}, got {got}")
    if q.shape[2] == 0 or q.shape[3] == 0:
        raise ValueError(f"q, k, v need at least one token and one channel, got {tuple(q.shape)}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    require_cuda(q.device, interpret)


def _splits(
    cfg: LinearAttentionKernelConfig, bh: int, tiles: int, device: torch.device, interpret: bool
) -> int:
    """Programs per (batch, head) for the token sums, at most one per tile."""
    if cfg.splits is not None:
        want = cfg.splits
    elif interpret or device.type != "cuda":
        want = 1
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        want = -(-cfg.programs_per_sm * sms // bh)
    return max(1, min(want, tiles))


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


def _bnhd_empty(like: torch.Tensor) -> torch.Tensor:
    """An empty (B, H, N, d) tensor laid out as (B, N, H, d), the layout LinearAttention reshapes to."""
    B, H, N, d = like.shape
    return torch.empty(B, N, H, d, dtype=like.dtype, device=like.device).transpose(1, 2)


class _ReluLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        eps: float,
        cfg: LinearAttentionKernelConfig,
    ) -> torch.Tensor:
        mod = _kernels()
        interpret = mod.INTERPRET
        _check_inputs(q, k, v, interpret)
        B, H, N, d = q.shape
        BD = max(16, mod.next_power_of_2(d))
        BN = cfg.block_n
        tiles = -(-N // BN)
        split = _splits(cfg, B * H, tiles, q.device, interpret)
        chunk = -(-tiles // split) * BN  # tokens per split program
        split = -(-N // chunk)  # no program without tokens
        f32 = q.dtype == torch.float32 or interpret

        # 1. Partial token sums S = φ(K)ᵀV, z = Σ φ(k) per split, then their fp32 sum.
        sp = torch.empty(B * H, split, BD, BD, dtype=torch.float32, device=q.device)
        zp = torch.empty(B * H, split, BD, dtype=torch.float32, device=q.device)
        mod.kv_partial_kernel[(B * H, split)](
            k, v, sp, zp, H, N, d, chunk, *_strides(k), *_strides(v),
            BLOCK_N=BN, BLOCK_D=BD, F32=f32, num_warps=cfg.num_warps,
        )
        s, z = (sp[:, 0], zp[:, 0]) if split == 1 else (sp.sum(1), zp.sum(1))  # (BH, BD, BD), (BH, BD)
        s, z = s.contiguous(), z.contiguous()

        # 2. out = φ(Q)S / (φ(Q)z + eps), one program per token tile.
        out = _bnhd_empty(q)
        mod.out_kernel[(B * H, tiles)](
            q, s, z, out, H, N, d, eps, *_strides(q), *_strides(out),
            BLOCK_N=BN, BLOCK_D=BD, num_warps=cfg.num_warps,
        )
        ctx.save_for_backward(q, k, v, s, z)
        ctx.eps, ctx.cfg, ctx.split, ctx.chunk = eps, cfg, split, chunk
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        mod = _kernels()
        q, k, v, s, z = ctx.saved_tensors
        cfg, split, chunk = ctx.cfg, ctx.split, ctx.chunk
        B, H, N, d = q.shape
        BD, BN = s.shape[-1], cfg.block_n
        tiles = -(-N // BN)

        # 1. dQ per token, and partial dS = φ(Q)ᵀ dnum, dz = φ(Q)ᵀ dden per split.
        dq = _bnhd_empty(q)
        dsp = torch.empty(B * H, split, BD, BD, dtype=torch.float32, device=q.device)
        dzp = torch.empty(B * H, split, BD, dtype=torch.float32, device=q.device)
        mod.bwd_q_kernel[(B * H, split)](
            q, g, s, z, dq, dsp, dzp, H, N, d, chunk, ctx.eps, *_strides(q), *_strides(g), *_strides(dq),
            BLOCK_N=BN, BLOCK_D=BD, num_warps=cfg.num_warps,
        )
        ds, dz = (dsp[:, 0], dzp[:, 0]) if split == 1 else (dsp.sum(1), dzp.sum(1))
        ds, dz = ds.contiguous(), dz.contiguous()

        # 2. dK = (V dSᵀ + dz)·[K > 0], dV = φ(K) dS per token.
        dk, dv = _bnhd_empty(k), _bnhd_empty(v)
        mod.bwd_kv_kernel[(B * H, tiles)](
            k, v, ds, dz, dk, dv, H, N, d, *_strides(k), *_strides(v), *_strides(dk), *_strides(dv),
            BLOCK_N=BN, BLOCK_D=BD, num_warps=cfg.num_warps,
        )
        return dq, dk, dv, None, None


def triton_relu_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: float = 1e-15,
    config: LinearAttentionKernelConfig | None = None,
) -> torch.Tensor:
    """ReLU linear attention on (B, H, N, d) CUDA tensors, differentiable; returns (B, H, N, d) in q's dtype.

    fp32, bf16 and fp16 inputs of one dtype are read as they are; mixed or other dtypes are cast to fp32
    first (as the torch path computes them). Any strides are accepted (e.g. the head-split views
    LinearAttention makes). The result is laid out as (B, N, H, d) in memory, so
    ``out.transpose(1, 2).reshape(B, N, H * d)`` is free.

    Raises:
        TritonUnavailableError: triton is not installed, or the tensors are not on CUDA (and triton's
            interpreter, TRITON_INTERPRET=1, is off).
    """
    cfg = config if config is not None else LinearAttentionKernelConfig()
    if q.dtype == k.dtype == v.dtype and q.dtype in SUPPORTED_DTYPES:
        return _ReluLinearAttention.apply(q, k, v, float(eps), cfg)
    out = _ReluLinearAttention.apply(q.float(), k.float(), v.float(), float(eps), cfg)
    return out.to(q.dtype)
