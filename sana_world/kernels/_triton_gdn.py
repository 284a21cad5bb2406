"""Triton kernels of the bidirectional frame-wise GDN scan (imported only when the triton backend is used).

Per (batch, head), with frames t, tokens s of a frame, rotated keys k̃ (= k without RoPE), the kernels
compute what `sana_world.nn.gdn.bidirectional_gdn` does, in fp32:

    Wn_t = I − Σ_s β_s k̃_s k̃_sᵀ   (D_k × D_k)      U_t = Σ_s β_s v_s k̃_sᵀ   (R × D_k, rows ≥ D_v see below)
    F_t = g_t F_{t−1} Wn_t + U_t,  F_{−1} = 0       (forward, inclusive)
    B_t = g_{t+1} B_{t+1} Wn_{t+1} + U_{t+1},  B_{T−1} = 0   (backward, exclusive)
    X_t = F_t + B_t    num_s = X_t q̃_s    den_s = z_t · q_s    out_s = num_s / (den_s + eps)

The normaliser z_t is the same recurrence on the row u_t = Σ_s β_s k_s: with unrotated keys it is row D_v
of U ("merged"); with rotated keys it runs on its own transitions Wn^z from k (a one-row recurrence).

Forward: `gram_kernel` (Wn_t, u_t) and `outer_kernel` (U_t), one program per frame; `scan_kernel` (F, B, X),
one program per block of state rows looping over frames; `readout_kernel` per frame and token chunk.
Backward, with r_s = 1/(den_s + eps), P_s = X_tᵀ do_s and D_t = ∂L/∂(g_t Wn_t):

    dq̃_s = r_s P_s    dden_s = −r_s² q̃_s·P_s    dq_s = dden_s z_t                (`readout_bwd_q_kernel`)
    dX_t = Σ_s r_s do_s q̃_sᵀ (`readout_bwd_state_kernel`)    dz_t = Σ_s dden_s q_s
    G^F_t = dX_t + g_{t+1} G^F_{t+1} Wn_{t+1}ᵀ    G^B_t = dX_t + g_t G^B_{t−1} Wn_tᵀ  (`scan_kernel`, ADJOINT)
    dU_t = G^F_t + G^B_{t−1}    D_t = F_{t−1}ᵀ G^F_t + B_tᵀ G^B_{t−1}    M_t = −g_t (D_t + D_tᵀ)   (torch)
    dv_s = β_s dU k̃_s    dk̃_s = β_s (M k̃_s + dUᵀ v_s + du)    dβ_s = v_s·dU k̃_s + ½ k̃_s·M k̃_s + k̃_s·du
                                                                               (`transition_bwd_kernel`)

Per-frame matrices live in fp32 buffers padded to BLOCK_D (a power of two ≥ D, zero padding), laid out
(BH, T, rows, BLOCK_D). Token tensors are read at any strides in their own dtype and converted to fp32 on
load; token outputs are stored in the output tensor's dtype. Every dot contracts over at most BLOCK_K
(tokens, or a slice of the head dim loaded from memory): a D-deep contraction against a register-resident
D×D matrix spills registers at D = 128 with fp32 FMA dots and overflows shared memory with tf32 ones. The
scan state goes through its output buffer between frames (a CTA barrier orders the store and the loads).
``PREC`` is every dot's input precision: "ieee" (fp32 FMA, like torch's default fp32 matmul), "tf32x3"/"tf32".
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._triton_linear_attention import INTERPRET

__all__ = [
    "INTERPRET",
    "gram_kernel",
    "outer_kernel",
    "readout_bwd_q_kernel",
    "readout_bwd_state_kernel",
    "readout_kernel",
    "scan_kernel",
    "transition_bwd_kernel",
]


@triton.jit
def gram_kernel(
    K, BETA, WN, UROW,  # k (B, H, T, S, D); β (B, H, T, S); Wn (BH, T, BD, BD) fp32; u rows (BH, T, BD) view
    H, T, S, D,
    skb, skh, skt, sks, skd, sbb, sbh, sbt, sbs, su_bh, su_t,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HAS_U: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    k_base = K + b * skb + h * skh + t * skt
    b_base = BETA + b * sbb + h * sbh + t * sbt
    acc = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
    u = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for n0 in range(0, S, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        k = tl.load(k_base + rows[:, None] * sks + offs_d[None, :] * skd,
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(tl.float32)  # (BN, BD)
        beta = tl.load(b_base + rows * sbs, mask=mask_n, other=0.0).to(tl.float32)  # (BN,)
        kb = k * beta[:, None]
        acc += tl.dot(tl.trans(kb), k, input_precision=PREC)  # (BD, BD)
        if HAS_U:
            u += tl.sum(kb, axis=0)
    eye = (offs_d[:, None] == offs_d[None, :]) & mask_d[:, None]
    wn = tl.where(eye, 1.0, 0.0) - acc
    mat = (pid_bh.to(tl.int64) * T + t) * BLOCK_D * BLOCK_D
    tl.store(WN + mat + offs_d[:, None] * BLOCK_D + offs_d[None, :], wn)
    if HAS_U:
        tl.store(UROW + pid_bh.to(tl.int64) * su_bh + t * su_t + offs_d, u)


@triton.jit
def outer_kernel(
    V, K, BETA, U,  # v (B, H, T, S, DV); k (B, H, T, S, DK); β (B, H, T, S); U (BH, T, RP, BD) fp32
    H, T, S, DK, DV, RP,
    svb, svh, svt, svs, svd, skb, skh, skt, sks, skd, sbb, sbh, sbt, sbs,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    v_base = V + b * svb + h * svh + t * svt
    k_base = K + b * skb + h * skh + t * skt
    b_base = BETA + b * sbb + h * sbh + t * sbt
    acc = tl.zeros((BLOCK_DV, BLOCK_D), dtype=tl.float32)
    for n0 in range(0, S, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        v = tl.load(v_base + rows[:, None] * svs + offs_v[None, :] * svd,
                    mask=mask_n[:, None] & (offs_v < DV)[None, :], other=0.0).to(tl.float32)  # (BN, BDV)
        k = tl.load(k_base + rows[:, None] * sks + offs_d[None, :] * skd,
                    mask=mask_n[:, None] & (offs_d < DK)[None, :], other=0.0).to(tl.float32)  # (BN, BD)
        beta = tl.load(b_base + rows * sbs, mask=mask_n, other=0.0).to(tl.float32)
        acc += tl.dot(tl.trans(v * beta[:, None]), k, input_precision=PREC)  # (BDV, BD)
    base = (pid_bh.to(tl.int64) * T + t) * RP * BLOCK_D
    tl.store(U + base + offs_v[:, None] * BLOCK_D + offs_d[None, :], acc, mask=(offs_v < DV)[:, None])


@triton.jit
def _state_times_w(S_PTR, W_PTR, offs_r, keep, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_K: tl.constexpr, TRANS_W: tl.constexpr, PREC: tl.constexpr):
    """S W (or S Wᵀ) for a (BR, BD) state block stored at S_PTR (rows offs_r; zero where not `keep`) and a
    (BD, BD) matrix at W_PTR, contracting BLOCK_K columns at a time -> (BR, BD) fp32."""
    offs_d = tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, BLOCK_D, BLOCK_K):
        cols = k0 + offs_k
        s = tl.load(S_PTR + offs_r[:, None] * BLOCK_D + cols[None, :], mask=keep[:, None], other=0.0)
        if TRANS_W:  # Wᵀ[c, j] = W[j, c]
            w = tl.load(W_PTR + offs_d[None, :] * BLOCK_D + cols[:, None])  # (BK, BD)
        else:
            w = tl.load(W_PTR + cols[:, None] * BLOCK_D + offs_d[None, :])  # (BK, BD)
        acc += tl.dot(s, w, input_precision=PREC)
    return acc


@triton.jit
def scan_kernel(
    WN, DECAY, U, A, D, X,  # Wn (BH, T, BD, BD); g (B, H, T); U, A, D, X (BH, T, RP, BD); all fp32
    H, T, RP, sgb, sgh, sgt,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, ADJOINT: tl.constexpr,
    SUM: tl.constexpr, PREC: tl.constexpr,
):
    """Both scans of one block of state rows. Forward (ADJOINT False): A = F (inclusive, ascending),
    D = B (exclusive, descending), X = F + B if SUM. ADJOINT: the transposed transitions on U = dX,
    A_t = U_t + g_t A_{t−1} Wn_tᵀ (G^B) and D_t = U_t + g_{t+1} D_{t+1} Wn_{t+1}ᵀ (G^F), both inclusive."""
    pid_bh = tl.program_id(0)
    pid_r = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    x_off = offs_r[:, None] * BLOCK_D + offs_d[None, :]
    g_base = DECAY + b * sgb + h * sgh
    mat0 = pid_bh.to(tl.int64) * T
    # 1. Ascending, inclusive: A_t = U_t + g_t A_{t-1} Wn_t (ᵀ).
    for t in range(T):
        tp = tl.maximum(t - 1, 0)
        w_ptr = WN + (mat0 + t) * BLOCK_D * BLOCK_D
        prod = _state_times_w(A + (mat0 + tp) * RP * BLOCK_D, w_ptr, offs_r, (offs_r * 0 + t) > 0,
                              BLOCK_R, BLOCK_D, BLOCK_K, ADJOINT, PREC)
        x = tl.load(U + (mat0 + t) * RP * BLOCK_D + x_off) + tl.load(g_base + t * sgt) * prod
        tl.store(A + (mat0 + t) * RP * BLOCK_D + x_off, x)
        tl.debug_barrier()  # the next frame reads this state back
    # 2. Descending: D_t = U_{t+1} + g_{t+1} D_{t+1} Wn_{t+1} from D_{T-1} = 0 (forward), or
    #    D_t = U_t + g_{t+1} D_{t+1} Wn_{t+1}ᵀ from D_{T-1} = U_{T-1} (adjoint).
    for j in range(T):
        t = T - 1 - j
        tn = tl.minimum(t + 1, T - 1)
        later = (offs_r * 0 + j) > 0
        w_ptr = WN + (mat0 + tn) * BLOCK_D * BLOCK_D
        prod = _state_times_w(D + (mat0 + tn) * RP * BLOCK_D, w_ptr, offs_r, later, BLOCK_R, BLOCK_D,
                              BLOCK_K, ADJOINT, PREC)
        if ADJOINT:
            x = tl.load(U + (mat0 + t) * RP * BLOCK_D + x_off)
        else:
            x = tl.load(U + (mat0 + tn) * RP * BLOCK_D + x_off, mask=later[:, None], other=0.0)
        x += tl.load(g_base + tn * sgt) * prod
        tl.store(D + (mat0 + t) * RP * BLOCK_D + x_off, x)
        if SUM:
            x_sum = x + tl.load(A + (mat0 + t) * RP * BLOCK_D + x_off)
            tl.store(X + (mat0 + t) * RP * BLOCK_D + x_off, x_sum)
        tl.debug_barrier()


@triton.jit
def readout_kernel(
    QN, Q, X, Z, O,  # q̃, q (B, H, T, S, DK); X (BH, T, RP, BD) fp32; z view (BH, T, BD); out (.., DV)
    H, T, S, DK, DV, RP, CHUNK, eps,
    sqnb, sqnh, sqnt, sqns, sqnd, sqb, sqh, sqt, sqs, sqd, sob, soh, sot, sos, sod, sz_bh, sz_t,
    BLOCK_N: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    DEN: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_v = tl.arange(0, BLOCK_DV)
    offs_k = tl.arange(0, BLOCK_K)
    mask_v = offs_v < DV
    x_base = X + (pid_bh.to(tl.int64) * T + t) * RP * BLOCK_D
    z_base = Z + pid_bh.to(tl.int64) * sz_bh + t * sz_t
    qn_base = QN + b * sqnb + h * sqnh + t * sqnt
    q_base = Q + b * sqb + h * sqh + t * sqt
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        num = tl.zeros((BLOCK_N, BLOCK_DV), dtype=tl.float32)
        den = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, DK, BLOCK_K):
            cols = k0 + offs_k
            m = mask_n[:, None] & (cols < DK)[None, :]
            qn = tl.load(qn_base + rows[:, None] * sqns + cols[None, :] * sqnd, mask=m, other=0.0)
            x = tl.load(x_base + offs_v[:, None] * BLOCK_D + cols[None, :], mask=mask_v[:, None], other=0.0)
            num += tl.dot(qn.to(tl.float32), tl.trans(x), input_precision=PREC)  # (BN, BDV)
            if DEN:
                q = tl.load(q_base + rows[:, None] * sqs + cols[None, :] * sqd, mask=m, other=0.0)
                den += tl.sum(q.to(tl.float32) * tl.load(z_base + cols)[None, :], axis=1)
        if DEN:
            num = num / (den + eps)[:, None]
        o_ptr = O + b * sob + h * soh + t * sot + rows[:, None] * sos + offs_v[None, :] * sod
        tl.store(o_ptr, num.to(O.dtype.element_ty), mask=mask_n[:, None] & mask_v[None, :])


@triton.jit
def readout_bwd_q_kernel(
    QN, Q, X, Z, DO, DQN, DQ, DZP,  # DZP view (SPLIT, BH, T, BD) fp32: partial dz per split
    H, T, S, DK, DV, RP, CHUNK, eps,
    sqnb, sqnh, sqnt, sqns, sqnd, sqb, sqh, sqt, sqs, sqd, sdob, sdoh, sdot, sdos, sdod,
    sdqnb, sdqnh, sdqnt, sdqns, sdqnd, sdqb, sdqh, sdqt, sdqs, sdqd, sz_bh, sz_t, sdz_s, sdz_bh, sdz_t,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr, DEN: tl.constexpr,
    SAME_Q: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    mask_d = offs_d < DK
    x_base = X + (pid_bh.to(tl.int64) * T + t) * RP * BLOCK_D
    if DEN:
        z = tl.load(Z + pid_bh.to(tl.int64) * sz_bh + t * sz_t + offs_d)  # (BD,)
        dz = tl.zeros((BLOCK_D,), dtype=tl.float32)
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        m = mask_n[:, None] & mask_d[None, :]
        q_ptr = Q + b * sqb + h * sqh + t * sqt + rows[:, None] * sqs + offs_d[None, :] * sqd
        if DEN:
            q = tl.load(q_ptr, mask=m, other=0.0).to(tl.float32)
            r = 1.0 / (tl.sum(q * z[None, :], axis=1) + eps)  # (BN,)
        p = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # P_s = X_tᵀ do_s
        for v0 in range(0, DV, BLOCK_K):
            vs = v0 + offs_k
            do = tl.load(DO + b * sdob + h * sdoh + t * sdot + rows[:, None] * sdos + vs[None, :] * sdod,
                         mask=mask_n[:, None] & (vs < DV)[None, :], other=0.0)  # (BN, BK)
            x = tl.load(x_base + vs[:, None] * BLOCK_D + offs_d[None, :], mask=(vs < DV)[:, None], other=0.0)
            p += tl.dot(do.to(tl.float32), x, input_precision=PREC)  # (BN, BD)
        dqn_ptr = DQN + b * sdqnb + h * sdqnh + t * sdqnt + rows[:, None] * sdqns + offs_d[None, :] * sdqnd
        if DEN:
            qn = tl.load(QN + b * sqnb + h * sqnh + t * sqnt + rows[:, None] * sqns + offs_d[None, :] * sqnd,
                         mask=m, other=0.0).to(tl.float32)
            dden = -tl.sum(qn * p, axis=1) * r * r
            dq = dden[:, None] * z[None, :]
            if SAME_Q:
                tl.store(dqn_ptr, (p * r[:, None] + dq).to(DQN.dtype.element_ty), mask=m)
            else:
                tl.store(dqn_ptr, (p * r[:, None]).to(DQN.dtype.element_ty), mask=m)
                dq_ptr = DQ + b * sdqb + h * sdqh + t * sdqt + rows[:, None] * sdqs + offs_d[None, :] * sdqd
                tl.store(dq_ptr, dq.to(DQ.dtype.element_ty), mask=m)
            q = tl.load(q_ptr, mask=m, other=0.0).to(tl.float32)  # reloaded: not kept live through the dots
            dz += tl.sum(q * dden[:, None], axis=0)
        else:
            tl.store(dqn_ptr, p.to(DQN.dtype.element_ty), mask=m)
    if DEN:
        tl.store(DZP + pid_s.to(tl.int64) * sdz_s + pid_bh.to(tl.int64) * sdz_bh + t * sdz_t + offs_d, dz)


@triton.jit
def readout_bwd_state_kernel(
    QN, Q, Z, DO, DXP,  # DXP (SPLIT, BH, T, RP, BD) fp32: partial dX_t per split
    H, T, S, DK, DV, RP, CHUNK, eps,
    sqnb, sqnh, sqnt, sqns, sqnd, sqb, sqh, sqt, sqs, sqd, sdob, sdoh, sdot, sdos, sdod, sz_bh, sz_t,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, DEN: tl.constexpr,
    PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    mask_d = offs_d < DK
    mask_v = offs_v < DV
    if DEN:
        z = tl.load(Z + pid_bh.to(tl.int64) * sz_bh + t * sz_t + offs_d)  # (BD,)
    acc = tl.zeros((BLOCK_DV, BLOCK_D), dtype=tl.float32)
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        m = mask_n[:, None] & mask_d[None, :]
        qn = tl.load(QN + b * sqnb + h * sqnh + t * sqnt + rows[:, None] * sqns + offs_d[None, :] * sqnd,
                     mask=m, other=0.0).to(tl.float32)  # (BN, BD)
        do = tl.load(DO + b * sdob + h * sdoh + t * sdot + rows[:, None] * sdos + offs_v[None, :] * sdod,
                     mask=mask_n[:, None] & mask_v[None, :], other=0.0).to(tl.float32)  # (BN, BDV)
        if DEN:
            q = tl.load(Q + b * sqb + h * sqh + t * sqt + rows[:, None] * sqs + offs_d[None, :] * sqd,
                        mask=m, other=0.0).to(tl.float32)
            do = do / (tl.sum(q * z[None, :], axis=1) + eps)[:, None]  # dnum
        acc += tl.dot(tl.trans(do), qn, input_precision=PREC)  # (BDV, BD)
    part = (pid_s.to(tl.int64) * tl.num_programs(0) + pid_bh) * T + t
    dx_ptr = DXP + part * RP * BLOCK_D + offs_v[:, None] * BLOCK_D + offs_d[None, :]
    tl.store(dx_ptr, acc, mask=mask_v[:, None])


@triton.jit
def transition_bwd_kernel(
    K, V, BETA, DU, M, DUROW, DK, DV, DBETA,  # DU (BH, T, RP, BD); M (BH, T, BD, BD); DUROW (BH, T, BD) view;
    H, T, S, DKD, DVD, RP, CHUNK,  # DBETA (B, H, T, S) fp32
    skb, skh, skt, sks, skd, svb, svh, svt, svs, svd, sbb, sbh, sbt, sbs,
    sdkb, sdkh, sdkt, sdks, sdkd, sdvb, sdvh, sdvt, sdvs, sdvd, sdbb, sdbh, sdbt, sdbs, su_bh, su_t,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_K: tl.constexpr,
    HAS_V: tl.constexpr, HAS_DU: tl.constexpr, ACCUMULATE: tl.constexpr, PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    t = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    offs_k = tl.arange(0, BLOCK_K)
    mat = pid_bh.to(tl.int64) * T + t
    m_base = M + mat * BLOCK_D * BLOCK_D
    du_base = DU + mat * RP * BLOCK_D
    k_base = K + b * skb + h * skh + t * skt
    v_base = V + b * svb + h * svh + t * svt
    if HAS_DU:
        urow = tl.load(DUROW + pid_bh.to(tl.int64) * su_bh + t * su_t + offs_d)  # (BD,)
    start = pid_s * CHUNK
    for n0 in range(start, start + CHUNK, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < S
        rows = offs_n.to(tl.int64)
        beta = tl.load(BETA + b * sbb + h * sbh + t * sbt + rows * sbs, mask=mask_n, other=0.0).to(tl.float32)
        # 1. Value terms (a = dU k_s, contracting BLOCK_K key channels at a time): dv = β a, dβ = v_s·a.
        dbeta = tl.zeros((BLOCK_N,), dtype=tl.float32)
        if HAS_V:
            a = tl.zeros((BLOCK_N, BLOCK_DV), dtype=tl.float32)
            for k0 in range(0, DKD, BLOCK_K):
                cols = k0 + offs_k
                kk = tl.load(k_base + rows[:, None] * sks + cols[None, :] * skd,
                             mask=mask_n[:, None] & (cols < DKD)[None, :], other=0.0)  # (BN, BK)
                du = tl.load(du_base + offs_v[:, None] * BLOCK_D + cols[None, :],
                             mask=(offs_v < DVD)[:, None], other=0.0)  # (BDV, BK)
                a += tl.dot(kk.to(tl.float32), tl.trans(du), input_precision=PREC)
            mv = mask_n[:, None] & (offs_v < DVD)[None, :]
            v = tl.load(v_base + rows[:, None] * svs + offs_v[None, :] * svd, mask=mv, other=0.0)
            dbeta += tl.sum(v.to(tl.float32) * a, axis=1)
            dv_ptr = DV + b * sdvb + h * sdvh + t * sdvt + rows[:, None] * sdvs + offs_v[None, :] * sdvd
            tl.store(dv_ptr, (a * beta[:, None]).to(DV.dtype.element_ty), mask=mv)
        # 2. Key terms: c = M k_s (dβ += ½ k_s·c), then c += dUᵀ v_s + du; dk = β c.
        c = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        for k0 in range(0, DKD, BLOCK_K):
            cols = k0 + offs_k
            kk = tl.load(k_base + rows[:, None] * sks + cols[None, :] * skd,
                         mask=mask_n[:, None] & (cols < DKD)[None, :], other=0.0)  # (BN, BK)
            mm = tl.load(m_base + cols[:, None] * BLOCK_D + offs_d[None, :])  # (BK, BD)
            c += tl.dot(kk.to(tl.float32), mm, input_precision=PREC)
        mk = mask_n[:, None] & (offs_d < DKD)[None, :]
        k = tl.load(k_base + rows[:, None] * sks + offs_d[None, :] * skd, mask=mk, other=0.0).to(tl.float32)
        dbeta += 0.5 * tl.sum(k * c, axis=1)
        if HAS_V:
            for v0 in range(0, DVD, BLOCK_K):
                vs = v0 + offs_k
                vv = tl.load(v_base + rows[:, None] * svs + vs[None, :] * svd,
                             mask=mask_n[:, None] & (vs < DVD)[None, :], other=0.0)  # (BN, BK)
                du = tl.load(du_base + vs[:, None] * BLOCK_D + offs_d[None, :], mask=(vs < DVD)[:, None],
                             other=0.0)  # (BK, BD)
                c += tl.dot(vv.to(tl.float32), du, input_precision=PREC)
        if HAS_DU:
            c += urow[None, :]
            dbeta += tl.sum(k * urow[None, :], axis=1)
        dk_ptr = DK + b * sdkb + h * sdkh + t * sdkt + rows[:, None] * sdks + offs_d[None, :] * sdkd
        tl.store(dk_ptr, (c * beta[:, None]).to(DK.dtype.element_ty), mask=mk)
        db_ptr = DBETA + b * sdbb + h * sdbh + t * sdbt + rows * sdbs
        if ACCUMULATE:
            dbeta += tl.load(db_ptr, mask=mask_n, other=0.0)
        tl.store(db_ptr, dbeta, mask=mask_n)


def next_power_of_2(n: int) -> int:
    return triton.next_power_of_2(n)
