import math

import numpy as np
import pytest
import torch

from sana_world import camera as C


def test_intrinsics_and_rays_center_pixel_points_forward():
    K = C.intrinsics_from_fov(64, 48, 90.0)
    assert K[0, 0] == pytest.approx(32.0)
    o, d = C.camera_rays(torch.eye(4), K, 48, 64)
    assert o.shape == (48, 64, 3) and d.shape == (48, 64, 3)
    # camera-space z = 1 for every ray, and the corner ray spans the half fov
    assert torch.allclose(d[..., 2], torch.ones(48, 64))
    assert d[0, 0, 0] == pytest.approx(-(32 - 0.5) / 32, abs=1e-6)
    assert d[0, 0, 1] < 0  # top row looks up (-y)


def test_bad_fov_and_size_raise():
    with pytest.raises(ValueError, match="fov"):
        C.intrinsics_from_fov(64, 64, 0.0)
    with pytest.raises(ValueError, match="positive"):
        C.intrinsics_from_fov(0, 64)


def test_euler_directions_follow_conventions():
    z = torch.tensor(0.0, dtype=torch.float64)
    a = torch.tensor(0.3, dtype=torch.float64)
    fwd_yaw = C.euler_to_rotation(a, z, z)[:, 2]
    assert fwd_yaw[0] < 0  # yaw > 0 turns left (-x)
    fwd_pitch = C.euler_to_rotation(z, a, z)[:, 2]
    assert fwd_pitch[1] < 0  # pitch > 0 looks up (-y)
    R = C.euler_to_rotation(torch.tensor(0.7), torch.tensor(-0.4), torch.tensor(0.2))
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
    yaw, pitch, roll = C.rotation_to_euler(R)
    assert (float(yaw), float(pitch), float(roll)) == pytest.approx((0.7, -0.4, 0.2), abs=1e-5)


def test_pose_inverse_and_relative():
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(5, 3, generator=g, dtype=torch.float64)
    R = C.euler_to_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    T = C.make_pose(R, torch.randn(5, 3, generator=g, dtype=torch.float64))
    assert torch.allclose(C.pose_inverse(T) @ T, torch.eye(4, dtype=torch.float64).expand(5, 4, 4), atol=1e-12)
    rel = C.relative_poses(T)
    assert torch.allclose(rel[0], torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(T[0] @ rel[3], T[3], atol=1e-12)


def test_look_at_points_camera_at_target():
    eye = torch.tensor([1.0, -1.5, 2.0])
    target = torch.tensor([4.0, -1.0, 6.0])
    T = C.look_at(eye, target)
    fwd = T[:3, 2]
    assert torch.allclose(fwd, torch.nn.functional.normalize(target - eye, dim=0), atol=1e-6)
    assert T[1, 1] > 0  # image down is world down
    assert torch.linalg.det(T[:3, :3]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="parallel"):
        C.look_at(eye, eye + torch.tensor([0.0, 1.0, 0.0]))


def test_plucker_rays_are_unit_and_orthogonal():
    T = C.look_at(torch.tensor([1.0, -1.5, 2.0]), torch.tensor([3.0, -1.0, 5.0]))
    K = C.intrinsics_from_fov(16, 12)
    p = C.plucker_rays(T[None], K[None], 12, 16)
    assert p.shape == (1, 6, 12, 16)
    d, m = p[0, :3], p[0, 3:]
    assert torch.allclose(d.norm(dim=0), torch.ones(12, 16), atol=1e-5)
    assert (d * m).sum(0).abs().max() < 1e-5
    # the moment of the ray through the camera centre equals o x d
    o = T[:3, 3]
    assert torch.allclose(m[:, 5, 7], torch.linalg.cross(o, d[:, 5, 7], dim=0), atol=1e-5)


def test_integrate_twist_moves_on_level_heading_and_limits_pitch():
    lim = C.TwistLimits(forward=0.1, pitch_deg=10.0, pitch_limit_deg=25.0)
    s = C.CameraState(np.array([0.0, -1.5, 0.0]))
    for _ in range(10):
        s = C.integrate_twist(s, np.array([1.0, 0, 0, 0, 1.0, 0]), lim)
    assert s.pitch == pytest.approx(math.radians(25.0))
    # looking up does not lift the camera: forward motion stays level
    assert s.position[1] == pytest.approx(-1.5)
    assert s.position[2] == pytest.approx(1.0)
    c2w = s.c2w()
    assert c2w[1, 2] < 0  # camera looks up
    with pytest.raises(ValueError, match="shape"):
        C.integrate_twist(s, np.zeros(5), lim)
