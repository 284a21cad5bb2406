"""Self-attention of SANA-WM blocks: a main branch plus a UCPE camera branch, sharing one output gate.

    out = proj( (main(x) + out_proj_cam(camera(x))) · SiLU(output_gate(x)) )

`GDNCameraAttention` (most blocks):
    main:   qkv → short conv on K → RMSNorm q, k → ReLU → k·d^-½·S^-½ → RoPE (numerator only)
            → bidirectional GDN with normaliser (eps 1e-8).
    camera: q/k/v_proj_cam → short conv on K → RMSNorm → ReLU → k·d^-½·S^-½ → UCPE (RMS-capped)
            → β / max(1, mean_S ‖k_ucpe‖²/‖k‖²) → bidirectional GDN, numerator only → UCPE⁻¹.
`SoftmaxCameraAttention` (every n-th block): the same projections without short convs, ReLU or key
scaling; RoPE on q, k then SDPA over all tokens; the camera branch runs SDPA in UCPE space. Its GDN
gates exist only so one parameter layout serves both kinds of block; they are never read.

Both branches see the same gates β (per token) and decay (per frame), from `GDNGates`.
Inputs: x (B, N, C) with N = T·S tokens ordered (frame, row, column); RoPE tables (N, head_dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sana_world.nn.gdn import GDNBackend, GDNGates, TemporalShortConv, bidirectional_gdn
from sana_world.nn.norms import RMSNorm
from sana_world.nn.rope import apply_rotary

from .ucpe import UcpeTransforms, apply_ucpe, downscale_to_reference_rms

__all__ = ["CameraAttentionConfig", "GDNCameraAttention", "SoftmaxCameraAttention"]


@dataclass(frozen=True)
class CameraAttentionConfig:
    """Attributes:
    dim: model width C; heads = dim // head_dim (main and camera branch alike).
    head_dim: channels per head, a multiple of 8.
    qk_norm: RMSNorm over all heads on q and k of both branches.
    norm_eps: eps of those RMSNorms.
    conv_kernel_size: causal kernel of the GDN short convs on K (GDN blocks only).
    gdn_eps: added to the GDN normaliser.
    softmax_in_bf16: run SDPA on bf16 copies of q, k, v (diffusers' numerics); else fp32.
    cam_softmax_scale: logit scale of the softmax camera branch (see `SanaWMConfig.cam_softmax_scale`).
    gdn_backend: how the bidirectional GDN scans run: "torch" (the reference) or "triton" (the fused CUDA
        kernels of `sana_world.kernels.gdn_scan`); a speed choice, not a model property (`SanaWM.set_gdn_backend`).
    """

    dim: int
    head_dim: int
    qk_norm: bool = True
    norm_eps: float = 1e-5
    conv_kernel_size: int = 4
    gdn_eps: float = 1e-8
    softmax_in_bf16: bool = False
    cam_softmax_scale: float | None = None
    gdn_backend: GDNBackend = "torch"

    def __post_init__(self) -> None:
        if self.dim % self.head_dim != 0 or self.head_dim % 8 != 0:
            raise ValueError(f"need head_dim % 8 == 0, dim % head_dim == 0: {self.dim=}, {self.head_dim=}")

    @property
    def heads(self) -> int:
        return self.dim // self.head_dim


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, N, H, D)."""
    return x.unflatten(-1, (heads, -1))


def _to_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, N, H, D) -> (B, H, T, S, D)."""
    return x.unflatten(1, (num_frames, -1)).permute(0, 3, 1, 2, 4)


def _from_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, S, D) -> (B, N, H, D)."""
    return x.permute(0, 2, 3, 1, 4).flatten(1, 2)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, bf16: bool) -> torch.Tensor:
    """Softmax attention over (B, N, H, D) tensors -> (B, N, H, D) in v's dtype."""
    dtype = v.dtype
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, N, D)
    if bf16:
        q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).to(dtype)


