"""Camera geometry: SE(3) poses, pinhole intrinsics, rays, Plücker maps and 6-DoF twist integration.

Conventions (the same as SANA-WM and OpenCV):
- A pose is a camera-to-world matrix ``c2w`` of shape (..., 4, 4).
- Camera axes: +x right, +y down, +z forward. The world shares them at the identity pose, so the world's
  "up" is -Y and the floor of a procedural room is the plane y = 0 with the room above it (y < 0).
- Intrinsics ``K`` are (..., 3, 3) pinhole matrices in pixels; pixel centres sit at integer + 0.5.

Every function accepts batched torch tensors; numpy arrays are converted and returned as torch tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor

WORLD_UP = (0.0, -1.0, 0.0)


def as_tensor(x: Tensor | np.ndarray | list | tuple, dtype: torch.dtype = torch.float32) -> Tensor:
    """Return ``x`` as a torch tensor of ``dtype`` (no copy if it already is one)."""
    if isinstance(x, Tensor):
        return x.to(dtype) if x.dtype != dtype else x
    return torch.as_tensor(np.asarray(x), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------------------------------------


def intrinsics_from_fov(width: int, height: int, fov_x_deg: float = 90.0) -> Tensor:
    """Pinhole ``K`` (3, 3) with horizontal field of view ``fov_x_deg`` and square pixels."""
    if not (1.0 <= fov_x_deg < 179.0):
        raise ValueError(f"fov_x_deg must lie in [1, 179), got {fov_x_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics for an image resized by (sx, sy): rows 0 and 1 scale with the pixel grid."""
    out = K.clone()
    out[..., 0, :] *= sx
    out[..., 1, :] *= sy
    return out


# ---------------------------------------------------------------------------------------------------------
# Poses
# ---------------------------------------------------------------------------------------------------------


def rotation_x(angle: Tensor) -> Tensor:
    """Rotation about +x by ``angle`` radians, (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*angle.shape, 3, 3)


def rotation_y(angle: Tensor) -> Tensor:
    """Rotation about +y by ``angle`` radians, (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*angle.shape, 3, 3)


def rotation_z(angle: Tensor) -> Tensor:
    """Rotation about +z by ``angle`` radians, (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*angle.shape, 3, 3)


def make_pose(R: Tensor, t: Tensor) -> Tensor:
    """Assemble (..., 4, 4) from rotation (..., 3, 3) and translation (..., 3)."""
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    out = torch.zeros(*batch, 4, 4, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def pose_inverse(T: Tensor) -> Tensor:
    """Inverse of a rigid transform (..., 4, 4) without a general matrix inverse."""
    R, t = T[..., :3, :3], T[..., :3, 3]
    Rt = R.transpose(-1, -2)
    return make_pose(Rt, -(Rt @ t.unsqueeze(-1)).squeeze(-1))


def relative_poses(c2w: Tensor, reference: Tensor | None = None) -> Tensor:
    """Poses (..., N, 4, 4) expressed in the frame of ``reference`` (default: the first pose)."""
    ref = c2w[..., :1, :, :] if reference is None else reference.unsqueeze(-3)
    return pose_inverse(ref) @ c2w


def look_at(eye: Tensor, target: Tensor, up: tuple[float, float, float] = WORLD_UP) -> Tensor:
    """c2w (..., 4, 4) of a camera at ``eye`` looking at ``target`` with image-up along ``up``."""
    eye, target = as_tensor(eye), as_tensor(target)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand_as(fwd)
    right = torch.linalg.cross(fwd, up_t, dim=-1)
    if bool((right.norm(dim=-1) < 1e-6).any()):
        raise ValueError("look_at: view direction is parallel to the up vector")
    # OpenCV: x right, y down, z forward; right = fwd × up and down = fwd × right keep it right-handed.
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(fwd, right, dim=-1)
    return make_pose(torch.stack([right, down, fwd], dim=-1), eye)


def euler_to_rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Camera rotation from heading angles (radians): ``R = Ry(-yaw) Rx(pitch) Rz(roll)``.

    yaw > 0 turns left (about world up, -Y); pitch > 0 looks up; roll > 0 rolls clockwise as seen by the
    camera. With yaw about the world axis and pitch about the camera's own x axis this is exactly the
    composition SANA-WM's key DSL uses. Written out in one stack (no matrix products), so batched envs
    build their poses with a few elementwise ops.
    """
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    return torch.stack([
        cy * cr - sy * sp * sr, -cy * sr - sy * sp * cr, -sy * cp,
        cp * sr, cp * cr, -sp,
        sy * cr + cy * sp * sr, -sy * sr + cy * sp * cr, cy * cp,
    ], dim=-1).reshape(*cy.shape, 3, 3)


