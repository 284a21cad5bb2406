"""UCPE (unified camera positional encoding) for SANA-WM's camera branch.

Each latent token gets a 4×4 ray←world matrix P from its pinhole ray and the camera pose:

1. Ray in the camera frame: pixel (u, v) of the latent grid (u, v = 0, 1, …), focal lengths and
   principal point divided by the patch size, unit direction d = (x, y, 1)/√(1 + x² + y²) with
   x = (u − cx)/fx, y = (v − cy)/fy (the unified camera model with ξ = 0).
2. Ray frame in the world: z = R d, x = normalise(R_y × z) with R_y the camera's y axis, y = z × x.
3. P = [[R_rayᵀ, −R_rayᵀ t], [0, 1]] with (R, t) the camera-to-world pose.

In every head, the first half of the channels is transformed in groups of 4 (queries by Pᵀ, keys and
values by P⁻¹, outputs by P), the second half is rotated by a slice of the main RoPE (inverse rotation
on outputs). Transformed tensors are scaled down to at most their pre-transform RMS.

`camera_conditions` (B, T, 20): the flattened 4×4 camera-to-world matrix (row-major) then fx, fy, cx, cy
in latent-grid pixels (before patching).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from sana_world.nn.rope import apply_rotary

__all__ = [
    "UcpeTransforms",
    "apply_ucpe",
    "camera_ray_matrices",
    "cam_rope_tables",
    "downscale_to_reference_rms",
    "invert_se3",
    "pinhole_rays",
    "prepare_ucpe",
]


class UcpeTransforms(NamedTuple):
    """Per-token matrices (B, N, 4, 4): P decodes outputs, P_T encodes queries, P_inv keys/values;
    cos, sin (N, head_dim/2) rotate the RoPE half of each head."""

    P: torch.Tensor
    P_T: torch.Tensor
    P_inv: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


def pinhole_rays(
    fx: torch.Tensor, fy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Unit camera-frame rays (..., H, W, 3) for intrinsics of shape (...) on an H×W pixel grid (y down)."""
    rows = torch.arange(height, device=fx.device, dtype=fx.dtype)
    cols = torch.arange(width, device=fx.device, dtype=fx.dtype)
    x = (cols - cx[..., None, None]) / fx[..., None, None]  # (..., 1, W)
    y = (rows[:, None] - cy[..., None, None]) / fy[..., None, None]  # (..., H, 1)
    x, y = torch.broadcast_tensors(x, y)  # (..., H, W)
    r2 = x * x + y * y
    gamma = torch.sqrt(1 + r2) / (1 + r2)  # UCM with xi = 0: 1/√(1 + r²)
    return torch.stack([gamma * x, gamma * y, gamma], dim=-1)


def camera_ray_matrices(
    camera_conditions: torch.Tensor, grid: tuple[int, int, int], patch_size: tuple[int, int, int]
) -> torch.Tensor:
    """(B, T, 20) camera conditions -> ray←world matrices P (B, T·h·w, 4, 4) on the token grid (T, h, w)."""
    B, T, n = camera_conditions.shape
    if n != 20 or T != grid[0]:
        shape = tuple(camera_conditions.shape)
        raise ValueError(f"camera_conditions must be (B, T={grid[0]}, 20), got {shape}")
    _, h, w = grid
    c2w = camera_conditions[..., :16].reshape(B, T, 4, 4)
    fx, fy, cx, cy = camera_conditions[..., 16:20].unbind(-1)  # 4 × (B, T)
    p_h, p_w = patch_size[1], patch_size[2]
    d_cam = pinhole_rays(fx / p_w, fy / p_h, cx / p_w, cy / p_h, h, w)  # (B, T, h, w, 3)
    R, t = c2w[:, :, None, None, :3, :3], c2w[:, :, None, None, :3, 3]  # (B, T, 1, 1, 3, 3), (B, T, 1, 1, 3)
    d_world = (R @ d_cam[..., None])[..., 0]  # (B, T, h, w, 3)
    cam_y = R[..., :, 1].expand_as(d_world)  # camera y axis in the world
    z_ray = F.normalize(d_world, dim=-1, eps=1e-6)
    x_ray = F.normalize(torch.linalg.cross(cam_y, z_ray, dim=-1), dim=-1, eps=1e-6)
    y_ray = F.normalize(torch.linalg.cross(z_ray, x_ray, dim=-1), dim=-1, eps=1e-6)
    R_w2r = torch.stack([x_ray, y_ray, z_ray], dim=-2)  # (B, T, h, w, 3, 3): rows are the ray axes
    t_w2r = -(R_w2r @ t[..., None])  # (B, T, h, w, 3, 1)
    bottom = torch.eye(4, device=c2w.device, dtype=c2w.dtype)[3:].expand(B, T, h, w, 1, 4)  # no host copy
    P = torch.cat([torch.cat([R_w2r, t_w2r], dim=-1), bottom], dim=-2)  # (B, T, h, w, 4, 4)
    # 1. Rays that came out NaN (degenerate poses) get the identity, as diffusers does.
    bad = torch.isnan(d_world).any(-1)[..., None, None]
    P = torch.where(bad, torch.eye(4, device=P.device, dtype=P.dtype), P)
    return P.reshape(B, T * h * w, 4, 4)


