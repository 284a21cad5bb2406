"""SANA-WM camera inputs: parity with the camera kwargs of diffusers' pipeline; shapes, invariance, errors.

What we compare against (diffusers 0.42, ``pipelines/sana_wm``):
- ``cam_utils.py`` loaded from its file (``prepare_camera``, ``snap_num_frames``, ``action_string_to_c2w``,
  ``resize_and_center_crop``, ``transform_intrinsics_for_crop``); it imports only numpy, torch and PIL.
- ``SanaWMPipeline.prepare_camera_trajectory`` and ``SanaWMPipeline._build_camera_kwargs``: their exact
  source, taken from ``pipeline_sana_wm.py`` with ``ast`` and compiled in cam_utils' namespace (importing the
  pipeline module pulls in transformers, ~10 s on these cores), then called unbound with a stand-in ``self``
  that carries only the VAE strides. The image processor's ``preprocess_with_intrinsics`` is reproduced by
  its two cam_utils calls (crop geometry from a blank PIL image of the source size, then the intrinsics).
So the reference chain is the pipeline's own: trajectory + intrinsics -> snap / trim -> crop -> kwargs.
"""

from __future__ import annotations

import __future__
import ast
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sana_world import camera as C
from sana_world.world_model.cameras import (
    CropGeometry,
    WMCameraInputs,
    camera_inputs_from_actions,
    crop_intrinsics,
    intrinsics_to_matrix,
    intrinsics_to_vec4,
    latent_num_frames,
    prepare_camera_inputs,
    resize_crop_geometry,
    snap_num_frames,
    trim_trajectory,
)

ATOL = 1e-5


# ---------------------------------------------------------------------------------------------------------
# Reference: diffusers' code
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref() -> SimpleNamespace:
    spec = importlib.util.find_spec("diffusers")
    if spec is None or spec.origin is None:
        pytest.skip("diffusers is not installed")
    folder = Path(spec.origin).parent / "pipelines" / "sana_wm"
    if not (folder / "cam_utils.py").exists() or not (folder / "pipeline_sana_wm.py").exists():
        pytest.skip(f"this diffusers has no SANA-WM pipeline in {folder}")
    # 1. cam_utils from its file
    mod_spec = importlib.util.spec_from_file_location("_wmcam_cam_utils", folder / "cam_utils.py")
    cam_utils = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(cam_utils)
    # 2. the two pipeline methods, verbatim, compiled among cam_utils' names (np, torch, prepare_camera, ...)
    path = folder / "pipeline_sana_wm.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SanaWMPipeline")
    wanted = {"prepare_camera_trajectory", "_build_camera_kwargs"}
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {m.name for m in methods} == wanted and not any(m.decorator_list for m in methods)
    namespace = dict(vars(cam_utils))
    code = compile(ast.Module(body=methods, type_ignores=[]), str(path), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, namespace)
    return SimpleNamespace(
        cam_utils=cam_utils,
        prepare_camera_trajectory=namespace["prepare_camera_trajectory"],
        build_camera_kwargs=namespace["_build_camera_kwargs"],
    )


def reference_inputs(ref, *, intrinsics, height: int, width: int, c2w=None, action=None,
                     num_frames: int = 161, src_size: tuple[int, int] | None = None, t_stride: int = 8,
                     s_stride: int = 32, do_cfg: bool = False) -> dict[str, torch.Tensor]:
    """The pipeline's camera kwargs for one trajectory (``src_size`` (H, W): K is of an uncropped image)."""
    from PIL import Image

    pipe = SimpleNamespace(vae_temporal_compression_ratio=t_stride, vae_spatial_compression_ratio=s_stride)
    c2w, intr = ref.prepare_camera_trajectory(pipe, c2w, action, intrinsics, num_frames)
    if src_size is not None:
        image = Image.new("RGB", (src_size[1], src_size[0]))
        _, src, resized, offset = ref.cam_utils.resize_and_center_crop(image, height, width)
        intr = ref.cam_utils.transform_intrinsics_for_crop(intr, src, resized, offset)
    return ref.build_camera_kwargs(pipe, c2w, intr, (height, width), device=torch.device("cpu"),
                                   dtype=torch.float32, do_cfg=do_cfg)


