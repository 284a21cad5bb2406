"""Where an autoencoder's reconstruction error lies, on frames of held-out GT scenes.

The issue's bar is 30 dB reconstruction PSNR at 128^2. This script says what stands between an autoencoder
and it, for each autoencoder given (the shipped one by default), all scored on the same frames in one run:

- PSNR (dB, uint8 scale, mean over frames) and its spread (10th / 50th / 90th percentile over frames);
- the share of the squared error on edge pixels (GT gradient magnitude above ``--edge``: the 1-pixel
  mortar lines, wood grain and object outlines of our rooms) and the fraction of pixels that are edges;
- the PSNR the frames would have if only the edge pixels, or only the flat ones, were reconstructed
  exactly (the ceiling each half holds back);
- for scale, two reconstructions with no learning: 2x average-pool + bilinear upsampling, and 8x (the
  latent grid's resolution).

A PNG shows the worst and best frame of the first autoencoder: GT | reconstruction | |error| x4.

    python benchmarks/ae_error.py                                  # the shipped rooms-128 autoencoder
    python benchmarks/ae_error.py --ae zoo runs/ae_anchor/export --trajectories 64
    python benchmarks/ae_error.py --supersample 2 --suffix _ssaa2   # the same scenes rendered antialiased
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sana_world.data.pool import ClipPool, PoolConfig
from sana_world.generators.autoencoder import load_autoencoder
from sana_world.worlds.sampler import HELDOUT_START
from sana_world.zoo import ZOO_ROOT

from results_io import check_device, hardware, write_result  # noqa: E402  (benchmarks/ is the script's folder)

ZOO_AE = str(ZOO_ROOT / "rooms-128" / "autoencoder")


def psnr_of(sq_err: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB) from squared errors (N, H, W) on the uint8 scale."""
    return 10 * torch.log10(255.0**2 / sq_err.mean(dim=(1, 2)).clamp(min=1e-10))


