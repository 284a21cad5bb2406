"""Bidirectional frame-wise GDN scan as Triton kernels, forward and backward.

Computes `sana_world.nn.gdn.bidirectional_gdn` (the pure-torch reference) for (B, H, T, S, D) inputs:
an inclusive forward plus an exclusive backward scan of S_t = S_{t−1} W_t + U_t over frames, read out by
every token of the frame, divided by the normaliser scan when `denominator` is set. All state is fp32
whatever the input dtype; the result is fp32 like the reference.

What is fused, and why (SANA-WM 2.66B at 161 frames: B·H = 20, T = 21, S = 880, D = 112): one
(B, H, T, S, D) tensor is 83 MB in bf16 and 166 MB in fp32, while a D×D fp32 matrix per head and frame
(W_t, U_t or a state) is 27 MB for the layer. The torch path's cost is the fp32 copies, casts, products and
permutes of the T·S-sized tensors (q, k, v, k·β, q·z, num/den, the output permute), not the D×D work. So
the kernels read each token tensor in its own dtype and strides, only where it is needed, and never write
a T·S-sized intermediate: the per-frame products Wn_t = I − Σ β k̃ k̃ᵀ and U_t go to small fp32 buffers
(one program per frame: all frames in parallel), one program per (batch, head, block of state rows) runs
both scans over the frames, and the readout writes the output once, laid out as (B, T, S, H, D) in memory
so the caller's `_from_frames` permute is free. Building W_t inside the scan program instead (the
delta-rule form) would serialise the Σ_s products over frames to save ~27 MB of traffic per D×D buffer.

Backward stores nothing T·S-sized either: the forward saves the inputs, Wn_t and the per-frame states F_t,
B_t, X_t = F_t + B_t (fp32, T·D² each per head; the recurrence gradient needs F_{t−1} and B_t, which cost
less to keep than a recomputing pass). The gradient runs the readout backward (per frame and token
chunk), the adjoint scans (per block of state rows), one batched torch matmul for ∂L/∂W_t and the
transition backward (per frame and token chunk). See `_triton_gdn` for the formulas and the blocking.

Example:
    >>> import torch
    >>> from sana_world.kernels.gdn_scan import triton_bidirectional_gdn
    >>> q, k, v = torch.rand(3, 1, 20, 21, 880, 112, device="cuda").bfloat16().unbind(0)  # doctest: +SKIP
    >>> beta = torch.rand(1, 20, 21, 880, device="cuda")  # doctest: +SKIP
    >>> decay = torch.rand(1, 20, 21, device="cuda")  # doctest: +SKIP
    >>> triton_bidirectional_gdn(q, k / 300, v, beta, decay).shape  # doctest: +SKIP
    torch.Size([1, 20, 21, 880, 112])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from .linear_attention import TritonUnavailableError, require_cuda, triton_available

__all__ = ["MAX_HEAD_DIM", "GDNKernelConfig", "triton_bidirectional_gdn"]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_HEAD_DIM = 128  # the per-frame products keep a D×D fp32 accumulator in registers
Z_ROWS = 16  # rows of the one-row normaliser recurrence (tl.dot needs 16)


@dataclass(frozen=True)
class GDNKernelConfig:
    """Launch settings (results do not depend on them beyond fp32 summation order, except `input_precision`).

    Attributes:
        block_n: tokens per tile (a power of two >= 16).
        block_k: head-dim channels contracted per dot (a power of two >= 16; capped at the padded head dim).
        row_block: state rows per recurrence program (a power of two >= 16); more programs when smaller.
        num_warps: warps per program; None: 4 for head dims <= 32, else 8 (an sm_90 build of every kernel at
            head dims 64 and 128 spills registers with 4 warps and at most 176 bytes a thread with 8).
        splits: programs per (batch, head, frame) in the readout; None picks enough for about
            `programs_per_sm` programs per multiprocessor (1 under the interpreter).
        programs_per_sm: target programs per multiprocessor when `splits` is None.
        input_precision: precision of every dot: "ieee" (fp32, the torch path's default numerics),
            "tf32x3" (about fp32 accuracy on tensor cores) or "tf32" (10-bit mantissa products).
    """

    block_n: int = 32
    block_k: int = 32
    row_block: int = 16
    num_warps: int | None = None
    splits: int | None = None
    programs_per_sm: int = 4
    input_precision: Literal["ieee", "tf32x3", "tf32"] = "ieee"

    def __post_init__(self) -> None:
        for name in ("block_n", "block_k", "row_block"):
            n = getattr(self, name)
            if n < 16 or n & (n - 1):
                raise ValueError(f"GDNKernelConfig.{name} must be a power of two >= 16, got {n}")
        if self.splits is not None and self.splits < 1:
            raise ValueError(f"GDNKernelConfig.splits must be >= 1 or None, got {self.splits}")
        if (self.num_warps is not None and self.num_warps < 1) or self.programs_per_sm < 1:
            raise ValueError("GDNKernelConfig.num_warps and programs_per_sm must be >= 1")
        if self.input_precision not in ("ieee", "tf32x3", "tf32"):
            raise ValueError(f"GDNKernelConfig.input_precision must be ieee, tf32x3 or tf32, "
                             f"got {self.input_precision!r}")


def _kernels() -> Any:
    if not triton_available():
        raise TritonUnavailableError(
            "backend='triton' needs the triton package (pip install triton; CUDA builds of torch ship it); "
            "use backend='torch' otherwise"
        )
    from . import _triton_gdn

    return _triton_gdn


def _check_inputs(q, k, v, beta, decay, q_rot, k_rot, interpret: bool) -> None:
    if q.dim() != 5 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"q, k (B, H, T, S, D_k) and v (B, H, T, S, D_v) expected, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if beta.shape != q.shape[:-1] or decay.shape != q.shape[:3]:
        raise ValueError(f"beta (B, H, T, S) and decay (B, H, T) expected, got {tuple(beta.shape)}, "
                         f"{tuple(decay.shape)} for q {tuple(q.shape)}")
    for name, t in (("q_rot", q_rot), ("k_rot", k_rot)):
        if t is not None and t.shape != q.shape:
            raise ValueError(f"{name} must have q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
    if min(q.shape) == 0 or v.shape[-1] == 0:
        raise ValueError(f"empty GDN input: q {tuple(q.shape)}, v {tuple(v.shape)}")
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        raise ValueError(f"the triton GDN kernels take head dims up to {MAX_HEAD_DIM}, got "
                         f"{q.shape[-1]}, {v.shape[-1]}; use backend='torch'")
    tensors = [t for t in (q, k, v, beta, decay, q_rot, k_rot) if t is not None]
    if len({t.device for t in tensors}) != 1:
        raise ValueError(f"GDN inputs must be on one device, got {sorted({str(t.device) for t in tensors})}")
    require_cuda(q.device, interpret)


def _split(
    cfg: GDNKernelConfig, programs: int, S: int, device: torch.device, interpret: bool
) -> tuple[int, int]:
    """(programs, tokens per program) over the S tokens of a frame, given `programs` (batch, head, frame)s."""
    tiles = -(-S // cfg.block_n)
    if cfg.splits is not None:
        want = cfg.splits
    elif interpret or device.type != "cuda":
        want = 1
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        want = -(-cfg.programs_per_sm * sms // programs)
    split = max(1, min(want, tiles))
    chunk = -(-tiles // split) * cfg.block_n
    return -(-S // chunk), chunk


class _BidirectionalGDN(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q, k, v, beta, decay, q_rot, k_rot, eps: float, denominator: bool, cfg: GDNKernelConfig
    ) -> torch.Tensor:
        mod = _kernels()
        interpret = mod.INTERPRET
        _check_inputs(q, k, v, beta, decay, q_rot, k_rot, interpret)
        B, H, T, S, Dk = q.shape
        Dv, BH, f32, dev = v.shape[-1], B * H, torch.float32, q.device
        qn, kn = (q if q_rot is None else q_rot), (k if k_rot is None else k_rot)
        merged = denominator and k_rot is None  # the normaliser rides along as row Dv of the state
        separate = denominator and k_rot is not None  # its own one-row recurrence on unrotated keys
        L = _Launch.make(mod, cfg, Dk, Dv)
        RP = -(-(Dv + merged) // L.BR) * L.BR  # state rows, padded

        # 1. Per-frame transitions: Wn_t = I − Σ β k̃ k̃ᵀ, U_t = Σ β v k̃ᵀ (+ u_t = Σ β k: row Dv if merged).
        wn = torch.empty(BH, T, L.BD, L.BD, dtype=f32, device=dev)
        u = torch.zeros(BH, T, RP, L.BD, dtype=f32, device=dev)
        urow = u[:, :, Dv] if merged else wn[:, :, 0]
        mod.gram_kernel[(BH, T)](kn, beta, wn, urow, H, T, S, Dk, *kn.stride(), *beta.stride(),
                                 *urow.stride()[:2], HAS_U=merged, **L.tok)
        mod.outer_kernel[(BH, T)](v, kn, beta, u, H, T, S, Dk, Dv, RP, *v.stride(), *kn.stride(),
                                  *beta.stride(), BLOCK_DV=L.BDV, **L.tok)
        # 2. Forward, backward and summed states F_t, B_t, X_t (the normaliser's too with rotated keys).
        fs, bs, xs = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        L.scan(mod, wn, decay, u, fs, bs, xs, H, adjoint=False)
        del u
        wz = fz = bz = xz = None
        if separate:
            wz = torch.empty_like(wn)
            uz = torch.zeros(BH, T, Z_ROWS, L.BD, dtype=f32, device=dev)
            mod.gram_kernel[(BH, T)](k, beta, wz, uz[:, :, 0], H, T, S, Dk, *k.stride(), *beta.stride(),
                                     *uz[:, :, 0].stride()[:2], HAS_U=True, **L.tok)
            fz, bz, xz = torch.empty_like(uz), torch.empty_like(uz), torch.empty_like(uz)
            L.scan(mod, wz, decay, uz, fz, bz, xz, H, adjoint=False)
        zv = xs[:, :, Dv] if merged else (xz[:, :, 0] if separate else xs[:, :, 0])  # (BH, T, BD) view
        # 3. Readout by every token, written as (B, T, S, H, Dv) in memory.
        out = torch.empty(B, T, S, H, Dv, dtype=f32, device=dev).permute(0, 3, 1, 2, 4)
        split, chunk = _split(cfg, BH * T, S, dev, interpret)
        mod.readout_kernel[(BH, T, split)](
            qn, q, xs, zv, out, H, T, S, Dk, Dv, RP, chunk, eps, *qn.stride(), *q.stride(), *out.stride(),
            *zv.stride()[:2], BLOCK_DV=L.BDV, BLOCK_K=L.BK, DEN=denominator, **L.tok,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, beta, decay, q_rot, k_rot, wn, fs, bs, xs, wz, fz, bz, xz)
        ctx.eps, ctx.denominator, ctx.cfg = eps, denominator, cfg
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        mod = _kernels()
        q, k, v, beta, decay, q_rot, k_rot, wn, fs, bs, xs, wz, fz, bz, xz = ctx.saved_tensors
        cfg, den = ctx.cfg, ctx.denominator
        B, H, T, S, Dk = q.shape
        Dv, BH, f32, dev = v.shape[-1], B * H, torch.float32, q.device
        qn, kn = (q if q_rot is None else q_rot), (k if k_rot is None else k_rot)
        merged, separate = den and k_rot is None, den and k_rot is not None
        L = _Launch.make(mod, cfg, Dk, Dv)
        RP = fs.shape[2]

        # 1. Readout: dq̃, dq per token; dX_t = Σ dnum q̃ᵀ and dz_t = Σ dden q per frame (partials per split).
        split, chunk = _split(cfg, BH * T, S, dev, mod.INTERPRET)
        dxp = torch.zeros(split, BH, T, RP, L.BD, dtype=f32, device=dev)
        dzp = torch.zeros(split, BH, T, Z_ROWS, L.BD, dtype=f32, device=dev) if separate else None
        dz_view = dxp[:, :, :, Dv] if merged else (dzp[:, :, :, 0] if separate else dxp[:, :, :, 0])
        zv = xs[:, :, Dv] if merged else (xz[:, :, 0] if separate else xs[:, :, 0])
        dqn = torch.empty_like(qn)
        dq = torch.empty_like(q) if den and q_rot is not None else dqn
        grid = (BH, T, split)
        mod.readout_bwd_q_kernel[grid](
            qn, q, xs, zv, dout, dqn, dq, dz_view, H, T, S, Dk, Dv, RP, chunk, ctx.eps, *qn.stride(),
            *q.stride(), *dout.stride(), *dqn.stride(), *dq.stride(), *zv.stride()[:2], *dz_view.stride()[:3],
            BLOCK_K=L.BK, DEN=den, SAME_Q=q_rot is None, **L.tok,
        )  # fmt: skip
        mod.readout_bwd_state_kernel[grid](
            qn, q, zv, dout, dxp, H, T, S, Dk, Dv, RP, chunk, ctx.eps, *qn.stride(), *q.stride(),
            *dout.stride(), *zv.stride()[:2], BLOCK_DV=L.BDV, DEN=den, **L.tok,
        )  # fmt: skip
        # 2. Recurrences: dU_t, M_t = −g_t (D_t + D_tᵀ) and dg_t = <D_t, Wn_t>.
        du, m, dg = _recurrence_bwd(mod, L, wn, decay, fs, bs, dxp.sum(0), H)
        if separate:
            duz, mz, dgz = _recurrence_bwd(mod, L, wz, decay, fz, bz, dzp.sum(0), H)
            dg = dg + dgz
        # 3. Transitions, per token: dk̃, dv, dβ (then dk, dβ of the normaliser's transitions).
        dkn, dv = torch.empty_like(kn), torch.empty_like(v)
        dbeta = torch.empty(B, H, T, S, dtype=f32, device=dev)
        launches = [(kn, du, m, du[:, :, Dv] if merged else du[:, :, 0], dkn, True, merged, RP)]
        dk = None
        if separate:
            dk = torch.empty_like(k)
            launches.append((k, duz, mz, duz[:, :, 0], dk, False, True, Z_ROWS))
        for i, (keys, dmat, mmat, durow, dkeys, has_v, has_du, rows) in enumerate(launches):
            mod.transition_bwd_kernel[grid](
                keys, v, beta, dmat, mmat, durow, dkeys, dv, dbeta, H, T, S, Dk, Dv, rows, chunk,
                *keys.stride(), *v.stride(), *beta.stride(), *dkeys.stride(), *dv.stride(), *dbeta.stride(),
                *durow.stride()[:2],
                BLOCK_DV=L.BDV, BLOCK_K=L.BK, HAS_V=has_v, HAS_DU=has_du, ACCUMULATE=i > 0, **L.tok,
            )  # fmt: skip
        # 4. Route: with no rotation the same tensor fed both roles and its kernel output holds both.
        dq_out = dqn if q_rot is None else (dq if den else None)
        dq_rot = None if q_rot is None else dqn
        dk_out, dk_rot = (dkn, None) if k_rot is None else (dk, dkn)
        dgrad = dg.reshape(B, H, T).to(decay.dtype)
        return dq_out, dk_out, dv, dbeta.to(beta.dtype), dgrad, dq_rot, dk_rot, None, None, None


@dataclass(frozen=True)
class _Launch:
    """Block sizes of one call: BD, BDV padded head dims, BK contraction slice, BR state rows per program."""

    BD: int
    BDV: int
    BK: int
    BR: int
    BN: int
    prec: str
    num_warps: int

    @staticmethod
    def make(mod: Any, cfg: GDNKernelConfig, Dk: int, Dv: int) -> _Launch:
        BD, BDV = max(16, mod.next_power_of_2(Dk)), max(16, mod.next_power_of_2(Dv))
        warps = cfg.num_warps or (4 if max(BD, BDV) <= 32 else 8)
        BK = min(cfg.block_k, BD, BDV)
        return _Launch(BD, BDV, BK, cfg.row_block, cfg.block_n, cfg.input_precision, warps)

    @property
    def tok(self) -> dict[str, Any]:
        """Launch arguments shared by the token kernels."""
        return {"BLOCK_N": self.BN, "BLOCK_D": self.BD, "PREC": self.prec, "num_warps": self.num_warps}

    def scan(self, mod: Any, wn, decay, u, a, d, x, H: int, adjoint: bool) -> None:
        """Both scans over (BH, T, rows, BD) buffers, `rows` // BR programs per (batch, head)."""
        BH, _, rows, _ = u.shape
        br = min(self.BR, rows)
        mod.scan_kernel[(BH, rows // br)](
            wn, decay, u, a, d, x, H, u.shape[1], rows, *decay.stride(), BLOCK_R=br, BLOCK_D=self.BD,
            BLOCK_K=self.BK, ADJOINT=adjoint, SUM=not adjoint, PREC=self.prec, num_warps=self.num_warps,
        )  # fmt: skip


def _recurrence_bwd(mod: Any, L: _Launch, wn, decay, fs, bs, dx, H: int):
    """dU (BH, T, R, BD), M = −g (D + Dᵀ) (BH, T, BD, BD) and dg = <D, Wn> (BH, T) of one recurrence.

    The adjoint scans give G^F (descending) and G^B (ascending); D_t = F_{t−1}ᵀ G^F_t + B_tᵀ G^B_{t−1} for
    t >= 1 (D_0 = 0) is one batched fp32 matmul over all frames."""
    BH, T, _, BD = fs.shape
    gb, gf = torch.empty_like(dx), torch.empty_like(dx)
    L.scan(mod, wn, decay, dx, gb, gf, gf, H, adjoint=True)
    d = torch.zeros(BH, T, BD, BD, dtype=torch.float32, device=fs.device)
    if T > 1:
        d[:, 1:] = fs[:, :-1].mT @ gf[:, 1:] + bs[:, 1:].mT @ gb[:, :-1]
    g = decay.reshape(BH, T, 1, 1).float()
    m = (-g * (d + d.mT)).contiguous()
    gf[:, 1:] += gb[:, :-1]  # dU_t = G^F_t + G^B_{t−1}
    return gf, m, (d * wn).sum((-2, -1))


def triton_bidirectional_gdn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    decay: torch.Tensor,
    *,
    q_rot: torch.Tensor | None = None,
    k_rot: torch.Tensor | None = None,
    eps: float = 1e-8,
    denominator: bool = True,
    config: GDNKernelConfig | None = None,
) -> torch.Tensor:
    """`bidirectional_gdn` on CUDA tensors in Triton, differentiable; fp32 (B, H, T, S, D_v).

    Same arguments as the torch reference. fp32, bf16 and fp16 inputs are read as they are (any strides,
    e.g. `_to_frames` views), other dtypes are cast to fp32 first. Head dims up to `MAX_HEAD_DIM`. The
    result is laid out as (B, T, S, H, D_v) in memory.

    Raises:
        TritonUnavailableError: triton is not installed, or the tensors are not on CUDA (and triton's
            interpreter, TRITON_INTERPRET=1, is off).
        ValueError: mismatched shapes or devices, or a head dim above `MAX_HEAD_DIM`.
    """
    cfg = config if config is not None else GDNKernelConfig()

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or t.dtype in SUPPORTED_DTYPES else t.float()

    q, k, v, beta, q_rot, k_rot = (cast(t) for t in (q, k, v, beta, q_rot, k_rot))
    args = (q, k, v, beta, decay.float(), q_rot, k_rot, float(eps), bool(denominator), cfg)
    return _BidirectionalGDN.apply(*args)
