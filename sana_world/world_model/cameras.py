"""SANA-WM camera inputs: ``camera_conditions`` and ``chunk_plucker`` from poses + intrinsics or the key DSL.

The two tensors are what diffusers' ``SanaWMPipeline`` hands its transformer (``_build_camera_kwargs`` on
top of ``cam_utils.prepare_camera``); this module rebuilds them with :mod:`sana_world.camera`, batched and on
any device, and matches diffusers to float32 rounding for the same inputs.

Layout, for a trajectory of F = stride * k + 1 frames (stride = VAE temporal stride, 8 for LTX-2):

- Poses are made relative to frame 0: ``rel_f = inv(c2w_0) @ c2w_f``, and ``rel_0`` is set to the exact
  identity. Intrinsics are rescaled from image pixels (H, W) to the latent grid (h, w).
- ``camera_conditions`` (B, T_lat, 20), T_lat = k + 1: for latent frame t, raw frame ``stride * t`` gives
  its relative c2w flattened row-major (16) followed by ``[fx, fy, cx, cy]`` on the latent grid (4).
- ``chunk_plucker`` (B, 6 * stride, T_lat, h, w): latent frame t stacks the ``stride`` raw frames starting at
  ``max(0, stride * t - stride + 1)`` (the last frame repeats where the trajectory is shorter), each a
  6-channel Plücker map (unit world direction, then moment origin x direction); channel ``6 * j + c`` is
  channel c of the j-th frame of the chunk.
- The Plücker maps sample rays at integer latent-pixel coordinates (x, y), not at pixel centres; since
  :func:`sana_world.camera.camera_rays` samples at centres (x + 0.5, y + 0.5), we shift cx, cy by +0.5.

Intrinsics may be ``(..., 3, 3)`` matrices or ``(..., 4)`` ``[fx, fy, cx, cy]`` vectors (as diffusers
accepts); skew is dropped as diffusers drops it. All maths runs in float32 on the poses' device (on CUDA,
keep TF32 matmuls off for bit-level parity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sana_world.camera import as_tensor, plucker_rays, relative_poses, scale_intrinsics
from sana_world.controllers.keys import (
    DSL_PITCH_LIMIT_DEG,
    DSL_ROTATION_SPEED_DEG,
    DSL_TRANSLATION_SPEED,
    action_string_to_c2w,
)

Tensor = torch.Tensor
ArrayLike = Tensor | np.ndarray | Sequence

DEFAULT_TEMPORAL_STRIDE = 8  # LTX-2 VAE frames per latent frame
PLUCKER_CHANNELS = 6  # direction (3) + moment (3)
POSE_CONDITION_DIM = 16 + 4  # flattened relative c2w + [fx, fy, cx, cy]
_RIGID_ATOL = 1e-3


# ---------------------------------------------------------------------------------------------------------
# Frame counts
# ---------------------------------------------------------------------------------------------------------


def snap_num_frames(n: int, stride: int = DEFAULT_TEMPORAL_STRIDE, *, upper_bound: int | None = None) -> int:
    """The frame count ``stride * k + 1`` nearest to ``n`` (ties go up), at least 1.

    With ``upper_bound``, a snap above it falls back to the count below ``n``. Same rule as diffusers'
    ``cam_utils.snap_num_frames``.
    """
    _check_positive_int(stride, "stride")
    if n < 1:
        return 1
    below = n - (n - 1) % stride
    if below == n:
        return n
    above = below + stride
    snapped = below if n - below < above - n else above
    if upper_bound is not None and snapped > upper_bound:
        snapped = below
    return max(snapped, 1)


def latent_num_frames(num_frames: int, stride: int = DEFAULT_TEMPORAL_STRIDE) -> int:
    """Latent frames T_lat of a ``stride * k + 1`` frame video; raises ``ValueError`` for other counts."""
    _check_positive_int(stride, "stride")
    if num_frames < 1 or (num_frames - 1) % stride != 0:
        raise ValueError(
            f"frame count must be {stride}k+1 (1, {stride + 1}, {2 * stride + 1}, ...), got {num_frames}; "
            f"snap_num_frames({num_frames}) = {snap_num_frames(num_frames, stride)} (see trim_trajectory)"
        )
    return (num_frames - 1) // stride + 1


# ---------------------------------------------------------------------------------------------------------
# The transformer's camera inputs
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WMCameraInputs:
    """SANA-WM transformer camera kwargs for one batch of trajectories."""

    camera_conditions: Tensor  # (B, T_lat, 20)
    chunk_plucker: Tensor  # (B, 6 * stride, T_lat, h, w)

    def __post_init__(self) -> None:
        cc, cp = self.camera_conditions, self.chunk_plucker
        if cc.ndim != 3 or cc.shape[-1] != POSE_CONDITION_DIM:
            raise ValueError(
                f"camera_conditions must be (B, T_lat, {POSE_CONDITION_DIM}), got {tuple(cc.shape)}"
            )
        if cp.ndim != 5 or cp.shape[1] == 0 or cp.shape[1] % PLUCKER_CHANNELS != 0:
            raise ValueError(f"chunk_plucker must be (B, 6 * stride, T_lat, h, w), got {tuple(cp.shape)}")
        if (cp.shape[0], cp.shape[2]) != (cc.shape[0], cc.shape[1]):
            raise ValueError(
                f"batch / latent frames disagree: camera_conditions {tuple(cc.shape)}, "
                f"chunk_plucker {tuple(cp.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return int(self.camera_conditions.shape[0])

    @property
    def num_latent_frames(self) -> int:
        return int(self.camera_conditions.shape[1])

    @property
    def temporal_stride(self) -> int:
        return int(self.chunk_plucker.shape[1]) // PLUCKER_CHANNELS

    @property
    def latent_size(self) -> tuple[int, int]:
        return int(self.chunk_plucker.shape[-2]), int(self.chunk_plucker.shape[-1])

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> WMCameraInputs:
        """Both tensors moved / cast (the pipeline casts them to the transformer's dtype)."""
        return WMCameraInputs(self.camera_conditions.to(device=device, dtype=dtype),
                              self.chunk_plucker.to(device=device, dtype=dtype))

    def repeat_for_cfg(self) -> WMCameraInputs:
        """Batch doubled as ``[x, x]`` for classifier-free guidance, as the pipeline does."""
        return WMCameraInputs(torch.cat([self.camera_conditions] * 2), torch.cat([self.chunk_plucker] * 2))

    def as_kwargs(self) -> dict[str, Tensor]:
        """``{"camera_conditions": ..., "chunk_plucker": ...}`` for ``SanaWMTransformer3DModel.forward``."""
        return {"camera_conditions": self.camera_conditions, "chunk_plucker": self.chunk_plucker}


def prepare_camera_inputs(
    c2w: ArrayLike,
    K: ArrayLike,
    image_size: tuple[int, int],
    latent_size: tuple[int, int],
    temporal_stride: int = DEFAULT_TEMPORAL_STRIDE,
    *,
    device: torch.device | str | None = None,
) -> WMCameraInputs:
    """Camera inputs of trajectories ``c2w`` (B, F, 4, 4) or (F, 4, 4), F = ``temporal_stride * k + 1``.

    ``K`` holds intrinsics in pixels of ``image_size`` (H, W) (already cropped, see :func:`crop_intrinsics`)
    as (..., 3, 3) or (..., 4) ``[fx, fy, cx, cy]``; its leading dims broadcast right-aligned against
    (B, F): (3, 3) for all frames, (F, 3, 3) per frame, (B, 1, 3, 3) per trajectory, (B, F, 3, 3) fully.
    ``latent_size`` (h, w) is the transformer's grid (``H // 32, W // 32`` for LTX-2). The result lives on
    ``device`` (default: the device of ``c2w``, CPU for arrays) in float32.
    """
    # 1. validate and canonicalise: poses (B, F, 4, 4), intrinsics (B, F, 3, 3), float32
    H, W = _check_size(image_size, "image_size")
    h, w = _check_size(latent_size, "latent_size")
    _check_positive_int(temporal_stride, "temporal_stride")
    poses = _as_poses(c2w, device)  # (B, F, 4, 4)
    B, F = poses.shape[:2]
    T = latent_num_frames(F, temporal_stride)
    Ks = _broadcast_intrinsics(intrinsics_to_matrix(as_tensor(K).to(poses.device)), (B, F))  # (B, F, 3, 3)

    # 2. poses relative to frame 0 (frame 0 itself the exact identity), intrinsics on the latent grid
    rel = relative_poses(poses)  # (B, F, 4, 4)
    rel[:, 0] = torch.eye(4, dtype=rel.dtype, device=rel.device)
    K_lat = scale_intrinsics(Ks, w / float(W), h / float(H))  # (B, F, 3, 3)

    # 3. camera_conditions: raw frames 0, stride, 2 * stride, ...
    t_idx = torch.arange(0, F, temporal_stride, device=poses.device)  # (T,)
    pose_part = rel[:, t_idx].reshape(B, T, 16)  # (B, T, 16) row-major
    camera_conditions = torch.cat([pose_part, intrinsics_to_vec4(K_lat[:, t_idx])], dim=-1)  # (B, T, 20)

    # 4. Plücker maps of every frame; rays at integer latent-pixel coordinates, hence the half-pixel shift
    K_ray = K_lat.clone()
    K_ray[..., 0, 2] += 0.5
    K_ray[..., 1, 2] += 0.5
    maps = plucker_rays(rel, K_ray, h, w)  # (B, F, 6, h, w)

    # 5. chunk t = frames max(0, stride * t - stride + 1) + j, j < stride, the last frame repeating past F
    starts = (t_idx - (temporal_stride - 1)).clamp(min=0)  # (T,)
    offsets = torch.arange(temporal_stride, device=poses.device)  # (s,)
    chunk_idx = (starts[:, None] + offsets).clamp(max=F - 1)  # (T, s)
    chunks = maps[:, chunk_idx]  # (B, T, s, 6, h, w)
    chunk_plucker = chunks.reshape(B, T, temporal_stride * PLUCKER_CHANNELS, h, w).permute(0, 2, 1, 3, 4)
    return WMCameraInputs(camera_conditions.contiguous(), chunk_plucker.contiguous())


def camera_inputs_from_actions(
    action: str | Sequence[str],
    K: ArrayLike,
    image_size: tuple[int, int],
    latent_size: tuple[int, int],
    *,
    num_frames: int | None = None,
    temporal_stride: int = DEFAULT_TEMPORAL_STRIDE,
    translation_speed: float = DSL_TRANSLATION_SPEED,
    rotation_speed_deg: float = DSL_ROTATION_SPEED_DEG,
    pitch_limit_deg: float = DSL_PITCH_LIMIT_DEG,
    device: torch.device | str | None = None,
) -> WMCameraInputs:
    """Camera inputs of key-DSL strings (``"w-80,jw-40,w-40"``), as the pipeline builds them from ``action``.

    A string of A action frames gives A + 1 poses; like the pipeline, ``num_frames`` (default: all poses) is
    capped at A + 1 and snapped to ``stride * k + 1`` without exceeding it (:func:`trim_trajectory`).
    A sequence of strings gives a batch; their snapped frame counts must agree. ``K`` (pixels of
    ``image_size``) is one camera, (3, 3) or (4,), or per frame, (F', 3, 3) or (F', 4) with F' at least the
    snapped count (trimmed to it), shared by the batch.
    """
    # 1. one trajectory per string, through our key DSL
    actions = [action] if isinstance(action, str) else list(action)
    if not actions:
        raise ValueError("no action strings given")
    trajectories = [action_string_to_c2w(a, translation_speed, rotation_speed_deg, pitch_limit_deg)
                    for a in actions]  # each (A + 1, 4, 4)

    # 2. the pipeline's frame-count rule per trajectory; the batch must agree
    trimmed = [trim_trajectory(c2w, K, num_frames, temporal_stride) for c2w in trajectories]
    counts = sorted({int(c.shape[0]) for c, _ in trimmed})
    if len(counts) > 1:
        raise ValueError(
            f"action strings give different frame counts {counts}; pass num_frames <= {counts[0]}"
        )
    c2w = torch.stack([c for c, _ in trimmed])  # (B, F, 4, 4)
    # 3. K stays (3, 3) / (F, 3, 3) (or vec4) and broadcasts over the batch
    return prepare_camera_inputs(c2w, trimmed[0][1], image_size, latent_size, temporal_stride, device=device)


def trim_trajectory(
    c2w: ArrayLike,
    K: ArrayLike,
    num_frames: int | None = None,
    temporal_stride: int = DEFAULT_TEMPORAL_STRIDE,
) -> tuple[Tensor, Tensor]:
    """The pipeline's frame-count rule: ``(c2w[:n], K)`` with ``n = snap(min(num_frames, F))`` (at most F).

    ``c2w`` is (F, 4, 4); a per-frame ``K`` ((F', 3, 3) or (F', 4) with F' >= n) is cut to its first n
    frames, a single K ((3, 3) or (4,)) is returned as is. ``num_frames=None`` keeps all F poses.
    """
    poses = as_tensor(c2w)
    if poses.ndim != 3 or poses.shape[-2:] != (4, 4) or poses.shape[0] < 1:
        raise ValueError(f"c2w must be (F, 4, 4) with F >= 1, got {tuple(poses.shape)}")
    F = int(poses.shape[0])
    n = F if num_frames is None else min(int(num_frames), F)
    n = snap_num_frames(n, temporal_stride, upper_bound=F)
    Kt = as_tensor(K)
    if Kt.shape in ((3, 3), (4,)):
        return poses[:n], Kt
    if Kt.ndim in (2, 3) and Kt.shape[1:] in ((3, 3), (4,)) and Kt.shape[0] >= n:
        return poses[:n], Kt[:n]
    raise ValueError(f"K must be (3, 3), (4,), (F' >= {n}, 3, 3) or (F' >= {n}, 4), got {tuple(Kt.shape)}")


# ---------------------------------------------------------------------------------------------------------
# Intrinsics: forms, resize + centre crop
# ---------------------------------------------------------------------------------------------------------


def intrinsics_to_matrix(K: ArrayLike) -> Tensor:
    """(..., 3, 3) pinhole matrices from (..., 3, 3) or (..., 4) ``[fx, fy, cx, cy]``."""
    Kt = as_tensor(K)
    if Kt.ndim >= 2 and Kt.shape[-2:] == (3, 3):
        return Kt
    if Kt.ndim >= 1 and Kt.shape[-1] == 4:
        fx, fy, cx, cy = Kt.unbind(-1)
        z, o = torch.zeros_like(fx), torch.ones_like(fx)
        return torch.stack([fx, z, cx, z, fy, cy, z, z, o], dim=-1).reshape(*Kt.shape[:-1], 3, 3)
    raise ValueError(
        f"intrinsics must be (..., 3, 3) matrices or (..., 4) [fx, fy, cx, cy], got {tuple(Kt.shape)}"
    )


def intrinsics_to_vec4(K: ArrayLike) -> Tensor:
    """(..., 4) ``[fx, fy, cx, cy]`` from (..., 3, 3) or (..., 4); skew is dropped."""
    Km = intrinsics_to_matrix(K)
    return torch.stack([Km[..., 0, 0], Km[..., 1, 1], Km[..., 0, 2], Km[..., 1, 2]], dim=-1)


@dataclass(frozen=True)
class CropGeometry:
    """Aspect-preserving resize of ``src_size`` to cover ``target_size``, then a centre crop; sizes (H, W)."""

    src_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_offset: tuple[int, int]  # (top, left) in the resized image
    target_size: tuple[int, int]


def resize_crop_geometry(src_size: tuple[int, int], target_size: tuple[int, int]) -> CropGeometry:
    """The resize + centre crop of diffusers' ``resize_and_center_crop`` (which SANA-WM was trained with)."""
    # 1. smallest uniform scale covering the target; rounded sizes never below the target
    sh, sw = _check_size(src_size, "src_size")
    th, tw = _check_size(target_size, "target_size")
    scale = max(th / sh, tw / sw)
    rh, rw = max(th, int(round(sh * scale))), max(tw, int(round(sw * scale)))
    # 2. centre crop, rounding the offset down
    return CropGeometry((sh, sw), (rh, rw), ((rh - th) // 2, (rw - tw) // 2), (th, tw))


def crop_intrinsics(K: ArrayLike, geometry: CropGeometry | tuple[int, int],
                    target_size: tuple[int, int] | None = None) -> Tensor:
    """Intrinsics of the source image (..., 3, 3) or (..., 4) moved to the resized + cropped image.

    Pass a :class:`CropGeometry`, or ``src_size`` and ``target_size`` (H, W). Returns the input's form.
    """
    if not isinstance(geometry, CropGeometry):
        if target_size is None:
            raise ValueError("crop_intrinsics needs a CropGeometry or both src_size and target_size")
        geometry = resize_crop_geometry(geometry, target_size)
    elif target_size is not None:
        raise ValueError("pass either a CropGeometry or src_size + target_size, not both")
    Kt = as_tensor(K)
    is_vec4 = not (Kt.ndim >= 2 and Kt.shape[-2:] == (3, 3))
    (sh, sw), (rh, rw), (top, left) = geometry.src_size, geometry.resized_size, geometry.crop_offset
    # 1. scale with the resize, 2. shift the principal point by the crop
    out = scale_intrinsics(intrinsics_to_matrix(Kt), rw / sw, rh / sh)
    out[..., 0, 2] -= left
    out[..., 1, 2] -= top
    return intrinsics_to_vec4(out) if is_vec4 else out


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------


def _check_positive_int(x: int, name: str) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name} must be a positive int, got {x!r}")


def _check_size(size: tuple[int, int], name: str) -> tuple[int, int]:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"{name} must be (height, width), got {size!r}")
    for s in size:
        _check_positive_int(s, name)
    return int(size[0]), int(size[1])


def _as_poses(c2w: ArrayLike, device: torch.device | str | None) -> Tensor:
    """(B, F, 4, 4) float32 rigid camera-to-world poses from (F, 4, 4) or (B, F, 4, 4)."""
    poses = as_tensor(c2w)
    if device is not None:
        poses = poses.to(device)
    if poses.ndim not in (3, 4) or poses.shape[-2:] != (4, 4) or 0 in poses.shape:
        raise ValueError(f"c2w must be (F, 4, 4) or (B, F, 4, 4) with B, F >= 1, got {tuple(poses.shape)}")
    poses = poses.unsqueeze(0) if poses.ndim == 3 else poses
    if not bool(torch.isfinite(poses).all()):
        raise ValueError("c2w has non-finite entries")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=poses.device)
    R = poses[..., :3, :3]  # (B, F, 3, 3)
    eye = torch.eye(3, device=poses.device)
    bottom_ok = torch.allclose(poses[..., 3, :], bottom.expand_as(poses[..., 3, :]), atol=_RIGID_ATOL)
    rotation_ok = torch.allclose(R.transpose(-1, -2) @ R, eye.expand_as(R), atol=_RIGID_ATOL)
    if not (bool(bottom_ok) and bool(rotation_ok)):
        raise ValueError("c2w must be rigid transforms: orthonormal rotation and last row [0, 0, 0, 1]")
    return poses


def _broadcast_intrinsics(Km: Tensor, batch_frames: tuple[int, int]) -> Tensor:
    """(B, F, 3, 3) from (..., 3, 3) whose leading dims broadcast right-aligned against (B, F)."""
    lead = tuple(Km.shape[:-2])
    try:
        if len(lead) > 2:
            raise RuntimeError
        torch.broadcast_shapes(lead, batch_frames)
    except RuntimeError:
        raise ValueError(
            f"K's leading dims {lead} do not broadcast against (B, F) = {batch_frames}: use (3, 3), "
            "(F, 3, 3), (B, 1, 3, 3) or (B, F, 3, 3) (or the same with [fx, fy, cx, cy] in place of 3 x 3)"
        ) from None
    if not bool(torch.isfinite(Km).all()) or not bool(((Km[..., 0, 0] > 0) & (Km[..., 1, 1] > 0)).all()):
        raise ValueError("K must be finite with positive focal lengths fx, fy")
    return Km.expand(*batch_frames, 3, 3)
