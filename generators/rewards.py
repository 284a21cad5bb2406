"""Rewards that score generated images against the ground-truth world they describe.

A caption of ours names a scene's surfaces and objects ("a room with green brick walls, a red ball and a
wooden table"), and the GT renderer shows what that scene looks like from any pose. So a text -> image
sample can be scored without a learnt judge: does it look, in colour, like *some* view of the described
scene? :class:`SceneColourReward` answers with the histogram intersection

    reward(image, views) = max over views v of  sum_bins min(h(image), h(v))

of joint RGB histograms (``bins`` per channel, each a distribution over the pixels): 1 when the image has
exactly a view's colours, 0 when no colour is shared. The max over views (a trajectory's frames of the
scene) accepts any plausible viewpoint: an image of the wall alone scores as high as its GT view of the
wall. It checks colour only (walls, floor and object colours), not layout or geometry, and hard bins make it
piecewise constant: it ranks samples (as Sol-RL's contrastive selection needs), it gives no gradient.

    reward = SceneColourReward()
    r = reward(images, views)  # images (B, 3, H, W), views (B, V, 3, H, W), both in [0, 1] -> (B,)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ColourRewardConfig", "SceneColourReward", "colour_histograms"]


@dataclass(frozen=True)
class ColourRewardConfig:
    """Attributes:
    bins: histogram bins per RGB channel (bins**3 joint bins).
    size: images and views are area-resized to size x size before binning (0: as given), which averages
        texture noise away and makes the reward independent of the resolution.
    """

    bins: int = 6
    size: int = 32

    def __post_init__(self) -> None:
        if not 2 <= self.bins <= 32:
            raise ValueError(f"ColourRewardConfig.bins must lie in 2..32, got {self.bins}")
        if self.size < 0:
            raise ValueError(f"ColourRewardConfig.size must be >= 0, got {self.size}")


def colour_histograms(images: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, bins**3) float32 joint RGB histograms, each summing to 1."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    q = (images.float().clamp(0, 1) * bins).long().clamp_max(bins - 1)  # (N, 3, H, W)
    flat = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # (N, H, W) joint bin index
    n = flat.shape[0]
    hist = torch.zeros(n, bins**3, device=images.device)
    hist.scatter_add_(1, flat.reshape(n, -1), torch.ones(n, flat[0].numel(), device=images.device))
    return hist / flat[0].numel()


class SceneColourReward:
    """``reward(images, views) -> (B,)`` in [0, 1]: the module doc's histogram intersection, best view."""

    def __init__(self, config: ColourRewardConfig = ColourRewardConfig()) -> None:
        self.config = config

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.size
        if s == 0 or tuple(x.shape[-2:]) == (s, s):
            return x
        return F.interpolate(x.float(), size=(s, s), mode="area")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), views (B, V, 3, H', W') of each image's scene, both float in [0, 1]."""
        if images.ndim != 4 or views.ndim != 5 or views.shape[0] != images.shape[0] or views.shape[2] != 3:
            raise ValueError(f"images must be (B, 3, H, W) and views (B, V, 3, H, W) with the same B, got "
                             f"{tuple(images.shape)} and {tuple(views.shape)}")
        for name, x in (("images", images), ("views", views)):
            if not x.is_floating_point():
                raise ValueError(f"{name} must be float in [0, 1], got {x.dtype}")
        B, V = views.shape[:2]
        bins = self.config.bins
        h_img = colour_histograms(self._resized(images), bins)  # (B, K)
        h_views = colour_histograms(self._resized(views.flatten(0, 1)), bins).view(B, V, -1)  # (B, V, K)
        return torch.minimum(h_img[:, None], h_views).sum(-1).amax(1)  # (B,)
