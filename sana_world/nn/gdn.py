"""Frame-wise gated DeltaNet (GDN), the linear-attention recurrence of SANA-WM.

The state is updated once per *frame*, from all S tokens of that frame at once. Per head, with keys
k (after ReLU and key scaling), rotated keys k̃ (after RoPE; k̃ = k without RoPE), values v, a per-token
gate β and a per-frame decay g_t:

    W_t = g_t (I − Σ_s β_s k̃_s k̃_sᵀ)        U_t = Σ_s β_s v_s k̃_sᵀ
    S_t = S_{t−1} W_t + U_t                  (numerator state, D_v × D_k)
    W^z_t = g_t (I − Σ_s β_s k_s k_sᵀ)       u_t = Σ_s β_s k_s
    z_t = W^z_t z_{t−1} + u_t                (normaliser state, D_k)

A token s of frame t reads num = S_t q̃_s and den = z_tᵀ q_s. The bidirectional form adds an
*inclusive* forward scan (frames 0..t) and an *exclusive* backward scan (frames t+1..T−1), then
divides: out = (num_fwd + num_bwd) / (den_fwd + den_bwd + eps). The camera branch uses the numerator
alone. Scans always run in fp32.

Pieces:
- `bidirectional_short_conv` / `TemporalShortConv`: depthwise temporal conv made non-causal (a causal
  conv on the sequence plus one on its time reverse, minus the centre tap both count).
- `GDNGates`: β = sigmoid(beta_proj(x)) per token, g = exp(−exp(A_log)·softplus(gate_proj(x̄_t) + dt_bias))
  per frame and head from the frame mean x̄_t.
- `gdn_forward_scan` (with `initial_state`, returning the final state, for chunked/streaming use),
  `gdn_backward_scan`, `bidirectional_gdn`.

Tensors of the scans are laid out per frame: (B, H, T, S, D).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GDNBackend",
    "GDNGates",
    "GDNState",
    "TemporalShortConv",
    "bidirectional_gdn",
    "bidirectional_short_conv",
    "gdn_backward_scan",
    "gdn_forward_scan",
    "gdn_transitions",
    "linear_recurrence",
]


# ---------------------------------------------------------------------------------------------------
# Short temporal convolution
# ---------------------------------------------------------------------------------------------------


def bidirectional_short_conv(x: torch.Tensor, weight: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Depthwise temporal conv of tokens x (B, T·S, C) with a causal kernel `weight` (C, 1, K).

    y[t] = Σ_j w_j x[t−K+1+j]  +  Σ_j w_j x[t+K−1−j]  −  w_{K−1} x[t]   (per channel, per spatial site)

    i.e. the causal conv plus the causal conv of the time-reversed sequence, with the centre tap w_{K−1}
    counted once. It is computed as one conv with the symmetric kernel [w_0 … w_{K−1} … w_0].
    """
    B, N, C = x.shape
    if N % num_frames != 0:
        raise ValueError(f"{N} tokens do not split into {num_frames} frames")
    S, K = N // num_frames, weight.shape[-1]
    kernel = torch.cat([weight, weight[..., :-1].flip(-1)], dim=-1).to(x.dtype)  # (C, 1, 2K-1)
    seq = x.reshape(B, num_frames, S, C).permute(0, 2, 3, 1).reshape(B * S, C, num_frames)  # (B·S, C, T)
    out = F.conv1d(seq, kernel, padding=K - 1, groups=C)  # (B·S, C, T)
    return out.view(B, S, C, num_frames).permute(0, 3, 1, 2).reshape(B, N, C)


class TemporalShortConv(nn.Module):
    """Bidirectional depthwise short conv over frames; parameter `weight` (C, 1, K) as fla's ShortConvolution.

    Initialised to the identity (centre tap 1, others 0), so a fresh layer passes its input through.
    """

    def __init__(self, channels: int, kernel_size: int = 4) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"TemporalShortConv.kernel_size must be >= 1, got {kernel_size}")
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel_size))
        with torch.no_grad():
            self.weight[:, 0, -1] = 1.0

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T·S, C) -> (B, T·S, C)."""
        return bidirectional_short_conv(x, self.weight, num_frames)


# ---------------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------------


class GDNGates(nn.Module):
    """Per-token β and per-frame decay g for each of `heads` heads.

    Parameters: beta_proj, gate_proj (Linear dim -> heads), A_log, dt_bias (heads,), Mamba-style init
    (A ~ U(0, 16), dt log-uniform in [1e-3, 1e-1], dt_bias = softplus⁻¹(dt)).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.beta_proj = nn.Linear(dim, heads)
        self.gate_proj = nn.Linear(dim, heads)
        self.A_log = nn.Parameter(torch.empty(heads))
        self.dt_bias = nn.Parameter(torch.empty(heads))
        self.reset_gate_parameters()

    @torch.no_grad()
    def reset_gate_parameters(self) -> None:
        if self.A_log.is_meta:
            return
        self.A_log.copy_(torch.empty_like(self.A_log).uniform_(0, 16).log())
        log_dt = torch.rand_like(self.dt_bias) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)
        dt = log_dt.exp().clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def forward(self, x: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T·S, C) -> beta (B, H, T, S) in x's dtype, decay (B, H, T) in fp32."""
        B, N, C = x.shape
        S = N // num_frames
        beta = self.beta_proj(x).sigmoid().reshape(B, num_frames, S, self.heads).permute(0, 3, 1, 2)
        frame_mean = x.reshape(B, num_frames, S, C).mean(dim=2)  # (B, T, C)
        gate = self.gate_proj(frame_mean).float()  # (B, T, H)
        rate = self.A_log.float().exp()  # (H,)
        decay = torch.exp(-rate * F.softplus(gate + self.dt_bias.float()))  # (B, T, H)
        return beta, decay.transpose(1, 2)