def invert_se3(M: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of rigid transforms (..., 4, 4): [[Rᵀ, −Rᵀ t], [0, 1]]."""
    R_inv = M[..., :3, :3].transpose(-1, -2)
    t_inv = -(R_inv @ M[..., :3, 3:])  # (..., 3, 1)
    bottom = torch.zeros_like(M[..., 3:, :])
    bottom[..., 3] = 1.0
    return torch.cat([torch.cat([R_inv, t_inv], dim=-1), bottom], dim=-2)


def cam_rope_tables(cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slice main 3-D RoPE tables (..., N, head_dim) down to (..., N, head_dim/2) for the camera branch.

    Keeps the lowest frequency pairs of each axis band, with the [t, h, w] split a head of head_dim/2
    would have (diffusers `_slice_rope_for_cam`): frequencies are not recomputed for the smaller size.
    """
    half = head_dim // 2
    t_pairs, h_pairs = head_dim // 2 - 2 * (head_dim // 6), head_dim // 6
    new_t, new_hw = half // 2 - 2 * (half // 6), half // 6
    starts_sizes = ((0, new_t), (t_pairs, new_hw), (t_pairs + h_pairs, new_hw))  # in channel pairs
    idx = torch.cat([torch.arange(2 * s, 2 * (s + n), device=cos.device) for s, n in starts_sizes])
    return cos[..., idx], sin[..., idx]


def prepare_ucpe(
    camera_conditions: torch.Tensor,
    grid: tuple[int, int, int],
    patch_size: tuple[int, int, int],
    rope_cos: torch.Tensor,
    rope_sin: torch.Tensor,
    head_dim: int,
) -> UcpeTransforms:
    """All camera-branch transforms for one forward pass, shared by every block. The ray geometry runs in
    fp32 under any autocast (CPU autocast would take its matmuls to bf16 and its cross products not)."""
    with torch.autocast(camera_conditions.device.type, enabled=False):
        P = camera_ray_matrices(camera_conditions.float(), grid, patch_size)  # (B, N, 4, 4)
    cos, sin = cam_rope_tables(rope_cos, rope_sin, head_dim)
    return UcpeTransforms(P, P.transpose(-1, -2), invert_se3(P), cos, sin)


def apply_ucpe(
    x: torch.Tensor, matrix: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse_rope: bool = False
) -> torch.Tensor:
    """x (B, N, H, D): first D/2 channels in groups of 4 mapped by matrix (B, N, 4, 4), last D/2 rotated
    by RoPE tables (N, D/2) (inverse rotation if `inverse_rope`). Returns (B, N, H, D) in x's dtype."""
    B, N, H, D = x.shape
    projected, rotated = x.split(D // 2, dim=-1)  # 2 × (B, N, H, D/2)
    groups = projected.reshape(B, N, H, D // 8, 4)  # (B, N, H, D/8, 4)
    projected = torch.einsum("bnij,bnhkj->bnhki", matrix.to(x.dtype), groups).reshape(B, N, H, D // 2)
    rotated = apply_rotary(rotated, cos, -sin if inverse_rope else sin)
    return torch.cat([projected, rotated], dim=-1)


def downscale_to_reference_rms(
    reference: torch.Tensor, transformed: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Scale `transformed` down (never up) so its RMS over the last dim is at most `reference`'s."""
    ref_rms = reference.square().mean(-1, keepdim=True).add(eps).sqrt()
    new_rms = transformed.square().mean(-1, keepdim=True).add(eps).sqrt()
    return transformed * (ref_rms / new_rms.clamp_min(eps)).clamp(max=1.0)