class _CameraAttentionBase(nn.Module):
    """Parameter layout shared by both block kinds (names follow the diffusers checkpoint)."""

    def __init__(self, cfg: CameraAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, H = cfg.dim, cfg.heads
        self.qkv = nn.Linear(C, 3 * C, bias=False)
        self.proj = nn.Linear(C, C)
        self.output_gate = nn.Linear(C, C)
        self.gates = GDNGates(C, H)
        self.q_norm = RMSNorm(C, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(C, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.q_proj_cam = nn.Linear(C, C)
        self.k_proj_cam = nn.Linear(C, C)
        self.v_proj_cam = nn.Linear(C, C)
        self.out_proj_cam = nn.Linear(C, C)
        self.q_norm_cam = RMSNorm(C, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm_cam = RMSNorm(C, eps=cfg.norm_eps) if cfg.qk_norm else None

    @staticmethod
    def _norm(norm: RMSNorm | None, x: torch.Tensor) -> torch.Tensor:
        return x if norm is None else norm(x)

    def _finish(self, x: torch.Tensor, main: torch.Tensor, cam: torch.Tensor | None) -> torch.Tensor:
        """main, cam (B, N, C) -> proj((main + out_proj_cam(cam)) · SiLU(output_gate(x)))."""
        if cam is not None:
            main = main + self.out_proj_cam(cam)
        main = main * F.silu(self.output_gate(x).float())
        return self.proj(main.to(x.dtype))


class GDNCameraAttention(_CameraAttentionBase):
    def __init__(self, cfg: CameraAttentionConfig) -> None:
        super().__init__(cfg)
        self.conv_k = TemporalShortConv(cfg.dim, cfg.conv_kernel_size)
        self.conv_k_cam = TemporalShortConv(cfg.dim, cfg.conv_kernel_size)

    def forward(
        self,
        x: torch.Tensor,
        grid: tuple[int, int, int],
        rope: tuple[torch.Tensor, torch.Tensor],
        ucpe: UcpeTransforms | None = None,
    ) -> torch.Tensor:
        """x (B, N, C), grid (T, h, w), rope tables 2 × (N, head_dim), ucpe (None: no camera) -> (B, N, C)."""
        T = grid[0]
        S = x.shape[1] // T
        H, D = self.cfg.heads, self.cfg.head_dim
        key_scale = D**-0.5 * S**-0.5
        beta, decay = self.gates(x, T)  # (B, H, T, S), (B, H, T)
        # 1. Main branch.
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 × (B, N, C)
        k = self.conv_k(k, T)
        q = F.relu(_heads(self._norm(self.q_norm, q), H))  # (B, N, H, D)
        k = F.relu(_heads(self._norm(self.k_norm, k), H)) * key_scale  # (B, N, H, D)
        v = _heads(v, H)
        cos, sin = rope
        q_rot, k_rot = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        main = bidirectional_gdn(
            *(_to_frames(t, T) for t in (q, k, v)), beta, decay,
            q_rot=_to_frames(q_rot, T), k_rot=_to_frames(k_rot, T), eps=self.cfg.gdn_eps,
            backend=self.cfg.gdn_backend,
        )  # fmt: skip  # (B, H, T, S, D) fp32
        main = _from_frames(main).flatten(2).to(v.dtype)  # (B, N, C)
        # 2. Camera branch.
        cam = None if ucpe is None else self._camera(x, T, beta, decay, ucpe, key_scale)
        return self._finish(x, main, cam)

    def _camera(
        self,
        x: torch.Tensor,
        T: int,
        beta: torch.Tensor,
        decay: torch.Tensor,
        ucpe: UcpeTransforms,
        key_scale: float,
    ) -> torch.Tensor:
        """Numerator-only bidirectional GDN in UCPE ray space -> (B, N, C) in world space."""
        H = self.cfg.heads
        q = self.q_proj_cam(x)
        k = self.conv_k_cam(self.k_proj_cam(x), T)
        v = _heads(self.v_proj_cam(x), H)  # (B, N, H, D)
        q = F.relu(_heads(self._norm(self.q_norm_cam, q), H))
        k = F.relu(_heads(self._norm(self.k_norm_cam, k), H)) * key_scale
        k_norm_pre = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-6)  # (B, N, H, 1)
        # 1. Encode into ray space, capped at the pre-transform RMS.
        q_u = downscale_to_reference_rms(q, apply_ucpe(q, ucpe.P_T, ucpe.cos, ucpe.sin))
        k_u = downscale_to_reference_rms(k, apply_ucpe(k, ucpe.P_inv, ucpe.cos, ucpe.sin))
        v_u = downscale_to_reference_rms(v, apply_ucpe(v, ucpe.P_inv, ucpe.cos, ucpe.sin))
        # 2. Discount β by the mean squared key-norm growth of each frame (never boost it).
        k_norm_post = torch.linalg.vector_norm(k_u, dim=-1, keepdim=True).clamp_min(1e-6)
        growth = _to_frames((k_norm_post / k_norm_pre) ** 2, T)[..., 0].mean(-1)  # (B, H, T)
        beta = beta / growth.clamp_min(1.0)[..., None]  # (B, H, T, S)
        out = bidirectional_gdn(
            *(_to_frames(t, T) for t in (q_u, k_u, v_u)), beta, decay, denominator=False,
            backend=self.cfg.gdn_backend,
        )  # (B, H, T, S, D) fp32
        out = _from_frames(out).to(v.dtype)  # (B, N, H, D)
        # 3. Decode back to world space.
        return apply_ucpe(out, ucpe.P, ucpe.cos, ucpe.sin, inverse_rope=True).flatten(2)


class SoftmaxCameraAttention(_CameraAttentionBase):
    def forward(
        self,
        x: torch.Tensor,
        grid: tuple[int, int, int],
        rope: tuple[torch.Tensor, torch.Tensor],
        ucpe: UcpeTransforms | None = None,
    ) -> torch.Tensor:
        """x (B, N, C), grid (T, h, w), rope tables 2 × (N, head_dim), ucpe (None: no camera) -> (B, N, C)."""
        H, bf16 = self.cfg.heads, self.cfg.softmax_in_bf16
        # 1. Main branch: RoPE then SDPA over every token.
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 × (B, N, C)
        q = _heads(self._norm(self.q_norm, q), H)
        k = _heads(self._norm(self.k_norm, k), H)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        main = _sdpa(q, k, _heads(v, H), None, bf16).flatten(2)  # (B, N, C)
        if ucpe is None:
            return self._finish(x, main, None)
        # 2. Camera branch: SDPA in UCPE ray space.
        q = _heads(self._norm(self.q_norm_cam, self.q_proj_cam(x)), H)
        k = _heads(self._norm(self.k_norm_cam, self.k_proj_cam(x)), H)
        v = _heads(self.v_proj_cam(x), H)
        q_u = downscale_to_reference_rms(q, apply_ucpe(q, ucpe.P_T, ucpe.cos, ucpe.sin))
        k_u = downscale_to_reference_rms(k, apply_ucpe(k, ucpe.P_inv, ucpe.cos, ucpe.sin))
        v_u = downscale_to_reference_rms(v, apply_ucpe(v, ucpe.P_inv, ucpe.cos, ucpe.sin))
        out = _sdpa(q_u.float(), k_u.float(), v_u.float(), self.cfg.cam_softmax_scale, bf16).to(v.dtype)
        cam = apply_ucpe(out, ucpe.P, ucpe.cos, ucpe.sin, inverse_rope=True).flatten(2)  # (B, N, C)
        return self._finish(x, main, cam)
