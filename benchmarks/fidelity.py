"""How true is the dream? Dream vs ground truth at the same poses on held-out scenes, with baselines.

For ``--scenes`` held-out scenes (seeds from ``HELDOUT_START``, never trained on) and the fixed camera path
of each (the random explorer's rollout from the scene's seed, ``--horizon`` steps), the dream starts from
the GT frame 0 and follows the path; everything below is measured in the same run:

- PSNR / SSIM of the dream at horizons 1, 8, 32, 128 (and the whole curve for the plot), against
  "hold" (GT frame 0 repeated: the last GT frame the dream saw) and the autoencoder's reconstruction of
  the GT frame (the ceiling).
- revisit consistency: the path out for k steps and back the same way; PSNR between the dream frames at
  the two visits of each pose.
- camera following: the photometric pose estimator (``sana_world.pose_estimation``) on consecutive dream
  frames vs the true motion, beside its own error on the GT frames.
- stability: a ``--long`` step rollout on a few scenes: every frame finite, no collapse (frame contrast
  kept).

    python benchmarks/fidelity.py --scenes 64 --horizon 128     # writes results/ beside this script
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch
from tqdm import tqdm

from sana_world.camera import intrinsics_from_fov
from sana_world.data.pool import plan_many
from sana_world.envs.world import HELDOUT_START
from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.metrics import psnr, ssim
from sana_world.pose_estimation import estimate_relative_pose, motion_magnitude, pose_errors
from sana_world.render.base import downsample_supersampled
from sana_world.render.torch_caster import TorchRenderer, pack_scenes

sys.path.insert(0, str(Path(__file__).parent))
from results_io import check_device, hardware  # noqa: E402

HORIZONS = (1, 8, 32, 128)


def render_paths(seeds: list[int], steps: int, size: int, device: torch.device, workers: int, supersample: int = 1):
    """Plans (explorer rollouts) of held-out scenes and their GT rgb (N, F, S, S, 3) and depth (N, F, S, S).
    ``supersample`` s: rendered at s·S a side and brought down as ``GTWorld.render`` does
    (``render.base.downsample_supersampled``)."""
    plans = plan_many(seeds, steps, "explore", workers)
    K = intrinsics_from_fov(size, size, 90.0).to(device)
    R = size * supersample
    K_render = intrinsics_from_fov(R, R, 90.0).to(device)
    c2w = torch.stack([torch.from_numpy(p.c2w) for p in plans]).to(device)  # (N, F, 4, 4)
    rgbs, depths = [], []
    if device.type == "cpu":  # the CPU GT envs' default renderer (open3d + numba), several times faster here
        from sana_world.render.open3d_backend import Open3DRenderer

        renderer = Open3DRenderer(shadows=True)
    else:
        renderer = TorchRenderer(device=device, shadows=True)
    for i, p in enumerate(tqdm(plans, desc="render GT", unit="scene")):  # 1. one scene at a time
        if device.type == "cpu":
            out = renderer.render(p.spec, c2w[i], K_render, R, R)
        else:
            out = renderer.render_packed(pack_scenes([p.spec], device), torch.zeros(c2w.shape[1], dtype=torch.long,
                                         device=device), c2w[i], K_render, R, R)  # fmt: skip
        out = downsample_supersampled(out, supersample)
        rgbs.append(out.rgb)  # (F, S, S, 3)
        depths.append(out.depth.float())  # (F, S, S)
    return plans, c2w, torch.stack(rgbs), torch.stack(depths), K


def dream_paths(dreamer: Dreamer, anchors: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, captions: list[str],
                batch: int, seed: int, desc: str) -> torch.Tensor:
    """Dream frames (N, T, S, S, 3) along c2w[:, 1:] from the anchor frames (N, S, S, 3) at c2w[:, 0]."""
    out = []
    for a in tqdm(range(0, anchors.shape[0], batch), desc=desc, unit="batch"):  # 1. batches of streams
        z = min(a + batch, anchors.shape[0])
        gen = torch.Generator(dreamer.device).manual_seed(seed + a)
        state = dreamer.start(anchors[a:z], c2w[a:z, 0], K.expand(z - a, 3, 3), captions[a:z])
        frames, _ = dreamer.rollout(state, c2w[a:z, 1:], gen)
        out.append(frames.cpu())
    return torch.cat(out)


def curve(a: torch.Tensor, b: torch.Tensor, ssim_at: list[int] | None = None) -> tuple[list[float], list[float]]:
    """Mean PSNR over scenes of every frame and mean SSIM of the frames ``ssim_at`` (0-based; None: all,
    NaN elsewhere: SSIM costs ~20 ms a frame on the CPU); frames (N, T, H, W, 3), one scene at a time."""
    T = a.shape[1]
    at = list(range(T)) if ssim_at is None else [t for t in ssim_at if t < T]
    p = torch.stack([psnr(a[i], b[i]) for i in range(a.shape[0])])  # (N, T)
    s = torch.stack([ssim(a[i, at], b[i, at]) for i in range(a.shape[0])]).mean(0)  # (len(at),)
    full = [math.nan] * T
    for j, t in enumerate(at):
        full[t] = float(s[j])
    return p.mean(0).tolist(), full


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128")
    p.add_argument("--scenes", type=int, default=64)
    p.add_argument("--horizon", type=int, default=128)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="Flow-Euler steps per frame to score")
    p.add_argument("--revisit", type=int, default=16, help="steps out before coming back")
    p.add_argument("--revisit-scenes", type=int, default=64, help="scenes used for the revisit test")
    p.add_argument("--follow", type=int, default=32, help="consecutive pairs per scene for camera following")
    p.add_argument("--long", type=int, default=1000, help="steps of the stability rollout (0: skip)")
    p.add_argument("--long-scenes", type=int, default=4)
    p.add_argument("--context-sigma", type=float, default=None,
                   help="noise level of dreamed frames entering the state (default: the zoo entry's)")
    p.add_argument("--window-frames", type=int, default=None,
                   help="recent frames the softmax blocks see (default: the zoo entry's, else 10 as trained)")
    p.add_argument("--supersample", type=int, default=None,
                   help="GT frames' rays a side per pixel (default: the zoo entry's, the frames it trained on)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    dev = check_device(p, args.device)
    t0 = time.perf_counter()
    models = zoo.load(args.model, device=dev)
    overrides = {} if args.context_sigma is None else {"context_sigma": args.context_sigma}
    if args.window_frames is not None:
        overrides["window_frames"] = args.window_frames
    size = models.resolution
    ss = models.entry.supersample if args.supersample is None else args.supersample
    if ss < 1:
        p.error(f"--supersample must be >= 1, got {ss}")
    seeds = [HELDOUT_START + i for i in range(args.scenes)]
    # 1. GT paths and frames
    plans, c2w, gt, depth, K = render_paths(seeds, args.horizon, size, dev, args.workers, ss)
    sections = {"load + render GT": time.perf_counter() - t0}  # seconds per part of this run
    mark = time.perf_counter()
    captions = [pl.caption for pl in plans]
    gt_cpu = gt.cpu()
    H = args.horizon
    horizons = [h for h in HORIZONS if h <= H]
    # 2. baselines: hold and the autoencoder ceiling
    at = [h - 1 for h in horizons]
    hold_psnr, hold_ssim = curve(gt_cpu[:, :1].expand(-1, H, -1, -1, -1), gt_cpu[:, 1:], at)
    idx = [h for h in horizons]  # the ceiling at the reported horizons only (decoding every frame is slow on CPU)
    with torch.no_grad():
        recon = torch.cat([models.codec.decode(models.codec.encode(gt[i, idx]), as_uint8=True).cpu()[None]
                           for i in range(gt.shape[0])])  # (N, len(idx), S, S, 3)
    ae_p, ae_s = curve(recon, gt_cpu[:, idx])
    ae_psnr = [math.nan] * H
    ae_ssim = [math.nan] * H
    for j, h in enumerate(idx):
        ae_psnr[h - 1], ae_ssim[h - 1] = ae_p[j], ae_s[j]
    sections["baselines"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result: dict = {"benchmark": "fidelity", "date": date.today().isoformat(), "hardware": hardware(dev),
                    "platform": platform.platform(), "torch": torch.__version__, "model": args.model,
                    "scenes": args.scenes, "horizon": H, "supersample": ss, "heldout_seeds": [seeds[0], seeds[-1]],
                    "baselines": {"hold": {"psnr": hold_psnr, "ssim": hold_ssim},
                                  "autoencoder": {"psnr": ae_psnr, "ssim": ae_ssim}}, "dream": {}}
    # 3. the dream, per sampler setting
    for steps in args.steps:
        dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults, num_steps=steps,
                                                         **overrides))
        frames = dream_paths(dreamer, gt[:, 0], c2w, K, captions, args.batch, 0, f"dream ({steps} step)")
        d_psnr, d_ssim = curve(frames, gt_cpu[:, 1:], at)
        row = {"psnr": d_psnr, "ssim": d_ssim, "finite": bool(torch.isfinite(frames.float()).all()),
               "dreamer": dataclasses.asdict(dreamer.config)}
        # 3a. revisits: out k steps and back along the same poses
        k, m = min(args.revisit, H), min(args.revisit_scenes, args.scenes)
        if m > 0 and k > 1:
            path = torch.cat([c2w[:m, : k + 1], c2w[:m, :k].flip(1)], dim=1)  # (m, 2k + 1, 4, 4)
            rev = dream_paths(dreamer, gt[:m, 0], path, K, captions[:m], args.batch, 1, f"revisit ({steps} step)")
            out_f, back_f = rev[:, : k - 1], rev[:, k : 2 * k - 1].flip(1)  # poses 1..k-1, out and back
            row["revisit_scenes"] = m
            row["revisit_psnr"] = float(psnr(out_f, back_f).mean())
            row["revisit_psnr_to_gt"] = float(psnr(back_f, gt_cpu[:m, 1:k]).mean())
            row["revisit_psnr_out_to_gt"] = float(psnr(out_f, gt_cpu[:m, 1:k]).mean())
        # 3b. camera following on consecutive frames 1..follow
        n = min(args.follow, H - 1)
        if n > 0:
            T_true = (torch.linalg.inv(c2w[:, 2:n + 2]) @ c2w[:, 1:n + 1]).reshape(-1, 4, 4)
            Kp = K.expand(T_true.shape[0], 3, 3)
            da = depth[:, 1:n + 1].reshape(-1, size, size)
            est_d = estimate_relative_pose(frames[:, :n].reshape(-1, size, size, 3).to(dev), da,
                                           frames[:, 1:n + 1].reshape(-1, size, size, 3).to(dev), Kp)
            est_g = estimate_relative_pose(gt[:, 1:n + 1].reshape(-1, size, size, 3), da,
                                           gt[:, 2:n + 2].reshape(-1, size, size, 3), Kp)
            rd, td = pose_errors(est_d, T_true)
            rg, tg = pose_errors(est_g, T_true)
            rm, tm = motion_magnitude(T_true)
            row["camera_following"] = {"dream_rot_err_deg": float(rd.mean()), "dream_trans_err_m": float(td.mean()),
                                       "estimator_on_gt_rot_err_deg": float(rg.mean()),
                                       "estimator_on_gt_trans_err_m": float(tg.mean()),
                                       "true_motion_rot_deg": float(rm.mean()), "true_motion_trans_m": float(tm.mean())}
        result["dream"][f"euler{steps}"] = row
        sections[f"dream euler{steps} (revisit, follow)"] = time.perf_counter() - mark
        mark = time.perf_counter()
    # 4. stability over a long rollout
    if args.long:
        n = min(args.long_scenes, args.scenes)
        lplans, lc2w, lgt, _, _ = render_paths(seeds[:n], args.long, size, dev, args.workers, ss)
        dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults, num_steps=args.steps[0],
                                                         **overrides))
        frames = dream_paths(dreamer, lgt[:, 0], lc2w, K, [pl.caption for pl in lplans], n, 2, "long rollout")
        std = frames.float().std(dim=(2, 3, 4))  # (n, T) contrast of each frame
        gstd = lgt[:, 1:].float().std(dim=(2, 3, 4)).cpu()
        last = min(100, frames.shape[1])
        tail = lgt[:, 1:][:, -last:].cpu()  # GT of the dream's last frames
        result["long"] = {"steps": args.long, "scenes": n, "finite": bool(torch.isfinite(frames.float()).all()),
                          "min_frame_std": float(std.min()), "gt_min_frame_std": float(gstd.min()),
                          "last100_frame_std": float(std[:, -last:].mean()),
                          "gt_last100_frame_std": float(gstd[:, -last:].mean()),
                          "last100_psnr": float(psnr(frames[:, -last:], tail).mean()),
                          "last100_hold_psnr": float(psnr(lgt[:, :1].cpu().expand(-1, last, -1, -1, -1),
                                                          tail).mean())}
        sections["long rollout"] = time.perf_counter() - mark
    result["seconds"] = time.perf_counter() - t0
    result["section_seconds"] = sections
    summarise(result, horizons, Path(args.out))


def summarise(result: dict, horizons: list[int], out: Path) -> None:
    """Print the table, write the JSON and the PSNR-vs-horizon plot."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fidelity_{result['hardware']}_{result['date'].replace('-', '')}"
    b = result["baselines"]
    print(f"{'PSNR dB / SSIM':<22}" + "".join(f"h={h:<14}" for h in horizons))
    rows = [("hold", b["hold"]), ("autoencoder (ceiling)", b["autoencoder"])]
    rows += [(f"dream {k}", v) for k, v in result["dream"].items()]
    for name, r in rows:
        print(f"{name:<22}" + "".join(f"{r['psnr'][h - 1]:6.2f} / {r['ssim'][h - 1]:.3f}  " for h in horizons))
    result["horizons"] = horizons
    for k, v in result["dream"].items():
        v["margin_over_hold_db"] = {str(h): v["psnr"][h - 1] - b["hold"]["psnr"][h - 1] for h in horizons}
        print(f"{k}: over hold {v['margin_over_hold_db']}, revisit PSNR {v.get('revisit_psnr', math.nan):.2f}, "
              f"camera {v.get('camera_following')}")
    if "long" in result:
        print("long rollout:", result["long"])
    if "section_seconds" in result:
        print("seconds:", {k: round(v, 1) for k, v in result["section_seconds"].items()})
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = list(range(1, len(b["hold"]["psnr"]) + 1))
    for name, r in rows:
        pts = [(h, v) for h, v in zip(x, r["psnr"]) if v == v]  # the AE ceiling has the reported horizons only
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o--" if len(pts) < len(x) else "-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("horizon (steps after the last GT frame)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{result['model']}: dream vs GT on {result['scenes']} held-out scenes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    print("wrote", out / f"{stem}.json")



if __name__ == "__main__":
    main()
