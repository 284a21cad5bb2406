"""Chunk-causal SANA-WM: the same weights run block-causally over chunks of latent frames.

Latent frames are grouped in chunks of k (aligned to the first frame of the pass); a chunk sees itself
and everything before it, never a later chunk. Piece by piece (mirroring SANA-Video's block-causal linear
attention and causal Mix-FFN, and SANA-WM's `_chunk_causal` / `_streaming` variants):

- GDN main branch (and the UCPE camera branch, numerator only): the *forward* scan (inclusive) runs over
  all frames, globally, carrying the recurrent state (S, z) across chunks; the *backward* scan (exclusive)
  restarts in every chunk, so frame t reads frames t+1 .. end of its own chunk. This is SANA-WM's
  `_chunk_causal` teacher: "global forward scan, per-chunk backward scan".
- GDN short conv on K (kernel K, made two-sided in the bidirectional model): its causal taps read frames
  t−K+1 .. t, across chunk boundaries (earlier chunks are visible left context; zeros before frame 0, as
  the bidirectional conv pads); its anti-causal taps t+1 .. t+K−1 read only frames of the same chunk
  (zeros past the chunk end, as at the end of a bidirectional sequence).
- GLUMBConvTemp's temporal conv (kernel k_t, centred): left taps read the previous frames, across chunks
  (SANA-Video: "pads left with the previous chunk's last frame"); right taps read only frames of the same
  chunk ("right with zeros" at the chunk end).
- Softmax blocks (main and camera branch): block-causal attention over a bounded window. A query of the
  chunk starting at frame s sees key frame f iff f is in its own chunk or an earlier one, and f is an
  attention-sink frame (f < `sink_frames`) or one of the last `window_frames` frames before the chunk
  (f ≥ s − W). Its own chunk is always fully visible. All of it is a boolean mask built from frame ids.
- Everything else (patch/Plücker embedders, modulation, cross-attention, GLU, output head) is per frame.

So with k ≥ T (one chunk) the chunk-causal mode equals the bidirectional model whatever the window: the
window only ever trims earlier chunks.

The same code serves streaming (`streaming.py`): a pass may start from a stream state (`GDNBlockState` /
`SoftmaxBlockState`: forward-scan states, the raw frames the convs need as left context, the softmax KV
window of sink + recent frames with RoPE/UCPE already applied) at absolute frame `frame_offset`, and returns
the state after its last frame, or after its first `CausalContext.commit_frames` frames. The full-sequence
mode is the same pass from an empty state at offset 0. The token-level softmax mask is (T·S) × (T_keys·S)
booleans: fine at streaming sizes, not at full length (`causal_context.py` builds and caches it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from sana_world.nn import layer_norm, modulate
from sana_world.nn.gdn import GDNState, gdn_backward_scan, gdn_forward_scan
from sana_world.nn.rope import Rope3DConfig, apply_rotary, rope_1d

from .attention import _from_frames, _heads, _to_frames
from .causal_context import CausalContext, ChunkCausalConfig, host_to_device
from .ucpe import UcpeTransforms, apply_ucpe, downscale_to_reference_rms

if TYPE_CHECKING:
    from .attention import GDNCameraAttention, SoftmaxCameraAttention
    from .model import GLUMBConvTemp, SanaWMBlock

__all__ = [
    "BLOCK_NORM_EPS",
    "BlockInputs",
    "CausalContext",
    "ChunkCausalConfig",
    "GDNBlockState",
    "SoftmaxBlockState",
    "causal_block_forward",
    "chunk_causal_short_conv",
    "chunk_causal_temporal_conv",
    "rope_tables_at",
]

BLOCK_NORM_EPS = 1e-6


class BlockInputs(NamedTuple):
    """What `SanaWM.prepare_inputs` hands the blocks: tokens x (B, N, D), temb (B, T, D), t0 (B, T, 6D),
    context (B, L, D), attn_bias (B, 1, 1, L) | None, grid (T, h, w), rope 2 × (N, head_dim) (or per row
    (B, N, head_dim) when the rows sit at different frames), ucpe,
    plucker (B, N, D) | None."""

    x: torch.Tensor
    temb: torch.Tensor
    t0: torch.Tensor
    context: torch.Tensor
    attn_bias: torch.Tensor | None
    grid: tuple[int, int, int]
    rope: tuple[torch.Tensor, torch.Tensor]
    ucpe: UcpeTransforms | None
    plucker: torch.Tensor | None


def rope_tables_at(
    cfg: Rope3DConfig, grid: tuple[int, int, int], frame_offset: int | tuple[int, ...],
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """3-D RoPE tables (T·h·w, head_dim) for frames frame_offset .. frame_offset+T−1 (bitwise the rows of
    `axial_rope_tables` for the longer grid); per row (B, T·h·w, head_dim) for B offsets (a tuple)."""
    T, h, w = grid
    rows = isinstance(frame_offset, tuple)
    if rows:  # (B,) offsets from the host; one int needs no copy
        f0 = host_to_device(torch.tensor(frame_offset), device)
    else:
        f0 = torch.arange(frame_offset, frame_offset + 1, device=device)
    positions = ((f0[:, None] + torch.arange(T, device=device)[None]).flatten(),
                 torch.arange(h, device=device), torch.arange(w, device=device))  # fmt: skip
    B = f0.shape[0]
    cos_parts, sin_parts = [], []
    for axis, (dim, pos) in enumerate(zip(cfg.bands, positions)):
        cos, sin = rope_1d(dim, pos, cfg.theta)  # (size, dim)
        view = [1, 1, 1, 1, dim]
        view[0], view[axis + 1] = (B, T) if axis == 0 else (1, pos.shape[0])
        cos_parts.append(cos.view(view).expand(B, T, h, w, dim))
        sin_parts.append(sin.view(view).expand(B, T, h, w, dim))
    cos, sin = (torch.cat(p, -1).reshape(B, T * h * w, -1) for p in (cos_parts, sin_parts))
    return (cos, sin) if rows else (cos[0], sin[0])


# ---------------------------------------------------------------------------------------------------
# Stream state of one block
# ---------------------------------------------------------------------------------------------------


@dataclass
class GDNBlockState:
    """kv (B, H, D, D), z (B, H, D): main forward-scan state; cam_kv (B, H, D, D): camera-branch state;
    conv_k, conv_k_cam (B, K−1, S, C): raw (pre-conv) keys of the last K−1 frames; ffn (B, C, p, S): the
    GLU output of the last p = k_t // 2 frames (left context of the temporal conv)."""

    kv: torch.Tensor
    z: torch.Tensor
    cam_kv: torch.Tensor
    conv_k: torch.Tensor
    conv_k_cam: torch.Tensor
    ffn: torch.Tensor


