"""Image metrics on uint8 frames: PSNR and SSIM per frame, batched, in torch (CPU or GPU).

Both take frames (..., H, W, 3) uint8 (or float on the 0..255 scale) and return one value per frame
(the leading dims). SSIM is the standard Gaussian-window form (11 × 11, σ = 1.5, K1 = 0.01, K2 = 0.03,
data range 255) averaged over pixels and channels, with 'valid' borders.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"frames must share a shape (..., H, W, 3), got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.float(), b.to(a.device).float()


def psnr(a: torch.Tensor, b: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """PSNR (dB) per frame, capped at ``max_db`` (identical frames)."""
    x, y = _pair(a, b)
    mse = (x - y).square().mean(dim=(-3, -2, -1))  # (...)
    return (10.0 * torch.log10(255.0**2 / mse.clamp(min=1e-12))).clamp(max=max_db)


def _gaussian(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per frame (module doc)."""
    x, y = _pair(a, b)
    x, y = x.double(), y.double()  # the variance terms cancel badly in fp32 (E[x²] - E[x]² at 255 scale)
    lead = x.shape[:-3]
    H, W = x.shape[-3:-1]
    if min(H, W) < window:
        raise ValueError(f"frames of {H}x{W} are smaller than the SSIM window {window}")
    x = x.reshape(-1, H, W, 3).permute(0, 3, 1, 2).reshape(-1, 1, H, W)  # (N·3, 1, H, W)
    y = y.reshape(-1, H, W, 3).permute(0, 3, 1, 2).reshape(-1, 1, H, W)
    g = _gaussian(window, sigma, x.device).double()
    kh, kv = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)  # separable: two 1-D passes equal the 2-D window

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh), kv)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    per = s.mean(dim=(1, 2, 3)).view(-1, 3).mean(dim=1)  # (N,)
    per = per.float()
    return per.view(lead) if lead else per.view(())


def mean_finite(values: torch.Tensor) -> float:
    """Mean of the finite entries (NaN if none)."""
    v = values[torch.isfinite(values)]
    return float(v.mean()) if v.numel() else math.nan
