"""Renderer throughput: frames per second of the torch ray caster (and the open3d renderer where present).

    python benchmarks/render.py [--quick] [--only cpu|cuda|all] [--out DIR]

CPU: single frames and small batches at 64^2, 128^2 and 256^2 with shadows, the default (tile-culled)
torch path, the brute-force path and open3d. CUDA (when available): 128^2 batches of 256 and 1024 cameras
spread over several packed scenes, with and without shadows and torch.compile. Scenes come from
``sample_scene`` (single- and multi-room). Prints a table and writes JSON to
``<out>/render_<hardware>_<YYYYMMDD>.json`` (``<out>`` defaults to ``results/`` beside this script).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sana_world.camera import intrinsics_from_fov, look_at
from sana_world.render.torch_caster import TorchRenderer, pack_scenes
from sana_world.worlds.sampler import sample_scene
from sana_world.worlds.spec import SceneSpec

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware, write_result  # noqa: E402

SEEDS = (3, 4, 0, 5, 2, 9, 6, 7)  # single rooms (3, 2) and 2-4 room layouts


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    only: str = "all"  # "cpu" | "cuda" | "all"
    out: str = str(Path(__file__).parent / "results")
    compile_mode: str = "max-autotune-no-cudagraphs"
    cpu_threads: int = 1  # torch threads for the CPU rows (1 is steady on a shared machine)

    @property
    def cpu_reps(self) -> int:
        return 3 if self.quick else 10

    @property
    def gpu_reps(self) -> int:
        return 3 if self.quick else 10


@dataclass
class Row:
    renderer: str
    device: str
    size: int
    batch: int
    shadows: bool
    compile: bool
    ms_per_call: float  # median
    frames_per_s: float  # from the median
    note: str = ""
    ms_per_call_min: float = float("nan")


def cameras(spec: SceneSpec, n: int) -> torch.Tensor:
    """``n`` cameras (n, 4, 4) at eye height, spread over the rooms, looking across each room."""
    poses = []
    for i in range(n):
        r = spec.rooms[i % len(spec.rooms)]
        cx, cz = (r.x0 + r.x1) / 2, (r.z0 + r.z1) / 2
        a = 2 * math.pi * (i / max(n, 1)) + 0.3
        ex, ez = cx + 0.35 * (r.x1 - r.x0) * math.cos(a), cz + 0.35 * (r.z1 - r.z0) * math.sin(a)
        eye = torch.tensor([ex, -1.5, ez])
        poses.append(look_at(eye, torch.tensor([cx, -1.2, cz])))
    return torch.stack(poses)


def timed(fn: Callable[[], Any], reps: int, cuda: bool, warmup: int = 2) -> tuple[float, float]:
    """(median, min) seconds of one call; on a shared CPU the min is the steadier number."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def bench_cpu(cfg: BenchConfig, rows: list[Row]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.cpu_threads)
    try:
        _bench_cpu(cfg, rows)
    finally:
        torch.set_num_threads(threads)


def _bench_cpu(cfg: BenchConfig, rows: list[Row]) -> None:
    specs = [sample_scene(s) for s in SEEDS[: 4 if cfg.quick else 8]]
    sizes = (64, 128) if cfg.quick else (64, 128, 256)
    renderers: list[tuple[str, Any]] = [("torch", TorchRenderer("cpu", shadows=True)),
                                        ("torch-brute", TorchRenderer("cpu", shadows=True, cull=False))]
    try:
        from sana_world.render.open3d_backend import Open3DRenderer

        renderers.append(("open3d", Open3DRenderer(shadows=True)))
    except ImportError as e:
        rows.append(Row("open3d", "cpu", 0, 0, True, False, float("nan"), float("nan"), f"unavailable: {e}"))
    for size in sizes:
        K = intrinsics_from_fov(size, size, 90.0)
        for batch in (1, 8):
            for name, r in renderers:
                if name == "torch-brute" and (size > 128 or batch > 1):
                    continue  # the brute-force path is the GPU's; on CPU it is only a reference point
                # 1. each scene in turn (its packed form / mesh is built once and cached by the renderer)
                med, best = [], []
                for spec in specs:
                    c2w = cameras(spec, batch)
                    m, b = timed(lambda: r.render(spec, c2w, K, size, size), cfg.cpu_reps, False, 1)
                    med.append(m)
                    best.append(b)
                sec = statistics.mean(med)
                rows.append(Row(name, "cpu", size, batch, True, False, 1e3 * sec, batch / sec,
                                f"mean over {len(specs)} scenes, {cfg.cpu_threads} torch thread(s)",
                                1e3 * statistics.mean(best)))
                print(_fmt(rows[-1]), flush=True)
                save(cfg, rows)