@dataclass
class SoftmaxBlockState:
    """KV window of `sink_frames + window_frames` slots (B, F, S, H, D): slot j < sink holds frame j,
    slot sink + i holds frame (next − W + i); keys after RoPE (k) and after UCPE (cam_k, cam_v), so cached
    frames keep their absolute positions and poses. ffn (B, C, p, S) as in `GDNBlockState`."""

    k: torch.Tensor
    v: torch.Tensor
    cam_k: torch.Tensor
    cam_v: torch.Tensor
    ffn: torch.Tensor


BlockState = GDNBlockState | SoftmaxBlockState


def map_block_state(state: BlockState, fn) -> BlockState:
    """Apply fn to every tensor of a block state."""
    fields = dataclasses.fields(state)
    return dataclasses.replace(state, **{f.name: fn(getattr(state, f.name)) for f in fields})


# ---------------------------------------------------------------------------------------------------
# Causal temporal convolutions
# ---------------------------------------------------------------------------------------------------


def chunk_causal_short_conv(
    x: torch.Tensor, weight: torch.Tensor, ctx: CausalContext, prefix: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GDN K short conv, chunk-causal: x (B, T·S, C), causal kernel weight (C, 1, K), prefix
    (B, K−1, S, C) raw frames before the pass (None: zeros). Returns y (B, T·S, C) and the prefix after the
    committed frames (`CausalContext.commit_frames`).

    y[t] = Σ_j w_j x[t−K+1+j] (left, across chunks) + Σ_{d≥1} w_{K−1−d} x[t+d] (same chunk only).
    """
    B, N, C = x.shape
    T, K = ctx.num_frames, weight.shape[-1]
    S = N // T
    xf = x.reshape(B, T, S, C)
    if prefix is None:
        prefix = xf.new_zeros(B, K - 1, S, C)
    w = weight[:, 0, :].to(x.dtype)  # (C, K)
    seq = torch.cat([prefix, xf], dim=1)  # (B, K−1+T, S, C)
    # 1. Causal taps, reading earlier chunks through the prefix.
    y = seq[:, :T] * w[:, 0]  # (B, T, S, C)
    for j in range(1, K):
        y = y + seq[:, j : j + T] * w[:, j]
    # 2. Anti-causal taps, masked at the chunk end (skipped where no frame has one: a sum of zeros).
    for d in range(1, K):
        rows = ctx.future_rows(d)
        if not any(rows):
            continue
        shifted = torch.cat([xf[:, d:], xf.new_zeros(B, min(d, T), S, C)], dim=1)[:, :T]
        tap = shifted * w[:, K - 1 - d]
        if not all(rows):
            tap = tap * ctx.future_mask(d, x.device).to(x.dtype)[:, None, None]
        y = y + tap
    end = K - 1 + ctx.committed  # the prefix after the committed frames
    return y.reshape(B, N, C), seq[:, end - (K - 1) : end]


def chunk_causal_temporal_conv(
    conv: torch.nn.Conv2d, y: torch.Tensor, ctx: CausalContext, prefix: torch.Tensor | None,
    with_conv: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:  # fmt: skip
    """GLUMBConvTemp's (k_t × 1) conv, chunk-causal: y (B, C, T, S), prefix (B, C, p, S) with p = k_t // 2
    (None: zeros). Left taps read across chunks, right taps only within the chunk. Returns
    (conv(y) (B, C, T, S), or None without `with_conv`; the prefix after the committed frames)."""
    B, C, T, S = y.shape
    Kt = conv.kernel_size[0]
    p = Kt // 2
    if prefix is None:
        prefix = y.new_zeros(B, C, p, S)
    seq = torch.cat([prefix, y], dim=2)  # (B, C, p+T, S)
    end = p + ctx.committed  # the prefix after the committed frames
    if not with_conv:
        return None, seq[:, :, end - p : end]
    w = conv.weight.to(y.dtype)  # (C_out, C_in, Kt, 1)
    # 1. Left taps and the centre: a valid conv over [prefix, y].
    out = F.conv2d(seq, w[:, :, : p + 1])  # (B, C, T, S)
    # 2. Right taps, masked at the chunk end (skipped where no frame has one: a sum of zeros).
    for d in range(1, p + 1):
        rows = ctx.future_rows(d)
        if not any(rows):
            continue
        shifted = torch.cat([y[:, :, d:], y.new_zeros(B, C, min(d, T), S)], dim=2)[:, :, :T]
        tap = F.conv2d(shifted, w[:, :, p + d : p + d + 1])
        if not all(rows):
            tap = tap * ctx.future_mask(d, y.device).to(y.dtype)[:, None]  # (T, 1)
        out = out + tap
    return out, seq[:, :, end - p : end]


# ---------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------


def _masked_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float | None,
    bf16: bool,
) -> torch.Tensor:  # fmt: skip
    """q (B, Nq, H, D), k, v (B, Nk, H, D), mask (Nq, Nk) bool or None (all) -> (B, Nq, H, D) in v's dtype."""
    dtype = v.dtype
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, N, D)
    if bf16:
        q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2).to(dtype)