# ---------------------------------------------------------------------------------------------------
# Recurrences
# ---------------------------------------------------------------------------------------------------


GDNBackend = Literal["torch", "triton"]


class GDNState(NamedTuple):
    """Recurrent state after a frame: kv (B, H, D_v, D_k) and the normaliser z (B, H, D_k) or None."""

    kv: torch.Tensor
    z: torch.Tensor | None


def gdn_transitions(
    k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, decay: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame W_t = g_t (I − Σ_s β k kᵀ) (B, H, T, D_k, D_k) and U_t = Σ_s β v kᵀ (B, H, T, D_v, D_k).

    k (B, H, T, S, D_k), v (B, H, T, S, D_v), beta (B, H, T, S), decay (B, H, T); all fp32.
    """
    eye = torch.eye(k.shape[-1], device=k.device, dtype=k.dtype)
    k_beta = k * beta[..., None]  # (B, H, T, S, D_k)
    W = decay[..., None, None] * (eye - k_beta.transpose(-1, -2) @ k)  # (B, H, T, D_k, D_k)
    U = (v * beta[..., None]).transpose(-1, -2) @ k  # (B, H, T, D_v, D_k)
    return W, U


def gdn_forward_scan(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    decay: torch.Tensor,
    *,
    q_rot: torch.Tensor | None = None,
    k_rot: torch.Tensor | None = None,
    initial_state: GDNState | None = None,
    denominator: bool = True,
    state_frame: int = -1,
) -> tuple[torch.Tensor, torch.Tensor | None, GDNState]:
    """Inclusive forward GDN scan over frames, in fp32.

    Args:
        q, k: (B, H, T, S, D_k) queries/keys feeding the normaliser (and the numerator if no rotation).
        v: (B, H, T, S, D_v).
        beta: (B, H, T, S) per-token gate.  decay: (B, H, T) per-frame decay g.
        q_rot, k_rot: rotated queries/keys for the numerator; None means q, k.
        initial_state: state before frame 0 (zeros if None), e.g. the final state of a previous chunk.
        denominator: also run the normaliser recurrence (False for the camera branch).
        state_frame: the frame whose state is returned (default the last).

    Returns:
        num (B, H, T, S, D_v): S_t q̃; den (B, H, T, S) = z_tᵀ q or None; the state after `state_frame`.
    """
    f32 = torch.float32
    q, k, v, beta, decay = (t.to(f32) for t in (q, k, v, beta, decay))
    q_num = q if q_rot is None else q_rot.to(f32)
    k_num = k if k_rot is None else k_rot.to(f32)
    B, H, T, _, Dk = k.shape
    Dv = v.shape[-1]
    W, U = gdn_transitions(k_num, v, beta, decay)  # (B, H, T, Dk, Dk), (B, H, T, Dv, Dk)
    if initial_state is None:
        s_kv = q.new_zeros(B, H, Dv, Dk)
        s_z = q.new_zeros(B, H, Dk) if denominator else None
    else:
        s_kv = initial_state.kv.to(f32)
        s_z = None if initial_state.z is None else initial_state.z.to(f32)
        if denominator and s_z is None:
            raise ValueError("initial_state has no normaliser z but denominator=True")
    # 1. Numerator: S_t = S_{t-1} W_t + U_t. W_t is symmetric, so the normaliser z_t = W^z_t z_{t-1} + u_t
    #    is the same recurrence on the row vector z_tᵀ; without rotation (W^z = W) it rides along as row D_v.
    u_z = (k * beta[..., None]).sum(dim=3) if denominator else None  # (B, H, T, Dk)
    merged = denominator and k_rot is None
    rows = torch.cat([U, u_z[..., None, :]], dim=-2) if merged else U  # (B, H, T, Dv (+1), Dk)
    init = torch.cat([s_kv, s_z[..., None, :]], dim=-2) if merged else s_kv
    states = linear_recurrence(W, rows, init)  # (B, H, T, Dv (+1), Dk)
    num = q_num @ states[..., :Dv, :].transpose(-1, -2)  # (B, H, T, S, Dv)
    s_kv = states[:, :, state_frame, :Dv]
    if not denominator:
        return num, None, GDNState(s_kv, None)
    # 2. Normaliser with the unrotated keys (its own recurrence when the numerator keys are rotated).
    if merged:
        zs = states[..., Dv, :]  # (B, H, T, Dk)
    else:
        W_z = gdn_transitions(k, v[..., :1], beta, decay)[0]  # (B, H, T, Dk, Dk)
        zs = linear_recurrence(W_z, u_z[..., None, :], s_z[..., None, :])[..., 0, :]  # (B, H, T, Dk)
    den = (q * zs[:, :, :, None, :]).sum(-1)  # (B, H, T, S)
    return num, den, GDNState(s_kv, zs[:, :, state_frame])


PARALLEL_SCAN_MIN_FRAMES = 5  # below this many frames the sequential loop launches fewer kernels


def linear_recurrence(W: torch.Tensor, U: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """All states of X_t = X_{t-1} W_t + U_t from X_{-1} = init: W (B, H, T, D, D), U (B, H, T, R, D),
    init (B, H, R, D) -> (B, H, T, R, D).

    Short sequences loop over frames. Longer ones use a doubling (Hillis-Steele) scan: after the level
    with offset d, frame t holds the composition of frames t-2d+1 .. t, where composing an earlier
    (P1, Q1) with a later (P2, Q2) gives (P1 P2, Q1 P2 + Q2). That is ceil(log2 T) batched matmul levels
    instead of T dependent steps; it reassociates the fp32 products, so it matches the loop to rounding.
    """
    T = W.shape[2]
    if T < PARALLEL_SCAN_MIN_FRAMES:
        x, out = init, []
        for t in range(T):  # 1. one frame at a time
            x = x @ W[:, :, t] + U[:, :, t]
            out.append(x)
        return torch.stack(out, dim=2)
    # 1. Fold the initial state into frame 0's update; 2. doubling levels.
    Q = torch.cat([(init @ W[:, :, 0] + U[:, :, 0])[:, :, None], U[:, :, 1:]], dim=2)
    P, d = W, 1
    while d < T:
        Q = torch.cat([Q[:, :, :d], Q[:, :, :-d] @ P[:, :, d:] + Q[:, :, d:]], dim=2)
        if 2 * d < T:
            P = torch.cat([P[:, :, :d], P[:, :, :-d] @ P[:, :, d:]], dim=2)
        d *= 2
    return Q


def _flip_shift(x: torch.Tensor, fill: float) -> torch.Tensor:
    """Reverse the frame axis (dim 2) and delay by one frame: [x0 … x_{T−1}] -> [fill, x_{T−1} … x1]."""
    flipped = x.flip(2)
    pad = torch.full_like(flipped[:, :, :1], fill)
    return torch.cat([pad, flipped[:, :, :-1]], dim=2)


def gdn_backward_scan(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    decay: torch.Tensor,
    *,
    q_rot: torch.Tensor | None = None,
    k_rot: torch.Tensor | None = None,
    denominator: bool = True,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exclusive backward scan: frame t reads the state built from frames T−1 down to t+1.

    Runs `gdn_forward_scan` on reversed time with keys, values and β delayed by one frame (padded with
    0) and decay delayed likewise (padded with 1), then reverses the outputs. Same shapes as the forward.

    With `chunk_size` k the scan restarts in every chunk of k frames (SANA-WM's `_chunk_causal` teacher):
    frame t reads frames t+1 .. (end of its chunk) − 1 only. The reset is a mask, not a branch: where the
    delayed input is the first frame of the next chunk, its β and the decay are set to 0, so that step's
    transition W = 0·(I − 0) and update U = 0 zero the state.
    """
    if chunk_size == 1:  # every frame is its own chunk: nothing after it is visible, the scan is 0
        num = q.new_zeros(*q.shape[:-1], v.shape[-1], dtype=torch.float32)  # (B, H, T, S, Dv)
        return num, (q.new_zeros(q.shape[:-1], dtype=torch.float32) if denominator else None)
    q_b, qr_b = q.flip(2), None if q_rot is None else q_rot.flip(2)
    k_b, v_b = _flip_shift(k, 0.0), _flip_shift(v, 0.0)
    kr_b = None if k_rot is None else _flip_shift(k_rot, 0.0)
    beta_b, decay_b = _flip_shift(beta, 0.0), _flip_shift(decay, 1.0)
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        T = q.shape[2]
        # Reversed position j reads original frame t = T−1−j; reset where t is the last of its chunk.
        t = torch.arange(T - 1, -1, -1, device=q.device)  # (T,)
        keep = ((t + 1) % chunk_size != 0).to(decay_b.dtype)  # (T,)
        beta_b = beta_b * keep.to(beta_b.dtype)[:, None]
        decay_b = decay_b * keep
    num, den, _ = gdn_forward_scan(
        q_b, k_b, v_b, beta_b, decay_b, q_rot=qr_b, k_rot=kr_b, denominator=denominator,
    )  # fmt: skip
    return num.flip(2), None if den is None else den.flip(2)


def bidirectional_gdn(
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
    backend: GDNBackend = "torch",
) -> torch.Tensor:
    """Forward (inclusive) + backward (exclusive) scans; fp32 (B, H, T, S, D_v).

    With `denominator` the summed numerators are divided by the summed normalisers + eps; without, the
    summed numerators are returned (the camera branch's "single path" rule).

    Both directions share the per-frame transitions (W_t, U_t): the backward state of frame t is
    B_t = B_{t+1} W_{t+1} + U_{t+1} with B_{T−1} = 0, the same recurrence run over the reversed frames, so
    nothing of size T·S is flipped and the transitions are built once. Both read out linearly in q, so
    one product with the summed state S^f_t + B_t gives num_fwd + num_bwd (and z likewise for the
    normaliser). Equal to `gdn_forward_scan` + `gdn_backward_scan` up to fp32 rounding.

    backend="triton" runs `sana_world.kernels.gdn_scan.triton_bidirectional_gdn` instead (CUDA tensors,
    triton installed; the same function up to fp32 summation order); "torch" (default) is the reference.
    """
    if backend == "triton":
        from sana_world.kernels.gdn_scan import triton_bidirectional_gdn

        return triton_bidirectional_gdn(
            q, k, v, beta, decay, q_rot=q_rot, k_rot=k_rot, eps=eps, denominator=denominator
        )  # fmt: skip
    if backend != "torch":
        raise ValueError(f"backend must be one of {get_args(GDNBackend)}, got {backend!r}")
    f32 = torch.float32
    q, k, v, beta, decay = (t.to(f32) for t in (q, k, v, beta, decay))
    q_num = q if q_rot is None else q_rot.to(f32)
    k_num = k if k_rot is None else k_rot.to(f32)
    Dv = v.shape[-1]
    # 1. Transitions, once; the normaliser rides along as row D_v when the keys are not rotated.
    W, U = gdn_transitions(k_num, v, beta, decay)  # (B, H, T, Dk, Dk), (B, H, T, Dv, Dk)
    u_z = (k * beta[..., None]).sum(dim=3) if denominator else None  # (B, H, T, Dk)
    merged = denominator and k_rot is None
    rows = torch.cat([U, u_z[..., None, :]], dim=-2) if merged else U  # (B, H, T, R, Dk)
    # 2. Forward (inclusive) plus backward (exclusive) states.
    states = _both_directions(W, rows)  # (B, H, T, R, Dk)
    num = q_num @ states[..., :Dv, :].transpose(-1, -2)  # (B, H, T, S, Dv)
    if not denominator:
        return num
    # 3. Normaliser: z^f_t + z^b_t read by the unrotated queries.
    if merged:
        zs = states[..., Dv, :]  # (B, H, T, Dk)
    else:
        W_z = gdn_transitions(k, v[..., :1], beta, decay)[0]  # (B, H, T, Dk, Dk)
        zs = _both_directions(W_z, u_z[..., None, :])[..., 0, :]  # (B, H, T, Dk)
    den = (q * zs[:, :, :, None, :]).sum(-1)  # (B, H, T, S)
    return num / (den + eps)[..., None]


def _both_directions(W: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """S^f_t + B_t for X_t = X_{t−1} W_t + U_t from 0 (inclusive, frames 0..t) and B_t = B_{t+1} W_{t+1} +
    U_{t+1} from B_{T−1} = 0 (exclusive, frames T−1 down to t+1): W (B, H, T, D, D), U (B, H, T, R, D)."""
    B, H, T, R, D = U.shape
    zero = U.new_zeros(B, H, R, D)
    fwd = linear_recurrence(W, U, zero)  # (B, H, T, R, D)
    if T == 1:
        return fwd
    rev = linear_recurrence(W[:, :, 1:].flip(2), U[:, :, 1:].flip(2), zero)  # B_{T−2}, ..., B_0
    bwd = torch.cat([rev.flip(2), zero[:, :, None]], dim=2)  # (B, H, T, R, D)
    return fwd + bwd
