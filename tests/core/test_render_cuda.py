"""The torch ray caster gives the same frames on CUDA as on the CPU, and the batched env runs there."""

import pytest
import torch

from sana_world.camera import intrinsics_from_fov, look_at
from sana_world.render.torch_caster import TorchRenderer
from sana_world.worlds import sample_scene

pytestmark = pytest.mark.gpu


def test_cuda_render_matches_cpu():
    spec = sample_scene(4)
    r = spec.rooms[0]
    eye = torch.tensor([(r.x0 + r.x1) / 2, -1.5, r.z0 + 1.0])
    c2w = torch.stack([look_at(eye, eye + torch.tensor([dx, 0.2, 1.0])) for dx in (-0.5, 0.0, 0.5)])
    K = intrinsics_from_fov(64, 64)
    cpu = TorchRenderer("cpu").render(spec, c2w, K, 64, 64)
    gpu = TorchRenderer("cuda").render(spec, c2w, K, 64, 64)
    depth_ok = ((gpu.depth.cpu() - cpu.depth).abs() <= 1e-3 * cpu.depth).float().mean()
    assert depth_ok > 0.999
    assert (gpu.ids.cpu() == cpu.ids).float().mean() > 0.999
    assert (gpu.rgb.cpu().int() - cpu.rgb.int()).abs().float().mean() < 1.0


def test_vector_env_on_cuda_keeps_frames_on_device():
    from sana_world.envs.vector import GTVectorEnv

    envs = GTVectorEnv(num_envs=4, width=32, height=32, device="cuda", return_torch=True)
    obs, _ = envs.reset(seed=0)
    obs, rew, term, trunc, info = envs.step(torch.zeros(4, 6, device="cuda"))
    assert obs.device.type == "cuda" and obs.shape == (4, 32, 32, 3) and rew.device.type == "cuda"