# ---------------------------------------------------------------------------------------------------------
# Random cameras from our geometry
# ---------------------------------------------------------------------------------------------------------


def random_trajectory(rng: np.random.Generator, frames: int, batch: tuple[int, ...] = ()) -> torch.Tensor:
    """(*batch, F, 4, 4) float32 c2w: a random walk of Euler angles and positions, off the origin."""
    shape = (*batch, frames)
    angles = torch.as_tensor(rng.normal(size=(*batch, 1, 3)) + 0.08 * rng.normal(size=(*shape, 3)).cumsum(-2))
    R = C.euler_to_rotation(angles[..., 0], angles[..., 1].clamp(-1.4, 1.4), angles[..., 2])
    t = rng.normal(scale=3.0, size=(*batch, 1, 3)) + rng.normal(scale=0.1, size=(*shape, 3)).cumsum(-2)
    t = torch.as_tensor(t)
    return C.make_pose(R, t).float()


def random_K(rng: np.random.Generator, height: int, width: int, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """(*shape, 3, 3) intrinsics around a 40-100° field of view, fx != fy, principal point off centre."""
    fx = 0.5 * width / np.tan(np.radians(rng.uniform(40, 100, size=shape)) / 2)
    fy = fx * rng.uniform(0.9, 1.1, size=shape)
    cx = width * rng.uniform(0.4, 0.6, size=shape)
    cy = height * rng.uniform(0.4, 0.6, size=shape)
    return intrinsics_to_matrix(torch.as_tensor(np.stack([fx, fy, cx, cy], axis=-1), dtype=torch.float32))


def assert_parity(ours: WMCameraInputs, theirs: dict[str, torch.Tensor]) -> None:
    for name in ("camera_conditions", "chunk_plucker"):
        a, b = getattr(ours, name), theirs[name]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        err = float((a - b).abs().max())
        assert err <= ATOL, f"{name}: max abs error {err:.2e}"


# (image H, W), spatial stride, temporal stride: square, non-square both ways, not divisible, stride 16
SIZES = [((704, 1280), 32, 8), ((96, 160), 32, 8), ((224, 64), 16, 8), ((200, 130), 32, 8),
         ((128, 96), 32, 4)]


# ---------------------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 9, 17, 25])
@pytest.mark.parametrize("size,s_stride,t_stride", SIZES)
def test_c2w_parity_per_frame_intrinsics(ref, frames, size, s_stride, t_stride):
    if (frames - 1) % t_stride:
        pytest.skip("not a valid frame count for this stride")
    rng = np.random.default_rng(frames * 1000 + size[0] + s_stride)
    H, W = size
    latent = (H // s_stride, W // s_stride)
    c2w = random_trajectory(rng, frames)
    K = random_K(rng, H, W, (frames,))  # per-frame intrinsics in target pixels
    ours = prepare_camera_inputs(c2w, K, size, latent, t_stride)
    theirs = reference_inputs(ref, c2w=c2w.numpy(), intrinsics=K.numpy(), height=H, width=W,
                              num_frames=frames, t_stride=t_stride, s_stride=s_stride)
    assert_parity(ours, theirs)


def test_batched_parity_and_intrinsics_forms(ref):
    rng = np.random.default_rng(1)
    (H, W), latent, F, B = (96, 160), (3, 5), 17, 3
    c2w = random_trajectory(rng, F, (B,))
    K = random_K(rng, H, W, (B, F))
    ours = prepare_camera_inputs(c2w, K, (H, W), latent)
    for b in range(B):
        theirs = reference_inputs(ref, c2w=c2w[b].numpy(), intrinsics=K[b].numpy(), height=H, width=W,
                                  num_frames=F)
        assert_parity(WMCameraInputs(ours.camera_conditions[b:b + 1], ours.chunk_plucker[b:b + 1]), theirs)
    # one K for everything, as (3, 3), (4,), (F, 4) and (B, 1, 3, 3): all the same numbers
    K0 = K[0, 0]
    base = prepare_camera_inputs(c2w, K0, (H, W), latent)
    forms = (intrinsics_to_vec4(K0), K0.expand(F, 3, 3), intrinsics_to_vec4(K0).expand(F, 4),
             K0.expand(B, 1, 3, 3), K0.numpy().tolist())
    for form in forms:
        other = prepare_camera_inputs(c2w, form, (H, W), latent)
        assert torch.equal(other.camera_conditions, base.camera_conditions)
        assert torch.equal(other.chunk_plucker, base.chunk_plucker)
    theirs = reference_inputs(ref, c2w=c2w[2].numpy(), intrinsics=intrinsics_to_vec4(K0).tolist(), height=H,
                              width=W, num_frames=F)
    assert_parity(WMCameraInputs(base.camera_conditions[2:], base.chunk_plucker[2:]), theirs)


def test_full_chain_with_source_image_intrinsics_and_trimming(ref):
    """Original-image K + a longer trajectory: trim (snap), crop, build, as ``__call__`` does."""
    rng = np.random.default_rng(2)
    c2w = random_trajectory(rng, 30)
    for src, num_frames in (((1080, 1920), 20), ((480, 640), 161), ((720, 1280), 9), ((1000, 700), 13)):
        K_src = random_K(rng, *src, (30,))
        theirs = reference_inputs(ref, c2w=c2w.numpy(), intrinsics=K_src.numpy(), height=704, width=1280,
                                  num_frames=num_frames, src_size=src, do_cfg=True)
        c2w_t, K_t = trim_trajectory(c2w, K_src, num_frames)
        ours = prepare_camera_inputs(c2w_t, crop_intrinsics(K_t, src, (704, 1280)), (704, 1280), (22, 40))
        assert_parity(ours.repeat_for_cfg(), theirs)


@pytest.mark.parametrize("action,num_frames", [
    ("w-80,jw-40,w-40", 161),     # the pipeline's example: 161 poses
    ("ik-3,l-20", 161),           # 24 poses: snaps down to 17
    ("none-5", 161),              # 6 poses: a single frame
    ("i-80,wl-30,kd-10", 161),    # pitch held into the 85° limit while moving
    ("wasd-12, JI-12，sl-20", 25),  # case, whitespace, full-width comma; num_frames below the pose count
])
def test_action_parity(ref, action, num_frames):
    rng = np.random.default_rng(3)
    K = random_K(rng, 96, 160)
    theirs = reference_inputs(ref, action=action, intrinsics=intrinsics_to_vec4(K).numpy(), height=96,
                              width=160, num_frames=num_frames)
    ours = camera_inputs_from_actions(action, K, (96, 160), (3, 5), num_frames=num_frames)
    assert_parity(ours, theirs)


def test_action_batch_and_per_frame_K(ref):
    rng = np.random.default_rng(4)
    actions = ["w-20,jw-20", "sl-16,i-24"]  # 41 poses each
    K = random_K(rng, 704, 1280, (60,))  # longer than the trajectory: trimmed, as the pipeline does
    ours = camera_inputs_from_actions(actions, K, (704, 1280), (22, 40))
    assert ours.camera_conditions.shape == (2, 6, 20) and ours.chunk_plucker.shape == (2, 48, 6, 22, 40)
    for b, action in enumerate(actions):
        theirs = reference_inputs(ref, action=action, intrinsics=K.numpy(), height=704, width=1280)
        assert_parity(WMCameraInputs(ours.camera_conditions[b:b + 1], ours.chunk_plucker[b:b + 1]), theirs)


def test_snap_num_frames_parity(ref):
    for stride in (4, 8):
        for n in range(-2, 60):
            assert snap_num_frames(n, stride) == ref.cam_utils.snap_num_frames(n, stride)
            for bound in (1, 9, 20, 41):
                got = snap_num_frames(n, stride, upper_bound=bound)
                assert got == ref.cam_utils.snap_num_frames(n, stride, upper_bound=bound), (n, stride, bound)


def test_crop_geometry_and_intrinsics_parity(ref):
    from PIL import Image

    rng = np.random.default_rng(5)
    for src, target in (((1080, 1920), (704, 1280)), ((480, 640), (704, 1280)), ((704, 1280), (704, 1280)),
                        ((37, 91), (16, 24)), ((91, 37), (16, 24)), ((100, 100), (30, 50))):
        image = Image.new("RGB", src[::-1])
        _, src_wh, resized_wh, offset_lt = ref.cam_utils.resize_and_center_crop(image, *target)
        geo = resize_crop_geometry(src, target)
        assert geo == CropGeometry(src, resized_wh[::-1], offset_lt[::-1], target)
        K = random_K(rng, *src, (4,))
        K4 = intrinsics_to_vec4(K)
        theirs = ref.cam_utils.transform_intrinsics_for_crop(K4.numpy(), src_wh, resized_wh, offset_lt)
        ours_vec4 = crop_intrinsics(K4, geo).numpy()
        ours_matrix = intrinsics_to_vec4(crop_intrinsics(K, src, target)).numpy()
        np.testing.assert_allclose(ours_vec4, theirs, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(ours_matrix, theirs, rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------


def test_shapes_and_layout():
    K = C.intrinsics_from_fov(160, 96, 70.0)
    out = prepare_camera_inputs(random_trajectory(np.random.default_rng(6), 25, (2,)), K, (96, 160), (3, 5))
    assert out.camera_conditions.shape == (2, 4, 20) and out.chunk_plucker.shape == (2, 48, 4, 3, 5)
    assert (out.batch_size, out.num_latent_frames, out.temporal_stride, out.latent_size) == (2, 4, 8, (3, 5))
    assert out.camera_conditions.dtype == torch.float32
    # frame 0 is the exact identity; intrinsics are on the latent grid (5 / 160 of the pixel ones)
    assert torch.equal(out.camera_conditions[:, 0, :16], torch.eye(4).flatten().expand(2, 16))
    assert torch.allclose(out.camera_conditions[0, 0, 16:], intrinsics_to_vec4(K) * 5 / 160)
    # Plücker directions are unit, moments orthogonal to them
    maps = out.chunk_plucker.reshape(2, 8, 6, 4, 3, 5)
    assert torch.allclose(maps[:, :, :3].norm(dim=2), torch.ones(()), atol=1e-5)
    assert float((maps[:, :, :3] * maps[:, :, 3:]).sum(2).abs().max()) < 1e-4
    # latent frame 0 stacks raw frames 0..7; its first map looks along the identity's +z at the centre pixel
    assert torch.allclose(maps[:, 0, :, 0, 1, 2], torch.tensor([0.0, 0, 1, 0, 0, 0]).expand(2, 6), atol=0.2)
    half = out.to(dtype=torch.bfloat16)
    assert half.chunk_plucker.dtype == torch.bfloat16
    assert set(half.as_kwargs()) == {"camera_conditions", "chunk_plucker"}


def test_single_frame_repeats_its_map():
    out = prepare_camera_inputs(torch.eye(4)[None], C.intrinsics_from_fov(64, 64), (64, 64), (2, 2))
    maps = out.chunk_plucker.reshape(1, 8, 6, 1, 2, 2)
    assert out.camera_conditions.shape == (1, 1, 20)
    assert all(torch.equal(maps[:, j], maps[:, 0]) for j in range(8))


def test_invariant_to_a_global_rigid_transform():
    rng = np.random.default_rng(7)
    c2w = random_trajectory(rng, 17, (2,))
    K = random_K(rng, 96, 160)
    G = random_trajectory(rng, 1)[0]  # one rigid transform applied to every pose
    a = prepare_camera_inputs(c2w, K, (96, 160), (3, 5))
    b = prepare_camera_inputs(G @ c2w, K, (96, 160), (3, 5))
    assert torch.allclose(a.camera_conditions, b.camera_conditions, atol=1e-4)
    assert torch.allclose(a.chunk_plucker, b.chunk_plucker, atol=1e-4)
    # ... while the absolute poses themselves differ a lot
    assert float((G @ c2w - c2w).abs().max()) > 0.5


def test_relative_pose_is_first_frame_inverse_times_pose():
    rng = np.random.default_rng(8)
    c2w = random_trajectory(rng, 9)
    out = prepare_camera_inputs(c2w, C.intrinsics_from_fov(64, 64), (64, 64), (2, 2))
    expected = torch.linalg.inv(c2w[0]) @ c2w[8]
    assert torch.allclose(out.camera_conditions[0, 1, :16].reshape(4, 4), expected, atol=1e-5)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    c2w, K = random_trajectory(rng, 17, (2,)), random_K(rng, 96, 160, (17,))
    cpu = prepare_camera_inputs(c2w, K, (96, 160), (3, 5))
    gpu = prepare_camera_inputs(c2w, K, (96, 160), (3, 5), device="cuda")
    assert gpu.chunk_plucker.device.type == "cuda"
    assert torch.allclose(gpu.chunk_plucker.cpu(), cpu.chunk_plucker, atol=ATOL)
    assert torch.allclose(gpu.camera_conditions.cpu(), cpu.camera_conditions, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


def test_errors():
    K, eye9 = C.intrinsics_from_fov(64, 64), torch.eye(4).expand(9, 4, 4)
    with pytest.raises(ValueError, match="8k\\+1"):
        prepare_camera_inputs(torch.eye(4).expand(10, 4, 4), K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="4k\\+1"):
        latent_num_frames(8, 4)
    with pytest.raises(ValueError, match="c2w must be"):
        prepare_camera_inputs(torch.zeros(9, 3, 4), K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="c2w must be"):
        prepare_camera_inputs(torch.zeros(1, 1, 9, 4, 4), K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="rigid"):
        prepare_camera_inputs(eye9 * 2.0, K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        prepare_camera_inputs(torch.full((9, 4, 4), math.nan), K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="intrinsics must be"):
        prepare_camera_inputs(eye9, torch.ones(5), (64, 64), (2, 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        prepare_camera_inputs(eye9.expand(2, 9, 4, 4), K.expand(3, 9, 3, 3), (64, 64), (2, 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        prepare_camera_inputs(eye9, K.expand(17, 3, 3), (64, 64), (2, 2))
    with pytest.raises(ValueError, match="positive focal"):
        prepare_camera_inputs(eye9, -K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="image_size"):
        prepare_camera_inputs(eye9, K, (64, 0), (2, 2))
    with pytest.raises(ValueError, match="latent_size"):
        prepare_camera_inputs(eye9, K, (64, 64), 2)
    with pytest.raises(ValueError, match="temporal_stride"):
        prepare_camera_inputs(eye9, K, (64, 64), (2, 2), 0)
    with pytest.raises(ValueError, match="different frame counts"):
        camera_inputs_from_actions(["w-8", "w-16"], K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="no action"):
        camera_inputs_from_actions([], K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="unknown keys"):
        camera_inputs_from_actions("wx-8", K, (64, 64), (2, 2))
    with pytest.raises(ValueError, match="F' >= 9"):
        trim_trajectory(eye9, K.expand(5, 3, 3))
    with pytest.raises(ValueError, match="camera_conditions must be"):
        WMCameraInputs(torch.zeros(1, 2, 19), torch.zeros(1, 48, 2, 3, 5))
    with pytest.raises(ValueError, match="disagree"):
        WMCameraInputs(torch.zeros(1, 2, 20), torch.zeros(1, 48, 3, 3, 5))
    with pytest.raises(ValueError, match="CropGeometry"):
        crop_intrinsics(K, (64, 64))