def rotation_to_euler(R: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`euler_to_rotation` for pitch in (-90°, 90°)."""
    fwd = R[..., :, 2]  # camera z axis in world
    yaw = torch.atan2(-fwd[..., 0], fwd[..., 2])
    pitch = torch.asin((-fwd[..., 1]).clamp(-1.0, 1.0))
    # roll: angle of the camera x axis against the level right vector
    right = R[..., :, 0]
    level_right = torch.stack([torch.cos(yaw), torch.zeros_like(yaw), torch.sin(yaw)], dim=-1)
    level_down = torch.linalg.cross(fwd, level_right, dim=-1)
    roll = torch.atan2((right * level_down).sum(-1), (right * level_right).sum(-1))
    return yaw, pitch, roll


# ---------------------------------------------------------------------------------------------------------
# Rays
# ---------------------------------------------------------------------------------------------------------


def pixel_grid(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Pixel centres (H, W, 2) as (u, v) = (x + 0.5, y + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def camera_rays(c2w: Tensor, K: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """World-space rays for every pixel.

    Returns ``origins`` (..., H, W, 3) and ``directions`` (..., H, W, 3) scaled so that their camera-space
    z component is 1: a hit at parameter ``t`` has z-depth ``t``.
    """
    uv = pixel_grid(height, width, c2w.device)  # (H, W, 2)
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    x = (uv[..., 0] - cx[..., None, None]) / fx[..., None, None]  # (..., H, W)
    y = (uv[..., 1] - cy[..., None, None]) / fy[..., None, None]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (..., H, W, 3)
    R = c2w[..., :3, :3]
    d_world = torch.einsum("...ij,...hwj->...hwi", R, d_cam)
    origins = c2w[..., None, None, :3, 3].expand_as(d_world)
    return origins, d_world


def plucker_rays(c2w: Tensor, K: Tensor, height: int, width: int) -> Tensor:
    """Plücker ray map (..., 6, H, W): unit world direction d and moment o × d."""
    origins, dirs = camera_rays(c2w, K, height, width)
    d = torch.nn.functional.normalize(dirs, dim=-1)
    m = torch.linalg.cross(origins, d, dim=-1)
    return torch.cat([d, m], dim=-1).movedim(-1, -3)


# ---------------------------------------------------------------------------------------------------------
# 6-DoF twist integration
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwistLimits:
    """Maximum speeds per step for a normalised twist in [-1, 1]^6 and the pitch limit."""

    forward: float = 0.10  # metres per step
    right: float = 0.10
    up: float = 0.05
    yaw_deg: float = 6.0  # degrees per step
    pitch_deg: float = 4.0
    roll_deg: float = 4.0
    pitch_limit_deg: float = 85.0
    roll_limit_deg: float = 45.0

    def scale(self) -> np.ndarray:
        """Per-component multipliers from normalised twist to metres / radians."""
        r = math.pi / 180.0
        return np.array(
            [self.forward, self.right, self.up, self.yaw_deg * r, self.pitch_deg * r, self.roll_deg * r],
            dtype=np.float64,
        )


@dataclass
class CameraState:
    """A gravity-aligned 6-DoF camera: world position and heading angles (radians).

    Holding angles instead of a matrix keeps poses free of numerical drift over long episodes.
    """

    position: np.ndarray  # (3,) world
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def copy(self) -> CameraState:
        return CameraState(self.position.copy(), self.yaw, self.pitch, self.roll)

    def c2w(self) -> np.ndarray:
        """(4, 4) float64 camera-to-world."""
        R = euler_to_rotation(
            torch.tensor(self.yaw, dtype=torch.float64),
            torch.tensor(self.pitch, dtype=torch.float64),
            torch.tensor(self.roll, dtype=torch.float64),
        ).numpy()
        out = np.eye(4)
        out[:3, :3] = R
        out[:3, 3] = self.position
        return out

    def heading_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Level forward and right unit vectors (the XZ-plane projection of the camera's z and x)."""
        fwd = np.array([-math.sin(self.yaw), 0.0, math.cos(self.yaw)])
        right = np.array([math.cos(self.yaw), 0.0, math.sin(self.yaw)])
        return fwd, right


def step_pose(position: Tensor, angles: Tensor, d: Tensor, pitch_limit: float, roll_limit: float,
              keys_mode: bool = False) -> tuple[Tensor, Tensor]:
    """One step of scaled twists ``d`` (N, 6) [metres x3, radians x3] from positions (N, 3) and heading
    angles (N, 3) = (yaw, pitch, roll): returns the new positions and angles.

    Translation follows the level heading (forward/right in the XZ plane, up along world up), so looking
    down does not sink the camera into the floor; yaw wraps to [-pi, pi), roll is clamped. Twist mode uses
    the heading before the step and clamps pitch at its limit; ``keys_mode`` follows SANA-WM's key DSL:
    rotate first, move along the new heading, and drop a pitch step that would cross the limit.
    """
    yaw, pitch, roll = angles.unbind(-1)
    # 1. rotation
    new_yaw = torch.remainder(yaw + d[..., 3] + math.pi, 2 * math.pi) - math.pi
    new_pitch = pitch + d[..., 4]
    if keys_mode:
        new_pitch = torch.where(new_pitch.abs() > pitch_limit, pitch, new_pitch)
    else:
        new_pitch = new_pitch.clamp(-pitch_limit, pitch_limit)
    new_roll = (roll + d[..., 5]).clamp(-roll_limit, roll_limit)
    # 2. translation along the level heading; world up is -y
    heading = new_yaw if keys_mode else yaw
    s, c = torch.sin(heading), torch.cos(heading)
    dx = -s * d[..., 0] + c * d[..., 1]
    dz = c * d[..., 0] + s * d[..., 1]
    new_pos = position + torch.stack([dx, -d[..., 2], dz], dim=-1)
    return new_pos, torch.stack([new_yaw, new_pitch, new_roll], dim=-1)


def integrate_twist(state: CameraState, twist: np.ndarray, limits: TwistLimits) -> CameraState:
    """Apply one step of a normalised twist ``[forward, right, up, yaw, pitch, roll]`` in [-1, 1]
    (:func:`step_pose` in twist mode, for one camera)."""
    twist = np.asarray(twist, dtype=np.float64)
    if twist.shape != (6,):
        raise ValueError(f"twist must have shape (6,), got {twist.shape}")
    d = torch.from_numpy(twist * limits.scale())
    pos, ang = step_pose(torch.from_numpy(np.asarray(state.position, dtype=np.float64)),
                         torch.tensor([state.yaw, state.pitch, state.roll], dtype=torch.float64), d,
                         math.radians(limits.pitch_limit_deg), math.radians(limits.roll_limit_deg))
    yaw, pitch, roll = ang.tolist()
    return CameraState(position=pos.numpy(), yaw=yaw, pitch=pitch, roll=roll)


# ---------------------------------------------------------------------------------------------------------
# numpy twins for one-env CPU loops (bitwise equal to the torch functions above)
# ---------------------------------------------------------------------------------------------------------


def sincos_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sin`` and ``cos`` of float64 ``x`` from torch's CPU kernels.

    numpy's (libm's) values differ from torch's (SLEEF's) in the last ulp for about 0.1 % of inputs, so the
    numpy twins below take their trigonometry from torch: one call each, on the array's own memory.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    return torch.sin(t).numpy(), torch.cos(t).numpy()


def euler_to_rotation_np(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """:func:`euler_to_rotation` on float64 numpy arrays (..., ) -> (..., 3, 3), with the same operations in
    the same order, so the result is bitwise equal."""
    s, c = sincos_np(np.stack([yaw, pitch, roll]))  # (3, ...)
    sy, sp, sr = s
    cy, cp, cr = c
    return np.stack([
        cy * cr - sy * sp * sr, -cy * sr - sy * sp * cr, -sy * cp,
        cp * sr, cp * cr, -sp,
        sy * cr + cy * sp * sr, -sy * sr + cy * sp * cr, cy * cp,
    ], axis=-1).reshape(*np.shape(yaw), 3, 3)
