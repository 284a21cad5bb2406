"""The one small protocol every renderer implements, so envs and data code never know which one they hold.

Conventions shared by all renderers:
- ``c2w`` (B, 4, 4) camera-to-world in OpenCV axes, ``K`` (B, 3, 3) or (3, 3) pinhole intrinsics in pixels.
- ``depth`` is z-depth along the optical axis (not ray length), ``inf`` where a ray hits nothing.
- ``ids`` is the index of the hit object in ``SceneSpec.objects``, ``-1`` for structure (walls, floors,
  ceilings), ``-2`` for no hit.
- Surfaces are shaded by :func:`sana_world.render.shading.shade` from world position, normal and the
  hit primitive (index into ``SceneSpec.primitives()``), so two renderers that find the same surfaces
  produce the same colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from sana_world.worlds.spec import SceneSpec

ID_STRUCTURE = -1
ID_MISS = -2


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # (B, H, W, 3) uint8
    depth: torch.Tensor  # (B, H, W) float32, z-depth, inf on miss
    normal: torch.Tensor  # (B, H, W, 3) float32 world-space unit normals facing the camera
    ids: torch.Tensor  # (B, H, W) int32 object ids (see module doc)

    def to(self, device: torch.device | str) -> RenderOutput:
        return RenderOutput(self.rgb.to(device), self.depth.to(device), self.normal.to(device), self.ids.to(device))

    def __getitem__(self, i: int | slice) -> RenderOutput:
        return RenderOutput(self.rgb[i], self.depth[i], self.normal[i], self.ids[i])


@runtime_checkable
class Renderer(Protocol):
    """Renders a scene from a batch of cameras."""

    def render(self, scene: SceneSpec, c2w: torch.Tensor, K: torch.Tensor, height: int, width: int) -> RenderOutput:
        ...


def area_average(frames: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) area-averaged to (..., h, w, 3) on their device, rounded half up; ``size``
    is ``(h, w)`` or one side of a square frame, and divides H and W (the caller checks). A supersampled
    render's box filter (``PoolConfig.supersample``, ``GTConfig.supersample``) and what
    ``envs.wrappers.DownsampleRGB`` shows an agent."""
    *lead, H, W, c = frames.shape
    h, w = (size, size) if isinstance(size, int) else size
    mean = frames.reshape(*lead, h, H // h, w, W // w, c).to(torch.float32).mean(dim=(-4, -2))  # (..., h, w, C)
    return torch.floor(mean + 0.5).to(torch.uint8)


def downsample_supersampled(out: RenderOutput, s: int) -> RenderOutput:
    """A render of s x s rays a pixel as frames of 1/s its side (``GTConfig.supersample``): rgb the box filter
    of each s x s block (:func:`area_average`), depth, normal and ids those of the block's ray (s // 2, s // 2),
    the pixel centre for odd s (for even s half a sub-pixel right of and below it). ``s`` = 1: ``out``."""
    if s == 1:
        return out
    h, w = out.rgb.shape[-3] // s, out.rgb.shape[-2] // s
    o = s // 2
    return RenderOutput(area_average(out.rgb, (h, w)), out.depth[:, o::s, o::s].contiguous(),
                        out.normal[:, o::s, o::s].contiguous(), out.ids[:, o::s, o::s].contiguous())