def edge_mask(rgb: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, H, W) bool: pixels whose grey-level forward difference (right + down) exceeds ``threshold``."""
    g = rgb.float().mean(-1)  # (N, H, W)
    d = torch.zeros_like(g)
    d[:, :, :-1] += (g[:, :, 1:] - g[:, :, :-1]).abs()
    d[:, :-1, :] += (g[:, 1:, :] - g[:, :-1, :]).abs()
    return d > threshold


def scores(recon: torch.Tensor, rgb: torch.Tensor, edges: torch.Tensor) -> dict[str, float]:
    """Error statistics of uint8 reconstructions ``recon`` of ``rgb`` (both (N, H, W, 3))."""
    sq = (recon.float() - rgb.float()).square().mean(-1)  # (N, H, W)
    p = psnr_of(sq)
    return {
        "psnr_db": float(p.mean()),
        "psnr_p10_p50_p90": [float(q) for q in torch.quantile(p, torch.tensor([0.1, 0.5, 0.9]))],
        "edge_share_of_squared_error": float((sq * edges).sum() / sq.sum().clamp(min=1e-10)),
        "psnr_if_edges_exact_db": float(psnr_of(sq * ~edges).mean()),
        "psnr_if_flat_exact_db": float(psnr_of(sq * edges).mean()),
    }


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (N, 3, H, W) -> uint8 (N, H, W, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def reconstruct(folder: str, rgb: torch.Tensor, device: torch.device, batch: int = 64) -> torch.Tensor:
    ae = load_autoencoder(folder).to(device).eval()
    out = []
    for a in range(0, rgb.shape[0], batch):  # 1. batches of frames through encode + decode
        x = rgb[a:a + batch].to(device).permute(0, 3, 1, 2).float() / 127.5 - 1  # (b, 3, H, W)
        out.append(to_uint8(ae(x).sample).cpu())
    return torch.cat(out)


def pooled(rgb: torch.Tensor, factor: int) -> torch.Tensor:
    """``factor``x average-pool then bilinear upsampling: a reconstruction with no learning."""
    x = rgb.permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, H, W)
    y = F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="bilinear", align_corners=False)
    return to_uint8(y)


def sheet(rgb: torch.Tensor, recon: torch.Tensor, psnr: torch.Tensor, path: Path) -> None:
    """Worst and best frame: GT | reconstruction | |error| x4, each row labelled by its PSNR in the file."""
    rows = []
    for i in (int(psnr.argmin()), int(psnr.argmax())):
        err = ((recon[i].float() - rgb[i].float()).abs().mean(-1) * 4).clamp(0, 255).to(torch.uint8)
        rows.append(np.concatenate([rgb[i].numpy(), recon[i].numpy(), np.stack([err.numpy()] * 3, -1)], 1))
    img = Image.fromarray(np.concatenate(rows, 0))
    img.resize((img.width * 2, img.height * 2), Image.NEAREST).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ae", nargs="+", default=["zoo"], help="AutoencoderDC folders ('zoo': the shipped one)")
    p.add_argument("--trajectories", type=int, default=64, help="held-out trajectories (16 frames each)")
    p.add_argument("--edge", type=float, default=20.0, help="grey-level gradient threshold of an edge pixel")
    p.add_argument("--supersample", type=int, default=1,
                   help="PoolConfig.supersample: rays a side per pixel, box-filtered (antialiased GT; the zoo "
                        "autoencoder was trained on 1, aliased frames)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    torch.set_num_threads(a.threads)
    if a.supersample < 1:
        p.error(f"--supersample must be >= 1, got {a.supersample}")
    pool = ClipPool(PoolConfig(trajectories=a.trajectories, steps=15, size=128, workers=0,
                               supersample=a.supersample, seed=HELDOUT_START), dev, progress=True)
    rgb = pool.rgb.flatten(0, 1).cpu()  # (N, 128, 128, 3) uint8, rendered on the device
    edges = edge_mask(rgb, a.edge)
    result = {"benchmark": "ae_error", "date": f"{date.today():%Y-%m-%d}", "hardware": hardware(dev),
              "platform": platform.platform(),
              "torch": torch.__version__, "frames": int(rgb.shape[0]), "edge_threshold": a.edge,
              "supersample": a.supersample,
              "edge_pixel_fraction": float(edges.float().mean()),
              "scenes": f"held-out scene seeds from {HELDOUT_START}, {a.trajectories} trajectories", "rows": []}
    print(f"{rgb.shape[0]} frames, {100 * result['edge_pixel_fraction']:.1f} % edge pixels")
    print(f"{'reconstruction':<40} {'PSNR':>6} {'p10':>6} {'p90':>6} {'edge err %':>10} {'edges exact':>11} "
          f"{'flat exact':>10}")
    first = None
    names = [(f, ZOO_AE if f == "zoo" else f) for f in a.ae]
    rows = [(name, reconstruct(folder, rgb, dev)) for name, folder in names]
    rows += [("2x avg-pool + bilinear", pooled(rgb, 2)), ("8x avg-pool + bilinear", pooled(rgb, 8))]
    for name, recon in rows:  # 1. every reconstruction scored on the same frames
        s = {"reconstruction": name, **scores(recon, rgb, edges)}
        result["rows"].append(s)
        q = s["psnr_p10_p50_p90"]
        print(f"{name[:40]:<40} {s['psnr_db']:6.2f} {q[0]:6.2f} {q[2]:6.2f} "
              f"{100 * s['edge_share_of_squared_error']:10.1f} {s['psnr_if_edges_exact_db']:11.2f} "
              f"{s['psnr_if_flat_exact_db']:10.2f}")
        if first is None:
            first = recon
    path = write_result(a.out, "ae_error", result["hardware"], result, a.suffix)
    png = path.with_suffix(".png")
    sheet(rgb, first, psnr_of((first.float() - rgb.float()).square().mean(-1)), png)
    print("wrote", png)


if __name__ == "__main__":
    main()
