"""What one dream step costs in arithmetic, and the fastest this machine could possibly run it.

Counts the floating-point work of one steady-state ``Dreamer.step`` of a zoo entry (its defaults, the
softmax window full) with torch's ``FlopCounterMode``, by kind of op (matmul, attention, convolution) and
by part (world-model passes, decode); measures this machine's sustained matmul rate (a large square GEMM
and the model's own GEMM shapes, fp32 and bf16); and times the same step at the same batch. Dividing the
work by the best rate gives a floor on the step time that no elementwise fusion, graph capture or kernel
tuning can beat; the speed targets are then read as the fraction of that best rate they would need:

    python benchmarks/step_flops.py --device cpu --threads 2 --target 10
    python benchmarks/step_flops.py --device cuda --batch 512 --target 10000 --bf16 [--compile]

The counter sees matmuls, attention and convolutions only (elementwise work is uncounted: cheap in FLOPs,
not in time), so the floor is a lower bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig

from linear_attention import timed  # noqa: E402  (benchmarks/ is the script's folder)
from results_io import check_device, write_result  # noqa: E402

aten = torch.ops.aten


def _cpu_attention(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


# torch registers the CUDA attention kernels' FLOPs; the CPU flash kernel does the same arithmetic
CPU_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention}
KINDS = {"mm": "matmul", "addmm": "matmul", "bmm": "matmul", "baddbmm": "matmul",
         "convolution": "convolution", "_convolution": "convolution"}  # fmt: skip


def op_kind(op: object) -> str:
    name = str(op).split(".")[1] if str(op).startswith("aten.") else str(op)
    return "attention" if "attention" in name else KINDS.get(name, name)


def count_flops(fn: Callable[[], object]) -> dict[str, int]:
    """FLOPs of ``fn()`` by op kind (matmul, attention, convolution)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as fc:
        fn()
    out: dict[str, int] = {}
    for op, n in fc.get_flop_counts().get("Global", {}).items():
        out[op_kind(op)] = out.get(op_kind(op), 0) + int(n)
    return out


def gemm_rates(dev: torch.device, shapes: list[tuple[int, int, int]], repeats: int) -> list[dict]:
    """Sustained FLOP/s of (M, K) @ (K, N) for each shape, fp32 and bf16."""
    rows = []
    for M, K, N in shapes:  # 1. one row per shape and precision
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(M, K, device=dev, dtype=dtype), torch.randn(K, N, device=dev, dtype=dtype)
            s = timed(lambda a=a, b=b: a @ b, 2, repeats, dev.type == "cuda")[0] / 1e3  # seconds
            rows.append(dict(shape=[M, K, N], dtype=str(dtype).split(".")[1], tflops=2 * M * K * N / s / 1e12))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1, help="streams stepped together")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--bf16", action="store_true", help="time the step under bf16 autocast")
    p.add_argument("--compile", action="store_true", help="time the compiled step (DreamerConfig.compile)")
    p.add_argument("--target", type=float, default=10.0, help="env steps/s the speed goal asks for")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--gemm-size", type=int, default=2048, help="the large square GEMM's side")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    dev = check_device(p, args.device)
    from fidelity import hardware  # benchmarks/ is the script's folder

    if args.threads:
        torch.set_num_threads(args.threads)
    models = zoo.load(args.model, device=dev)
    dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults, bf16=args.bf16,
                                                     compile=args.compile))
    B, S = args.batch, models.resolution
    g = torch.Generator(device=dev).manual_seed(0)
    rgb = torch.randint(0, 256, (B, S, S, 3), generator=g, device=dev, dtype=torch.uint8)
    K = torch.tensor([[S / 2, 0, S / 2], [0, S / 2, S / 2], [0, 0, 1.0]])
    pose = torch.eye(4, device=dev).repeat(B, 1, 1)
    state = dreamer.start(rgb, pose, K, ["a room"] * B)
    # 1. Fill the softmax window (sink + window frames), so the step counted is a steady-state one.
    warm = dreamer.config.sink_frames + dreamer.config.window_frames + 1
    for i in range(warm):
        pose = pose.clone()
        pose[:, 0, 3] += 0.05
        _, state = dreamer.step(state, pose, generator=g)
    z = state.last  # (B, C, h, w)
    # 2. Count: the whole step, and the decode alone (the rest is the world model's passes); counted on an
    # eager twin (the counter sees aten ops, which a compiled graph hides), the same arithmetic.
    counter = Dreamer(models, dataclasses.replace(dreamer.config, compile=False)) if args.compile else dreamer
    counter.step(state, pose, generator=g)  # a new engine projects the caption once: not a step's work
    step_flops = count_flops(lambda: counter.step(state, pose, generator=g))
    decode_flops = count_flops(lambda: models.codec.decode(z, as_uint8=True))
    total = sum(step_flops.values())
    per_env = total / B
    # 3. Time the same step, and this machine's best matmul rates.
    step_s = timed(lambda: dreamer.step(state, pose, generator=g), 2, args.repeats, dev.type == "cuda")[0] / 1e3
    n = args.gemm_size
    c = models.world_model.cfg.dim
    tokens = 2 * (S // models.codec.downsample_factor) ** 2 * B  # a step's two-frame pass
    shapes = [(n, n, n), (tokens, c, 3 * c), (tokens, c, int(c * models.world_model.cfg.mlp_ratio) * 2)]
    gemm = gemm_rates(dev, shapes, args.repeats)
    best = {dt: max(r["tflops"] for r in gemm if r["dtype"] == dt) for dt in ("float32", "bfloat16")}
    res = {
        "benchmark": "step_flops",
        "date": date.today().isoformat(),
        "hardware": hardware(dev),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": args.model,
        "dream_defaults": models.entry.dream_defaults,
        "batch": B,
        "bf16_step": args.bf16,
        "compiled_step": args.compile,
        "gflops_per_env_step": {k: v / B / 1e9 for k, v in step_flops.items()},
        "gflops_per_env_step_total": per_env / 1e9,
        "gflops_per_env_decode": sum(decode_flops.values()) / B / 1e9,
        "gemm": gemm,
        "best_gemm_tflops": best,
        "step_ms": step_s * 1e3,
        "env_steps_per_s": B / step_s,
        "achieved_tflops": total / step_s / 1e12,
        "floor_env_steps_per_s": {dt: best[dt] * 1e12 / per_env for dt in best},
        "target_env_steps_per_s": args.target,
        "target_needs_tflops": args.target * per_env / 1e12,
        "target_needs_fraction_of_best_gemm": {dt: args.target * per_env / (best[dt] * 1e12) for dt in best},
    }
    print(f"{args.model} on {res['hardware']}, batch {B}: {per_env / 1e9:.2f} GFLOP per env step "
          f"({', '.join(f'{k} {v / B / 1e9:.2f}' for k, v in step_flops.items())}; decode "
          f"{res['gflops_per_env_decode']:.2f})")
    print(f"step {step_s * 1e3:.1f} ms = {B / step_s:.1f} env steps/s, {res['achieved_tflops'] * 1e3:.1f} GFLOP/s")
    for dt in best:
        print(f"best {dt} GEMM {best[dt] * 1e3:.1f} GFLOP/s -> floor {res['floor_env_steps_per_s'][dt]:.1f} "
              f"env steps/s; {args.target:g} steps/s needs {res['target_needs_fraction_of_best_gemm'][dt]:.0%} of it")
    tag = ("bf16" if args.bf16 else "fp32") + ("_compiled" if args.compile else "")
    write_result(args.out, "step_flops", res["hardware"], res, suffix=f"_b{B}_{tag}")


if __name__ == "__main__":
    main()