def push_window(
    window: torch.Tensor, frames: torch.Tensor, ctx: CausalContext
) -> torch.Tensor:
    """Append frames (B, T, S, H, D) (absolute frame_offset ..) to a KV window (B, sink + W, S, H, D).

    Sink slots take frames with index < sink (Python ints only: no host sync); the recent part keeps the
    last W frames. Slots never filled hold zeros and are masked by `CausalContext`. T may be fewer than the
    pass' frames (its committed ones). Rows at different frames (`ctx.row_f0`) each fill their own slots.
    """
    sink = ctx.cfg.sink_frames
    frames = frames.to(window.dtype)  # the window keeps its dtype (a bf16 window under bf16 autocast)
    out = _push(window, frames, sink, ctx.cfg.window_frames, ctx.frame_offset if ctx.row_f0 is None else sink)
    if ctx.row_f0 is not None:
        for f0 in range(sink):  # 1. rows still filling their sink slots: their own layout
            rows = (ctx.row_f0 == f0).view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
            out = torch.where(rows, _push(window, frames, sink, ctx.cfg.window_frames, f0), out)
    return out


def _push(window: torch.Tensor, frames: torch.Tensor, sink: int, W: int, f0: int) -> torch.Tensor:
    """`push_window` for rows whose first new frame is f0."""
    T = frames.shape[1]
    sinks = window[:, :sink]
    lo, hi = f0, min(f0 + T, sink)
    if lo < hi:
        sinks = torch.cat([sinks[:, :lo], frames[:, : hi - lo], sinks[:, hi:]], dim=1)
    recent = torch.cat([window[:, sink:], frames], dim=1)
    return torch.cat([sinks, recent[:, recent.shape[1] - W :]], dim=1)


