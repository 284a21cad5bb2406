"""Relative camera pose from two frames by direct photometric alignment (a yardstick, not a SLAM system).

Given frame A with its depth and frame B, find the rigid motion T = (R, t) taking camera-A coordinates to
camera-B coordinates (``X_b = R X_a + t``; with OpenCV c2w poses, ``T = inv(c2w_b) @ c2w_a``) that best
explains B: back-project A's pixels with the depth, move them, project into B, and minimise the mean
absolute colour difference over the pixels that land inside B. The motion is a 6-vector (axis-angle,
translation), optimised with Adam coarse to fine, batched over pairs. Its error on ground-truth pairs is
the floor any comparison with it must be read against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PoseEstimatorConfig", "estimate_relative_pose", "motion_magnitude", "pose_errors"]


@dataclass(frozen=True)
class PoseEstimatorConfig:
    """Attributes: levels (frame sides, coarse to fine), Adam iterations and learning rate per level."""

    levels: tuple[int, ...] = (32, 64)
    iterations: int = 120
    lr: float = 0.01

    def __post_init__(self) -> None:
        if not self.levels or min(self.levels) < 8 or self.iterations < 1 or self.lr <= 0:
            raise ValueError("levels must be >= 8 pixels, iterations >= 1 and lr > 0")


def _rotation(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle (N, 3) -> rotation (N, 3, 3), smooth at 0."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # (N, 1, 1)
    theta = torch.sqrt(theta2 + 1e-12)
    Kx = torch.zeros(w.shape[0], 3, 3, dtype=w.dtype, device=w.device)
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    Kx = Kx - Kx.transpose(1, 2)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(Kx)
    return eye + torch.sin(theta) / theta * Kx + (1 - torch.cos(theta)) / theta2.clamp(min=1e-12) * Kx @ Kx


def _level(rgb: torch.Tensor, depth: torch.Tensor | None, K: torch.Tensor, side: int):
    """Frames (N, H, W, 3) uint8 -> grey (N, 1, s, s) in [0, 1], nearest depth (N, s, s), scaled K."""
    N, H, W = rgb.shape[:3]
    x = rgb.permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 255.0  # (N, 1, H, W)
    x = F.interpolate(x, size=(side, side), mode="area")
    Ks = K.clone().float()
    Ks[:, 0] *= side / W
    Ks[:, 1] *= side / H
    d = None if depth is None else F.interpolate(depth[:, None].float(), size=(side, side), mode="nearest")[:, 0]
    return x, d, Ks


def estimate_relative_pose(rgb_a: torch.Tensor, depth_a: torch.Tensor, rgb_b: torch.Tensor, K: torch.Tensor,
                           config: PoseEstimatorConfig = PoseEstimatorConfig()) -> torch.Tensor:
    """T_ab (N, 4, 4) for frames A (N, H, W, 3) uint8 with depth (N, H, W) metres and frames B; K (N, 3, 3)."""
    N = rgb_a.shape[0]
    dev = rgb_a.device
    params = torch.zeros(N, 6, device=dev, requires_grad=True)  # (axis-angle, translation)
    for side in config.levels:  # 1. coarse to fine
        a, d, Ks = _level(rgb_a, depth_a, K.expand(N, 3, 3), side)
        b, _, _ = _level(rgb_b, None, K.expand(N, 3, 3), side)
        v, u = torch.meshgrid(torch.arange(side, device=dev) + 0.5, torch.arange(side, device=dev) + 0.5,
                              indexing="ij")
        pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, -1, 3)  # (1, P, 3)
        rays = pix @ torch.linalg.inv(Ks).transpose(1, 2)  # (N, P, 3) with z = 1
        valid_d = torch.isfinite(d) & (d > 0) & (d < 50)
        X = rays * torch.where(valid_d, d, torch.zeros_like(d)).reshape(N, -1, 1)  # (N, P, 3)
        opt = torch.optim.Adam([params], lr=config.lr)
        for _ in range(config.iterations):  # 2. Adam on the photometric L1
            R = _rotation(params[:, :3])
            Xb = X @ R.transpose(1, 2) + params[:, None, 3:]  # (N, P, 3)
            z = Xb[..., 2:3]
            uv = (Xb @ Ks.transpose(1, 2))[..., :2] / z.clamp(min=1e-3)  # (N, P, 2) pixels
            grid = (uv / side) * 2 - 1
            sampled = F.grid_sample(b, grid.view(N, side, side, 2), align_corners=False, padding_mode="border")
            inside = (grid.abs() <= 1).all(-1).view(N, 1, side, side) & (z.view(N, 1, side, side) > 0.05) \
                & valid_d[:, None]  # fmt: skip
            err = (sampled - a).abs() * inside
            loss = (err.sum(dim=(1, 2, 3)) / inside.sum(dim=(1, 2, 3)).clamp(min=1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        T = torch.eye(4, device=dev).repeat(N, 1, 1)
        T[:, :3, :3] = _rotation(params[:, :3])
        T[:, :3, 3] = params[:, 3:]
    return T


def pose_errors(T_est: torch.Tensor, T_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation error (degrees) and translation error (metres) per pair, (N,) each."""
    dR = T_est[:, :3, :3].transpose(1, 2) @ T_true[:, :3, :3]
    cos = ((dR.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)), (T_est[:, :3, 3] - T_true[:, :3, 3]).norm(dim=-1)


def motion_magnitude(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angle (degrees) and translation length (metres) of motions T (N, 4, 4)."""
    cos = ((T[:, :3, :3].diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)), T[:, :3, 3].norm(dim=-1)


