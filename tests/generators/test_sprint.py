"""Sprint (sCM) distillation: the consistency tangent against an analytic ODE and finite differences, the
student's start as the teacher (through the pipeline's TrigFlow path), a CPU run with exact resume and export."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_dit_folder

from sana_world.generators.train.sprint import (
    SprintConfig, consistency_tangent, load_teacher, scm_target, student_from_teacher, student_trigflow,
    teacher_trigflow, train,
)

RES = 16


def teacher_folder(root: Path, seed: int = 0, truncate: bool = True, timestep_scale: float = 1.0) -> Path:
    """A tiny flow-matching SanaDiT teacher on pixel latents and procedural captions, as an export folder."""
    return tiny_dit_folder(root, RES, seed, truncate, timestep_scale)


def captions(n: int):
    from sana_world.generators.text_encoders import ProceduralTextEncoder

    text = ProceduralTextEncoder()
    return text, text.encode(["a red room with a lamp"] * n), text.null_embedding().expand(n)


def test_the_tangent_vanishes_for_the_exact_consistency_function_of_a_point_mass() -> None:
    """Data at one point a0: the teacher's exact TrigFlow output is F = (cos t u - a0) / sin t and the
    consistency function cos t u - sin t F = a0 is constant along every ODE path, so a student equal to it
    has g = 0 (r = 1); a student off by 10 % has g != 0, and its normalised target moves it towards F."""
    torch.manual_seed(0)
    a0 = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    u = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.8, 1.2, 1.5], dtype=torch.float64)

    def exact(x, s):
        s = s.view(-1, 1, 1, 1)
        return (torch.cos(s) * x - a0) / torch.sin(s)

    f, g = consistency_tangent(exact, exact, u, t, r=1.0)
    assert torch.allclose(f, exact(u, t)) and g.abs().max() < 1e-12
    off = lambda x, s: 1.1 * exact(x, s)  # noqa: E731
    f_off, g_off = consistency_tangent(off, exact, u, t, r=1.0)
    assert g_off.abs().max() > 1e-2
    target = scm_target(off, exact, u, t, r=1.0, c=0.1)
    # the step from F- towards the target points to the exact F wherever the gap is large
    gap, step = exact(u, t) - f_off, target - f_off
    assert (gap * step).sum() > 0


def test_the_jvp_is_the_total_derivative_along_the_ode(tmp_path) -> None:
    """The student's total derivative inside g (forward mode, float64) equals reverse-mode autograd of
    h -> F(u + h du/dt, t + h) at h = 0, projected on random directions (finite differences would only
    measure the float32 timestep sinusoid's rounding)."""
    teacher = load_teacher(teacher_folder(tmp_path / "t"), torch.device("cpu")).double()
    student = student_from_teacher(teacher).double()
    with torch.no_grad():  # move the student off the teacher so that both terms of g matter
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    _, cond, null = captions(3)
    cond, null = (dataclasses.replace(e, hidden=e.hidden.double()) for e in (cond, null))
    fs, ft = student_trigflow(student, cond, 4.5), teacher_trigflow(teacher, cond, null, 4.5)
    torch.manual_seed(1)
    u = torch.randn(3, 3, RES, RES, dtype=torch.float64)
    t = torch.tensor([0.3, 0.9, 1.4], dtype=torch.float64)
    r = 0.7
    f, g = consistency_tangent(fs, ft, u, t, r=r)
    ct, st = torch.cos(t).view(-1, 1, 1, 1), torch.sin(t).view(-1, 1, 1, 1)
    with torch.no_grad():
        du = ft(u, t)
    df = -(g + ct * ct * (f - du)) / (r * ct * st) - u  # dF/dt recovered from g
    assert torch.allclose(f, fs(u, t).detach(), atol=1e-12)
    for seed in range(3):
        w = torch.randn(u.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        h = torch.zeros((), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad((fs(u + h * du, t + h) * w).sum(), h)
        fwd = float((df * w).sum())
        err = abs(fwd - float(grad)) / abs(float(grad))
        print(f"jvp vs reverse mode, direction {seed}: {fwd:.6e} vs {float(grad):.6e} ({err:.1e})")
        assert err < 1e-5


def test_the_student_starts_as_the_teacher_through_the_pipeline(tmp_path) -> None:
    """At init the student's velocity equals the teacher's at every guidance (zero guidance embedding, the
    timestep 1000 sigma), and ImagePipeline's one-step TrigFlow sample from the student (timestep_scale
    1000) equals a TrigFlow sample of the teacher's conditional velocity from the same noise."""
    from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig
    from sana_world.generators.train.flow_matching import PixelCodec
    from sana_world.samplers import TrigFlowSampler, flow_to_trigflow

    cpu = torch.device("cpu")
    truncating = load_teacher(teacher_folder(tmp_path / "t"), cpu)
    text, cond, _ = captions(2)
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.25, 0.625])  # 1000 sigma is an integer: the teacher's truncation is moot
    student = student_from_teacher(truncating).eval()
    with torch.no_grad():
        v_teacher = truncating(x, 1000 * sigma, cond.hidden, cond.mask)
        for w in (0.0, 4.5):
            v = student(x, 1000 * sigma, cond.hidden, cond.mask, guidance=torch.full((2,), 0.1 * w))
            assert torch.allclose(v, v_teacher, atol=1e-6), w
        assert not torch.allclose(student(x, sigma, cond.hidden, cond.mask, guidance=torch.zeros(2)),
                                  v_teacher, atol=1e-3)  # the timestep convention matters
    for name, t_scale, student_scale in (("f", 1.0, 1000.0), ("dense", 1e-3, 1.0)):  # SANA's and dense time
        teacher = load_teacher(teacher_folder(tmp_path / name, truncate=False, timestep_scale=t_scale), cpu)
        student = student_from_teacher(teacher).eval()
        assert student.cfg.timestep_scale == pytest.approx(student_scale)
        noise = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))
        pipe = ImagePipeline(student, text, PixelCodec(),
                             ImagePipelineConfig(sampler="trigflow", num_steps=1, guidance_scale=4.5))
        images = pipe(["a red room with a lamp"] * 2, RES, RES, noise=noise, output="float",
                      generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ref = TrigFlowSampler(num_steps=1).sample(
                flow_to_trigflow(lambda xf, s, tm=teacher: tm(xf, 1000 * t_scale * s, cond.hidden, cond.mask)),
                noise, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(images, ref.clamp(-1, 1), atol=1e-5), name


def _config(teacher: Path, dataset: Path, out: Path, **kw) -> SprintConfig:
    base = dict(teacher=str(teacher), data="shards", data_dir=str(dataset), resolution=RES, batch_size=4,
                lr=1e-4, warmup_steps=2, ema_decay=0.9, out_dir=str(out), progress=False, log_every=5,
                seed=0, tangent_warmup=4)
    return SprintConfig.from_flat(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from sana_world.data import generate

    root = tmp_path_factory.mktemp("gt") / "ds"
    generate(root, num_trajectories=2, steps=7, height=RES, width=RES, shard_size=2, seed=0, progress=False)
    return root


def test_a_cpu_run_resumes_exactly_and_exports_a_sprint_student(dataset, tmp_path) -> None:
    """4 steps straight = 2 + 2 resumed, bit for bit; the export is a Sprint-variant SanaDiT that the
    pipeline samples in one TrigFlow step; a flow-matching teacher is required."""
    from sana_world.generators.train.export_folder import main as export_main

    teacher = teacher_folder(tmp_path / "teacher")
    straight = train(_config(teacher, dataset, tmp_path / "a", steps=4, ckpt_every=2))
    first = train(_config(teacher, dataset, tmp_path / "b", steps=2, ckpt_every=2))
    second = train(_config(teacher, dataset, tmp_path / "b", steps=4, ckpt_every=2, resume=True))
    assert np.isfinite(straight.losses).all() and len(straight.losses) == 4
    np.testing.assert_allclose(first.losses + second.losses, straight.losses, rtol=1e-6, atol=0)
    export_main([str(tmp_path / "a"), str(tmp_path / "a.tar")])
    meta = json.loads((tmp_path / "a" / "export" / "config.json").read_text())
    assert meta["_class_name"] == "SanaDiT" and meta["config"]["guidance_embeds"] is True
    assert meta["config"]["timestep_scale"] == 1000.0 and meta["training"]["teacher"] == str(teacher)
    with pytest.raises(ValueError, match="already a Sprint student"):
        train(_config(tmp_path / "a" / "export", dataset, tmp_path / "c", steps=1))
    with pytest.raises(ValueError, match="teacher is required"):
        SprintConfig.from_flat(out_dir=str(tmp_path / "d"))
    assert math.isfinite(second.losses[-1])
