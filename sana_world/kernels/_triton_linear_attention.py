"""Triton kernels of ReLU linear attention (imported only when the triton backend is used).

Triton fixes its mode when it is imported: with ``TRITON_INTERPRET=1`` (triton's own testing switch) set
before the first ``import triton`` and left set (triton reads it again at its first launch), every kernel,
triton's library included, runs in its CPU interpreter. `INTERPRET` records the mode this process got.

Notation for one (batch, head), φ = ReLU, d = head dim, rows are tokens:

    S = φ(K)ᵀ V   (d × d, fp32)      z = Σ_j φ(k_j)   (d, fp32)
    num = φ(Q) S                     den = φ(Q) z + eps          out = num / den

S and z are the ``(V;1)ᵀ φ(K)`` matrix of the torch path with its ones row kept apart. Backward, with
g = ∂L/∂out:

    dnum = g / den                   dden = -Σ_c g·num / den²
    dφ(Q) = dnum Sᵀ + dden zᵀ         dS = φ(Q)ᵀ dnum              dz = φ(Q)ᵀ dden
    dφ(K) = V dSᵀ + 1 dzᵀ             dV = φ(K) dS                 dQ = dφ(Q)·[Q > 0], dK = dφ(K)·[K > 0]

Token sums (S, z, dS, dz) are split over ``SPLIT`` programs per head that each write an fp32 partial; the
partials are summed in torch (deterministic, no atomics).

``F32`` (constexpr) selects fp32 "ieee" dots on fp32 operands. Without it (16-bit inputs on a GPU) the one
dot on raw inputs, φ(K)ᵀ V, runs on the tensor cores in bf16/fp16 with fp32 accumulation: products of 16-bit
numbers are exact in fp32, so this matches the torch path's upcast-then-matmul up to summation order. Every
dot with an fp32 operand (S, dS, dnum) uses fp32 ieee. The interpreter always runs with ``F32`` (its 16-bit
arithmetic is unreliable): loads are converted to fp32 and only the stores round back.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl


@triton.jit
def kv_partial_kernel(
    K, V, SP, ZP,  # inputs (B, H, N, d); partial outputs (BH, SPLIT, BD, BD) and (BH, SPLIT, BD) fp32
    H, N, D, CHUNK,
    skb, skh, skn, skd, svb, svh, svn, svd,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, F32: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    s_acc = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
    z_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        rows = offs_n.to(tl.int64)
        mask = (offs_n < N)[:, None] & mask_d[None, :]
        k = tl.load(k_base + rows[:, None] * skn + offs_d[None, :] * skd, mask=mask, other=0.0)  # (BN, BD)
        v = tl.load(v_base + rows[:, None] * svn + offs_d[None, :] * svd, mask=mask, other=0.0)  # (BN, BD)
        if F32:
            k = tl.maximum(k.to(tl.float32), 0.0)
            s_acc += tl.dot(tl.trans(k), v.to(tl.float32), input_precision="ieee")
            z_acc += tl.sum(k, axis=0)
        else:
            k = tl.where(k > 0, k, tl.zeros_like(k))
            s_acc += tl.dot(tl.trans(k), v)  # 16-bit operands, exact products, fp32 accumulation
            z_acc += tl.sum(k.to(tl.float32), axis=0)
    split = tl.num_programs(1)
    part = pid_bh.to(tl.int64) * split + pid_s
    tl.store(SP + part * BLOCK_D * BLOCK_D + offs_d[:, None] * BLOCK_D + offs_d[None, :], s_acc)
    tl.store(ZP + part * BLOCK_D + offs_d, z_acc)


@triton.jit
def out_kernel(
    Q, S, Z, O,  # q (B, H, N, d); S (BH, BD, BD), z (BH, BD) fp32; out (B, H, N, d)
    H, N, D, eps,
    sqb, sqh, sqn, sqd, sob, soh, son, sod,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = offs_n.to(tl.int64)
    mask = (offs_n < N)[:, None] & (offs_d < D)[None, :]
    s = tl.load(S + pid_bh.to(tl.int64) * BLOCK_D * BLOCK_D + offs_d[:, None] * BLOCK_D + offs_d[None, :])
    z = tl.load(Z + pid_bh.to(tl.int64) * BLOCK_D + offs_d)
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqn + offs_d[None, :] * sqd, mask=mask, other=0.0)
    q = tl.maximum(q.to(tl.float32), 0.0)  # (BN, BD)
    num = tl.dot(q, s, input_precision="ieee")  # (BN, BD)
    den = tl.sum(q * z[None, :], axis=1) + eps  # (BN,)
    out = num / den[:, None]
    o_ptr = O + b * sob + h * soh + rows[:, None] * son + offs_d[None, :] * sod
    tl.store(o_ptr, out.to(O.dtype.element_ty), mask=mask)


@triton.jit
def bwd_q_kernel(
    Q, G, S, Z, DQ, DSP, DZP,  # q, g, dq (B, H, N, d); S, z fp32; partials dS (BH, SPLIT, BD, BD), dz
    H, N, D, CHUNK, eps,
    sqb, sqh, sqn, sqd, sgb, sgh, sgn, sgd, sdb, sdh, sdn, sdd,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    s = tl.load(S + pid_bh.to(tl.int64) * BLOCK_D * BLOCK_D + offs_d[:, None] * BLOCK_D + offs_d[None, :])
    z = tl.load(Z + pid_bh.to(tl.int64) * BLOCK_D + offs_d)
    ds_acc = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
    dz_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        rows = offs_n.to(tl.int64)
        mask = (offs_n < N)[:, None] & mask_d[None, :]
        q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqn + offs_d[None, :] * sqd, mask=mask, other=0.0)
        g = tl.load(G + b * sgb + h * sgh + rows[:, None] * sgn + offs_d[None, :] * sgd, mask=mask, other=0.0)
        q = q.to(tl.float32)
        g = g.to(tl.float32)
        qr = tl.maximum(q, 0.0)  # (BN, BD)
        num = tl.dot(qr, s, input_precision="ieee")  # (BN, BD)
        rden = 1.0 / (tl.sum(qr * z[None, :], axis=1) + eps)  # (BN,)
        dnum = g * rden[:, None]  # (BN, BD)
        dden = -tl.sum(g * num, axis=1) * rden * rden  # (BN,)
        dqr = tl.dot(dnum, tl.trans(s), input_precision="ieee") + dden[:, None] * z[None, :]
        dq = tl.where(q > 0, dqr, 0.0)
        dq_ptr = DQ + b * sdb + h * sdh + rows[:, None] * sdn + offs_d[None, :] * sdd
        tl.store(dq_ptr, dq.to(DQ.dtype.element_ty), mask=mask)
        ds_acc += tl.dot(tl.trans(qr), dnum, input_precision="ieee")  # (BD, BD)
        dz_acc += tl.sum(qr * dden[:, None], axis=0)  # (BD,)
    split = tl.num_programs(1)
    part = pid_bh.to(tl.int64) * split + pid_s
    tl.store(DSP + part * BLOCK_D * BLOCK_D + offs_d[:, None] * BLOCK_D + offs_d[None, :], ds_acc)
    tl.store(DZP + part * BLOCK_D + offs_d, dz_acc)


@triton.jit
def bwd_kv_kernel(
    K, V, DS, DZ, DK, DV,  # k, v, dk, dv (B, H, N, d); dS (BH, BD, BD), dz (BH, BD) fp32
    H, N, D,
    skb, skh, skn, skd, svb, svh, svn, svd,
    sdkb, sdkh, sdkn, sdkd, sdvb, sdvh, sdvn, sdvd,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = offs_n.to(tl.int64)
    mask = (offs_n < N)[:, None] & (offs_d < D)[None, :]
    ds = tl.load(DS + pid_bh.to(tl.int64) * BLOCK_D * BLOCK_D + offs_d[:, None] * BLOCK_D + offs_d[None, :])
    dz = tl.load(DZ + pid_bh.to(tl.int64) * BLOCK_D + offs_d)
    k = tl.load(K + b * skb + h * skh + rows[:, None] * skn + offs_d[None, :] * skd, mask=mask, other=0.0)
    v = tl.load(V + b * svb + h * svh + rows[:, None] * svn + offs_d[None, :] * svd, mask=mask, other=0.0)
    k = k.to(tl.float32)
    v = v.to(tl.float32)
    kr = tl.maximum(k, 0.0)
    dkr = tl.dot(v, tl.trans(ds), input_precision="ieee") + dz[None, :]  # (BN, BD)
    dk = tl.where(k > 0, dkr, 0.0)
    dv = tl.dot(kr, ds, input_precision="ieee")  # (BN, BD)
    dk_ptr = DK + b * sdkb + h * sdkh + rows[:, None] * sdkn + offs_d[None, :] * sdkd
    dv_ptr = DV + b * sdvb + h * sdvh + rows[:, None] * sdvn + offs_d[None, :] * sdvd
    tl.store(dk_ptr, dk.to(DK.dtype.element_ty), mask=mask)
    tl.store(dv_ptr, dv.to(DV.dtype.element_ty), mask=mask)


def _interpret_switch() -> bool:
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4; older releases read the variable directly
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# triton's own library functions (tl.zeros, tl.sum, ...) were jitted when triton was imported; ours now.
_LANG_INTERPRETED = type(tl.zeros).__name__ == "InterpretedFunction"
if _interpret_switch() != _LANG_INTERPRETED:
    raise ImportError(
        "TRITON_INTERPRET changed after triton was imported; set it before the first `import triton` "
        f"(triton was imported with the interpreter {'on' if _LANG_INTERPRETED else 'off'})"
    )
INTERPRET: bool = _LANG_INTERPRETED
"""Whether the kernels run in triton's CPU interpreter (any device) rather than compiled (CUDA only)."""


def next_power_of_2(n: int) -> int:
    return triton.next_power_of_2(n)
