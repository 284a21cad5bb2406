"""Where the SANA-WM 2.66B bidirectional forward spends its time (issue #6): per-module CUDA time and the top
kernels of our `SanaWM` at 720p, bf16, batch 1, random weights (the inputs of `world_model.py`).

    python benchmarks/profile_world_model.py --frames 161          # one CUDA GPU
    python benchmarks/profile_world_model.py --smoke               # tiny fp32 on CPU (tests)

Two views of the same calls, after warm-up:
1. module times: CUDA events around every child module of every block (and the top-level embedders),
   summed per (block kind, child) over the blocks and averaged over the calls; "other" is the forward's
   time outside them (input preparation, reshapes between children).
2. kernels: `torch.profiler` over the calls, the top kernels by device time, with call counts per forward.

Prints both tables and writes ``<out>/profile_world_model_<hardware>_<YYYYMMDD>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from results_io import hardware, write_result  # benchmarks/ is on sys.path when run as a script
from world_model import wm_inputs


def build_model(preset: str, device: str, dtype: torch.dtype) -> nn.Module:
    """Our SanaWM preset with random weights, softmax attention in bf16 as in the diffusers comparison."""
    from sana_world.world_model import PRESETS, SanaWM

    torch.manual_seed(0)
    with torch.device(device):
        model = SanaWM(PRESETS[preset]())
    model = model.to(dtype).eval()
    for block in model.blocks:
        block.attn.cfg = dataclasses.replace(block.attn.cfg, softmax_in_bf16=dtype == torch.bfloat16)
    return model


class ModuleTimer:
    """CUDA-event (or wall-clock on CPU) time of labelled modules, summed per label."""

    def __init__(self, model: nn.Module, cuda: bool) -> None:
        self.cuda, self.pending, self.handles = cuda, [], []
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        labelled = [(f"top.{n}", m) for n, m in model.named_children() if n != "blocks"]
        for block in model.blocks:
            kind = "softmax" if block.is_softmax else "gdn"
            labelled += [(f"{kind}.{n}", m) for n, m in block.named_children()]
            labelled += [(f"{kind}.attn.{n}", m) for n, m in block.attn.named_children()]
        for label, module in labelled:
            self.handles.append(module.register_forward_pre_hook(self._pre(label)))
            self.handles.append(module.register_forward_hook(self._post(label)))
        self.open: dict[str, list] = defaultdict(list)

    def _now(self) -> Any:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        import time

        return time.perf_counter()

    def _pre(self, label: str):
        def hook(module: nn.Module, args: Any) -> None:
            self.open[label].append(self._now())
        return hook

    def _post(self, label: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            self.pending.append((label, self.open[label].pop(), self._now()))
        return hook

    def collect(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        for label, a, b in self.pending:
            self.totals[label] += a.elapsed_time(b) if self.cuda else (b - a) * 1e3
            self.counts[label] += 1
        self.pending.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def timed_forward(model: nn.Module, inp: dict, cuda: bool) -> float:
    """ms of one forward."""
    import time

    if cuda:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        model(**inp)
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b)
    t0 = time.perf_counter()
    model(**inp)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="sana_wm_2600m")
    p.add_argument("--frames", type=int, default=161, help="video frames (latent frames = (F - 1) / 8 + 1)")
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--smoke", action="store_true", help="tiny fp32 on CPU")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="results folder (--smoke: pass "
                   "a scratch folder)")
    args = p.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    preset, (H, W) = ("tiny", (128, 192)) if args.smoke else (args.preset, (704, 1280))
    frames = 9 if args.smoke else args.frames
    model = build_model(preset, device, dtype)
    cfg = model.cfg
    T = (frames - 1) // cfg.plucker_stride + 1
    hw = (H // 32, W // 32)
    inp = wm_inputs(cfg, T, hw, 7 if args.smoke else 300, device, dtype)
    rows: dict[str, Any] = {}
    with torch.no_grad():
        # 1. warm-up and plain timing
        for _ in range(2):
            timed_forward(model, inp, cuda)
        plain = sorted(timed_forward(model, inp, cuda) for _ in range(args.calls))
        rows["forward_ms_median"] = plain[len(plain) // 2]
        # 2. module times
        timer = ModuleTimer(model, cuda)
        hooked = [timed_forward(model, inp, cuda) for _ in range(args.calls)]
        timer.collect()
        timer.remove()
        per_call = {k: v / args.calls for k, v in timer.totals.items()}
        rows["hooked_forward_ms"] = sum(hooked) / len(hooked)
        rows["modules_ms"] = dict(sorted(per_call.items(), key=lambda kv: -kv[1]))
        rows["module_calls_per_forward"] = {k: v // args.calls for k, v in timer.counts.items()}
        # 3. kernels
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(args.calls):
                model(**inp)
            if cuda:
                torch.cuda.synchronize()
    events = prof.key_averages()
    key = "device_time_total" if cuda else "cpu_time_total"
    kernels = [e for e in events if getattr(e, key, 0) > 0 and (not cuda or e.device_type.name == "CUDA")]
    kernels.sort(key=lambda e: -getattr(e, key))
    total = sum(getattr(e, key) for e in kernels) / 1e3 / args.calls
    rows["kernel_ms_total_per_forward"] = total
    rows["kernels_per_forward"] = sum(e.count for e in kernels) / args.calls
    rows["top_kernels"] = [{"name": e.key[:120], "ms_per_forward": getattr(e, key) / 1e3 / args.calls,
                            "calls_per_forward": e.count / args.calls} for e in kernels[:args.top]]
    machine = hardware(device)
    report = {"benchmark": "profile_world_model", "date": datetime.date.today().isoformat(), "hardware": machine,
              "platform": platform.platform(), "torch": torch.__version__, "preset": preset, "video_frames": frames,
              "latent_frames": T, "tokens": T * hw[0] * hw[1], "dtype": str(dtype), **rows}
    print(f"{preset} {frames} frames ({T} latent, {T * hw[0] * hw[1]} tokens), {machine}: forward "
          f"{rows['forward_ms_median']:.1f} ms (hooked {rows['hooked_forward_ms']:.1f}); kernels "
          f"{total:.1f} ms in {rows['kernels_per_forward']:.0f} launches")
    print(f"{'module':40s} {'ms/fwd':>9s} {'calls':>6s}")
    for k, v in list(rows["modules_ms"].items())[:40]:
        print(f"{k:40s} {v:9.2f} {rows['module_calls_per_forward'][k]:6d}")
    print(f"{'kernel':90s} {'ms/fwd':>8s} {'calls':>6s}")
    for r in rows["top_kernels"]:
        print(f"{r['name'][:90]:90s} {r['ms_per_forward']:8.2f} {r['calls_per_forward']:6.0f}")
    write_result(args.out, "profile_world_model", machine, report)


if __name__ == "__main__":
    main()
