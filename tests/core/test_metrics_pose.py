"""PSNR / SSIM on known cases, and the photometric pose estimator on rendered frames."""

from __future__ import annotations

import math

import pytest
import torch

from sana_world.metrics import psnr, ssim


def test_psnr_of_a_constant_offset() -> None:
    a = torch.full((2, 16, 16, 3), 100, dtype=torch.uint8)
    b = a + 10
    assert torch.allclose(psnr(a, b), torch.full((2,), 10 * math.log10(255**2 / 100)))
    assert float(psnr(a, a)[0]) == 100.0  # capped


def test_ssim_of_constant_frames_is_the_luminance_term() -> None:
    a = torch.full((1, 16, 16, 3), 100.0)
    b = torch.full((1, 16, 16, 3), 120.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert abs(float(ssim(a, b)) - expected) < 1e-5
    noise = torch.randint(0, 255, (3, 20, 20, 3), dtype=torch.uint8)
    assert torch.allclose(ssim(noise, noise), torch.ones(3), atol=1e-5)
    assert float(ssim(noise[:1], noise[1:2])) < 0.2
    with pytest.raises(ValueError, match="share a shape"):
        ssim(noise, noise[:1])


def test_pose_estimator_recovers_a_rendered_motion() -> None:
    from sana_world.camera import intrinsics_from_fov
    from sana_world.data.pool import plan_many
    from sana_world.pose_estimation import estimate_relative_pose, motion_magnitude, pose_errors
    from sana_world.render.torch_caster import TorchRenderer, pack_scenes

    plan = plan_many([1_000_005], 6, "explore", 0)[0]
    K = intrinsics_from_fov(64, 64, 90.0)
    c2w = torch.from_numpy(plan.c2w)  # (7, 4, 4)
    out = TorchRenderer(shadows=False).render_packed(pack_scenes([plan.spec], "cpu"),
                                                     torch.zeros(7, dtype=torch.long), c2w, K, 64, 64)
    T_true = torch.linalg.inv(c2w[1:]) @ c2w[:-1]  # (6, 4, 4) camera a -> camera b
    T_est = estimate_relative_pose(out.rgb[:-1], out.depth[:-1], out.rgb[1:], K.expand(6, 3, 3))
    rot, trans = pose_errors(T_est, T_true)
    mrot, mtrans = motion_magnitude(T_true)
    assert float(mrot.mean() + 20 * mtrans.mean()) > 0.5  # the path really moves
    assert float(rot.mean()) < 0.5 and float(trans.mean()) < 0.03