def _gdn_attention(
    attn: GDNCameraAttention, x: torch.Tensor, inp: BlockInputs, ctx: CausalContext, st: GDNBlockState | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`GDNCameraAttention.forward`, chunk-causal from state st. Returns (B, N, C) and the new state's
    tensors (empty without a state or with nothing committed)."""
    T = ctx.num_frames
    keep = st is not None and ctx.committed > 0  # build the state after the committed frames
    last = ctx.committed - 1 if keep else -1
    S = x.shape[1] // T
    H, D = attn.cfg.heads, attn.cfg.head_dim
    key_scale = D**-0.5 * S**-0.5
    beta, decay = attn.gates(x, T)  # (B, H, T, S), (B, H, T)
    # 1. Main branch: global forward scan from the state, per-chunk backward scan.
    q, k, v = attn.qkv(x).chunk(3, dim=-1)  # 3 × (B, N, C)
    k, conv_k = chunk_causal_short_conv(k, attn.conv_k.weight, ctx, None if st is None else st.conv_k)
    q = F.relu(_heads(attn._norm(attn.q_norm, q), H))  # (B, N, H, D)
    k = F.relu(_heads(attn._norm(attn.k_norm, k), H)) * key_scale
    v = _heads(v, H)
    cos, sin = inp.rope
    q_rot, k_rot = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    args = [_to_frames(t, T) for t in (q, k, v)] + [beta, decay]  # (B, H, T, S, D) ...
    rot = dict(q_rot=_to_frames(q_rot, T), k_rot=_to_frames(k_rot, T))
    init = None if st is None else GDNState(st.kv, st.z)
    num_f, den_f, fwd = gdn_forward_scan(*args, **rot, initial_state=init, state_frame=last)
    if ctx.chunk_size == 1:  # one-frame chunks: the backward scan reads nothing (it is all zeros)
        main = num_f / (den_f + attn.cfg.gdn_eps)[..., None]  # (B, H, T, S, D) fp32
    else:
        num_b, den_b = gdn_backward_scan(*args, **rot, chunk_size=ctx.chunk_size)
        main = (num_f + num_b) / (den_f + den_b + attn.cfg.gdn_eps)[..., None]
    main = _from_frames(main).flatten(2).to(v.dtype)  # (B, N, C)
    new: dict[str, torch.Tensor] = {}
    if keep:
        new.update(kv=fwd.kv, z=fwd.z, conv_k=conv_k, cam_kv=st.cam_kv, conv_k_cam=st.conv_k_cam)
    # 2. Camera branch, numerator only.
    cam = None
    if inp.ucpe is not None:
        ucpe = inp.ucpe
        qc = attn.q_proj_cam(x)
        kc, conv_k_cam = chunk_causal_short_conv(
            attn.k_proj_cam(x), attn.conv_k_cam.weight, ctx, None if st is None else st.conv_k_cam
        )
        vc = _heads(attn.v_proj_cam(x), H)
        qc = F.relu(_heads(attn._norm(attn.q_norm_cam, qc), H))
        kc = F.relu(_heads(attn._norm(attn.k_norm_cam, kc), H)) * key_scale
        k_norm_pre = torch.linalg.vector_norm(kc, dim=-1, keepdim=True).clamp_min(1e-6)
        q_u = downscale_to_reference_rms(qc, apply_ucpe(qc, ucpe.P_T, ucpe.cos, ucpe.sin))
        k_u = downscale_to_reference_rms(kc, apply_ucpe(kc, ucpe.P_inv, ucpe.cos, ucpe.sin))
        v_u = downscale_to_reference_rms(vc, apply_ucpe(vc, ucpe.P_inv, ucpe.cos, ucpe.sin))
        k_norm_post = torch.linalg.vector_norm(k_u, dim=-1, keepdim=True).clamp_min(1e-6)
        growth = _to_frames((k_norm_post / k_norm_pre) ** 2, T)[..., 0].mean(-1)  # (B, H, T)
        beta_c = beta / growth.clamp_min(1.0)[..., None]  # (B, H, T, S)
        cargs = [_to_frames(t, T) for t in (q_u, k_u, v_u)] + [beta_c, decay]
        init_c = None if st is None else GDNState(st.cam_kv, None)
        num_fc, _, fwd_c = gdn_forward_scan(*cargs, initial_state=init_c, denominator=False, state_frame=last)
        if ctx.chunk_size != 1:
            num_fc = num_fc + gdn_backward_scan(*cargs, denominator=False, chunk_size=ctx.chunk_size)[0]
        out = _from_frames(num_fc).to(vc.dtype)  # (B, N, H, D)
        cam = apply_ucpe(out, ucpe.P, ucpe.cos, ucpe.sin, inverse_rope=True).flatten(2)
        if keep:
            new.update(cam_kv=fwd_c.kv, conv_k_cam=conv_k_cam)
    return attn._finish(x, main, cam), new


def _softmax_attention(
    attn: SoftmaxCameraAttention, x: torch.Tensor, inp: BlockInputs, ctx: CausalContext,
    st: SoftmaxBlockState | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """`SoftmaxCameraAttention.forward` with the block-causal window mask over [KV window; this pass]."""
    T = ctx.num_frames
    B, N, _ = x.shape
    S = N // T
    H, bf16 = attn.cfg.heads, attn.cfg.softmax_in_bf16
    keep, c = st is not None and ctx.committed > 0, ctx.committed  # state after the committed frames
    mask = None if ctx.attend_all else ctx.token_mask(S)  # (N, F_keys·S)

    def with_past(past: torch.Tensor | None, cur: torch.Tensor) -> torch.Tensor:
        return cur if past is None else torch.cat([past.flatten(1, 2), cur], dim=1)  # (B, Nk, H, D)

    def frames(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(1, (T, S))[:, :c]  # (B, c, S, H, D), the committed frames

    # 1. Main branch: RoPE then masked SDPA.
    q, k, v = attn.qkv(x).chunk(3, dim=-1)  # 3 × (B, N, C)
    q = _heads(attn._norm(attn.q_norm, q), H)
    k = _heads(attn._norm(attn.k_norm, k), H)
    v = _heads(v, H)
    cos, sin = inp.rope
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    past_k, past_v = (None, None) if st is None else (st.k, st.v)
    main = _masked_sdpa(q, with_past(past_k, k), with_past(past_v, v), mask, None, bf16).flatten(2)
    new: dict[str, torch.Tensor] = {}
    if keep:
        new = dict(k=push_window(st.k, frames(k), ctx), v=push_window(st.v, frames(v), ctx),
                   cam_k=st.cam_k, cam_v=st.cam_v)  # fmt: skip
    if inp.ucpe is None:
        return attn._finish(x, main, None), new
    # 2. Camera branch: masked SDPA in UCPE ray space.
    ucpe = inp.ucpe
    qc = _heads(attn._norm(attn.q_norm_cam, attn.q_proj_cam(x)), H)
    kc = _heads(attn._norm(attn.k_norm_cam, attn.k_proj_cam(x)), H)
    vc = _heads(attn.v_proj_cam(x), H)
    q_u = downscale_to_reference_rms(qc, apply_ucpe(qc, ucpe.P_T, ucpe.cos, ucpe.sin)).float()
    k_u = downscale_to_reference_rms(kc, apply_ucpe(kc, ucpe.P_inv, ucpe.cos, ucpe.sin)).float()
    v_u = downscale_to_reference_rms(vc, apply_ucpe(vc, ucpe.P_inv, ucpe.cos, ucpe.sin)).float()
    past_k, past_v = (None, None) if st is None else (st.cam_k, st.cam_v)
    out = _masked_sdpa(q_u, with_past(past_k, k_u), with_past(past_v, v_u), mask,
                       attn.cfg.cam_softmax_scale, bf16).to(vc.dtype)  # fmt: skip
    cam = apply_ucpe(out, ucpe.P, ucpe.cos, ucpe.sin, inverse_rope=True).flatten(2)  # (B, N, C)
    if keep:
        new.update(cam_k=push_window(st.cam_k, frames(k_u), ctx),
                   cam_v=push_window(st.cam_v, frames(v_u), ctx))  # fmt: skip
    return attn._finish(x, main, cam), new


def _ffn(
    ffn: GLUMBConvTemp, x: torch.Tensor, grid: tuple[int, int, int], ctx: CausalContext,
    prefix: torch.Tensor | None, output: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:  # fmt: skip
    """`GLUMBConvTemp.forward` with the chunk-causal temporal conv: (B, N, C) -> (B, N, C) (None without
    `output`: only the new prefix is wanted), new prefix."""
    B, N, C = x.shape
    T, h, w = grid
    frames = x.reshape(B * T, h, w, C).permute(0, 3, 1, 2)  # (B·T, C, h, w)
    y = ffn.glu.forward_grid(frames)  # (B·T, C, h, w)
    y = y.view(B, T, C, h * w).transpose(1, 2)  # (B, C, T, h·w)
    conv, new_prefix = chunk_causal_temporal_conv(ffn.t_conv, y, ctx, prefix, with_conv=output)
    if conv is None:
        return None, new_prefix
    y = y + conv
    return y.permute(0, 2, 3, 1).reshape(B, N, C), new_prefix


def causal_block_forward(
    block: SanaWMBlock, x: torch.Tensor, inp: BlockInputs, ctx: CausalContext, state: BlockState | None,
    cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None, output: bool = True,
) -> tuple[torch.Tensor | None, BlockState | None]:  # fmt: skip
    """`SanaWMBlock.forward` in chunk-causal mode from a stream state (None: empty, and no state returned).

    x (B, N, D) -> (B, N, D) and the block's state after the pass' committed frames (`ctx.commit_frames`;
    None when nothing is committed). cross_kv: this block's caption keys and values, precomputed
    (`CrossAttention.project_context`). Without `output` only the state is built (x comes back None).
    """
    B, N, D = x.shape
    T = ctx.num_frames
    keep = state is not None and ctx.committed > 0

    def per_frame(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B * T, N // T, D)  # (B·T, S, D)

    shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = block.mod(inp.t0.reshape(B * T, -1))
    # 1. Self-attention (GDN or softmax) with the camera branch.
    h = modulate(layer_norm(per_frame(x), BLOCK_NORM_EPS), shift_a, scale_a).reshape(B, N, D)
    if block.is_softmax:
        a, new = _softmax_attention(block.attn, h, inp, ctx, state)
    else:
        a, new = _gdn_attention(block.attn, h, inp, ctx, state)
    x = x + (gate_a * per_frame(a)).reshape(B, N, D)
    # 2. Plücker rays.
    if inp.plucker is not None and block.plucker_proj is not None:
        x = x + block.plucker_proj(inp.plucker)
    # 3. Cross-attention to the caption.
    x = x + block.cross_attn(x, inp.context, inp.attn_bias, kv=cross_kv)
    # 4. Feed-forward over space and time, the temporal conv chunk-causal.
    h = modulate(layer_norm(per_frame(x), BLOCK_NORM_EPS), shift_f, scale_f).reshape(B, N, D)
    f, ffn_prefix = _ffn(block.ffn, h, inp.grid, ctx, None if state is None else state.ffn, output)
    x = None if f is None else x + (gate_f * per_frame(f)).reshape(B, N, D)
    if not keep:
        return x, None
    return x, dataclasses.replace(state, **new, ffn=ffn_prefix)