def check_cuda(specs: list[SceneSpec], rows: list[Row]) -> None:
    """CUDA brute force against the CPU (culled) path on a few cameras: ids, depth and colours agree."""
    K = intrinsics_from_fov(64, 64, 90.0)
    cpu, gpu = TorchRenderer("cpu"), TorchRenderer("cuda")
    same = total = 0
    depth_err = rgb_err = 0.0
    for spec in specs[:4]:
        c2w = cameras(spec, 4)
        a, b = cpu.render(spec, c2w, K, 64, 64), gpu.render(spec, c2w.cuda(), K.cuda(), 64, 64).to("cpu")
        same += int((a.ids == b.ids).sum())
        total += a.ids.numel()
        fin = torch.isfinite(a.depth) & torch.isfinite(b.depth)
        depth_err = max(depth_err, float((a.depth[fin] - b.depth[fin]).abs().max()))
        rgb_err = max(rgb_err, float((a.rgb.float() - b.rgb.float()).abs().mean()))
    note = (f"cuda vs cpu: ids agree {same / total:.5f}, max |depth| diff {depth_err:.2e}, "
            f"mean |rgb| diff {rgb_err:.3f}")
    nan = float("nan")
    rows.append(Row("check", torch.cuda.get_device_name(0), 64, 16, True, False, nan, nan, note))
    print(note, flush=True)


def bench_cuda(cfg: BenchConfig, rows: list[Row]) -> None:
    dev = "cuda"
    specs = [sample_scene(s) for s in SEEDS]
    check_cuda(specs, rows)
    packed = pack_scenes(specs, dev)
    size = 128
    gpu = torch.cuda.get_device_name(0)
    K = intrinsics_from_fov(size, size, 90.0).to(dev)
    batches = (256,) if cfg.quick else (256, 1024)
    for compile_ in (False, True):
        for shadows in (True, False):
            r = TorchRenderer(dev, shadows=shadows, compile=compile_, compile_mode=cfg.compile_mode)
            for batch in batches:
                index = torch.arange(batch, device=dev) % len(specs)
                per_scene = [cameras(s, -(-batch // len(specs))) for s in specs]
                c2w = torch.stack([per_scene[j % len(specs)][j // len(specs)] for j in range(batch)]).to(dev)
                t0 = time.perf_counter()
                r.render_packed(packed, index, c2w, K, size, size)  # compiles here when compile_
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                call = lambda: r.render_packed(packed, index, c2w, K, size, size)  # noqa: E731
                sec, best = timed(call, cfg.gpu_reps, True)
                rows.append(Row("torch", gpu, size, batch, shadows, compile_, 1e3 * sec, batch / sec,
                                f"{len(specs)} packed scenes; first call {first:.1f} s", 1e3 * best))
                print(_fmt(rows[-1]), flush=True)
                save(cfg, rows)
    # single-scene render() of one camera: the latency an env step sees on the GPU
    r = TorchRenderer(dev, shadows=True)
    c2w = cameras(specs[0], 1).to(dev)
    sec, best = timed(lambda: r.render(specs[0], c2w, K, size, size), cfg.gpu_reps, True)
    rows.append(Row("torch", gpu, size, 1, True, False, 1e3 * sec, 1 / sec, "render()", 1e3 * best))
    print(_fmt(rows[-1]), flush=True)


def _fmt(r: Row) -> str:
    return (f"{r.renderer:12s} {r.device[:24]:24s} {r.size:4d}^2 B={r.batch:<5d} shadows={int(r.shadows)} "
            f"compile={int(r.compile)} {r.ms_per_call:9.2f} ms/call (min {r.ms_per_call_min:8.2f}) "
            f"{r.frames_per_s:10.1f} frames/s  {r.note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes, scenes and repetitions")
    ap.add_argument("--only", choices=("cpu", "cuda", "all"), default="all",
                    help="cuda: the CUDA rows only (refused on a machine without CUDA: no rows to write)")
    ap.add_argument("--out", default=BenchConfig.out, help="directory for the JSON results")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                    help="torch.compile mode for the CUDA rows")
    ap.add_argument("--cpu-threads", type=int, default=1, help="torch threads for the CPU rows")
    args = ap.parse_args(argv)
    if args.only == "cuda":
        check_device(ap, "cuda", "--only cuda")
    cfg = BenchConfig(args.quick, args.only, args.out, args.compile_mode, args.cpu_threads)
    rows: list[Row] = []
    if cfg.only in ("cpu", "all"):
        bench_cpu(cfg, rows)
    if cfg.only in ("cuda", "all"):
        if torch.cuda.is_available():
            bench_cuda(cfg, rows)
        else:
            print("CUDA not available: GPU rows skipped")
    print("\n" + "\n".join(_fmt(r) for r in rows))
    print(f"wrote {save(cfg, rows)}")
    return 0


def save(cfg: BenchConfig, rows: list[Row]) -> Path:
    """Write the rows so far (also called mid-run, so a cut-off run keeps what it measured)."""
    meta = {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "config": asdict(cfg),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return write_result(cfg.out, "render", hardware(), {"meta": meta, "rows": [asdict(r) for r in rows]},
                        quiet=True)


if __name__ == "__main__":
    raise SystemExit(main())
