"""How close a Sprint student's few-step images come to its teacher's many-step ones, and how fast each is.

Prompts: captions of held-out scenes (seeds from HELDOUT_START on). For each prompt and one fixed noise,
the reference is the teacher's Flow-Euler sample at ``--ref-steps`` steps (the Dream envs' prompt start:
Euler, the teacher's training shift, classifier-free guidance ``--guidance``). Rows: the teacher at fewer
Euler steps, and the student (``sana_world.generators.train.sprint`` export) at 1, 2, 4 TrigFlow steps, from
the same noise; each row's PSNR against the reference (pixels, decoded) and its ms per image on this
machine. The student learns the teacher's ODE, so the same noise should land on the same image.

    python benchmarks/sprint_student.py --student runs/sprint/export --prompts 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, write_result  # noqa: E402


def heldout_prompts(n: int) -> list[str]:
    from sana_world.worlds.captions import caption
    from sana_world.worlds.sampler import HELDOUT_START, sample_scene

    return [caption(sample_scene(HELDOUT_START + i)) for i in range(n)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR in dB of float images in [-1, 1] (N, 3, H, W)."""
    mse = ((a - b) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128", help="zoo entry: the teacher (image), codec, text encoder")
    p.add_argument("--student", required=True, help="the Sprint student's export folder")
    p.add_argument("--teacher", default=None, help="the teacher's folder (default: the entry's image model), "
                   "e.g. a --dense-time re-fit the student was distilled from")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--guidance", type=float, default=3.0, help="CFG scale (the Dream envs' prompt_guidance)")
    p.add_argument("--ref-steps", type=int, default=20)
    p.add_argument("--teacher-steps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--student-steps", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    from sana_world.generators import zoo
    from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig
    from sana_world.generators.zoo import load_component

    # 1. models: the entry's teacher, codec and text encoder; the student from its export
    models = zoo.load(a.model, device=dev)
    student = load_component(a.student, "image", dev)
    meta = json.loads((Path(a.student) / "config.json").read_text())
    if not student.cfg.guidance_embeds:
        p.error(f"--student {a.student} is no Sprint student (guidance_embeds=False)")
    teacher_dir = Path(a.teacher) if a.teacher else models.entry.folder("image")
    teacher_meta = json.loads((teacher_dir / "config.json").read_text())
    teacher = load_component(teacher_dir, "image", dev)
    shift = float(teacher_meta.get("training", {}).get("shift", 2.0))
    prompts = heldout_prompts(a.prompts)
    side, f = models.resolution, models.codec.downsample_factor
    gen = torch.Generator(dev).manual_seed(0)
    noise = torch.randn(a.prompts, models.codec.latent_channels, side // f, side // f, generator=gen, device=dev)

    def images(model, cfg: ImagePipelineConfig) -> tuple[torch.Tensor, float]:
        """(N, 3, H, W) float images of every prompt and the ms per image."""
        pipe = ImagePipeline(model, models.text, models.codec, cfg)
        out, t0 = [], time.perf_counter()
        for i in range(0, a.prompts, a.batch):  # 1. batches of prompts, the same noise slice each time
            g = torch.Generator(dev).manual_seed(1 + i)
            out.append(pipe(prompts[i:i + a.batch], side, side, noise=noise[i:i + a.batch], generator=g,
                            output="float"))
        return torch.cat(out), 1000 * (time.perf_counter() - t0) / a.prompts

    # 2. the reference, then every row against it
    ref, ref_ms = images(teacher, ImagePipelineConfig("euler", a.ref_steps, shift, a.guidance))
    rows = [{"model": "teacher", "sampler": "euler", "steps": a.ref_steps, "psnr_db": None, "ms": ref_ms}]
    runs = [("teacher", teacher, ImagePipelineConfig("euler", n, shift, a.guidance)) for n in a.teacher_steps]
    runs += [("student", student, ImagePipelineConfig("trigflow", n, shift, a.guidance)) for n in a.student_steps]
    print(f"{'model':<8} {'sampler':<8} {'steps':>5} {'PSNR dB':>8} {'p10':>6} {'ms/img':>8}")
    print(f"{'teacher':<8} {'euler':<8} {a.ref_steps:>5} {'ref':>8} {'':>6} {ref_ms:>8.1f}")
    sheet = [ref[:8]]
    for name, model, cfg in runs:
        x, ms = images(model, cfg)
        q = psnr(x, ref)
        rows.append({"model": name, "sampler": cfg.sampler, "steps": cfg.num_steps, "psnr_db": float(q.mean()),
                     "psnr_p10_db": float(q.quantile(0.1)), "ms": ms})
        print(f"{name:<8} {cfg.sampler:<8} {cfg.num_steps:>5} {float(q.mean()):>8.2f} "
              f"{float(q.quantile(0.1)):>6.2f} {ms:>8.1f}")
        sheet.append(x[:8])
    hw = hardware(dev)
    res = {"benchmark": "sprint_student", "date": date.today().isoformat(), "hardware": hw,
           "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model": a.model, "teacher": str(teacher_dir), "student": str(a.student), "student_step": meta.get("step"),
           "prompts": a.prompts, "guidance": a.guidance, "shift": shift, "reference": f"teacher euler {a.ref_steps}",
           "rows": rows}
    path = write_result(a.out, "sprint_student", hw, res, a.suffix)
    # 3. a contact sheet: one row per sampler (reference first), up to eight prompts across
    import matplotlib.pyplot as plt

    rows_img = [torch.cat(list(x.clamp(-1, 1).add(1).div(2).permute(0, 2, 3, 1).cpu()), dim=1) for x in sheet]
    plt.imsave(path.with_suffix(".png"), torch.cat(rows_img, dim=0).numpy())  # (rows H, cols W, 3)
    print("wrote", path.with_suffix(".png"))


if __name__ == "__main__":
    main()
