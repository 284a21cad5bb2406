"""Two decoders for one latent space, side by side: the same dream, decoded by each, scored against GT.

A decoder trained for the zoo's latents (the autoencoder trainer's ``--freeze-encoder``) changes nothing
upstream of the pixels: the world model streams latents, and a dream's latents are the same whichever
decoder turns them into frames. So one dream per scene is made (the shipped Dreamer, its defaults) and
each latent frame is decoded by both; all numbers come from the same run:

- the autoencoder ceiling of each (encode GT with the shared encoder, decode) on the held-out frames;
- dream PSNR against GT at horizons 1, 8, 32 (and hold, the GT start frame repeated, for scale);
- CPU milliseconds per decoded 128^2 frame (batch 1, median of repeats, interleaved A/B).

    python benchmarks/decoder_ab.py --b runs/ae_wide2/export --scenes 16 --horizon 32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from tqdm import tqdm

from sana_world.envs.world import HELDOUT_START
from sana_world.generators import zoo
from sana_world.generators.autoencoder import LatentCodec, load_autoencoder
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.metrics import psnr

HORIZONS = (1, 8, 32, 128)


def decode_ms(codecs: dict[str, LatentCodec], z: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms of one ``decode(z (1, C, h, w))`` per codec, A and B interleaved."""
    times: dict[str, list[float]] = {k: [] for k in codecs}
    with torch.inference_mode():
        for c in codecs.values():  # 1. warm-up
            c.decode(z, as_uint8=True)
        for _ in range(repeats):  # 2. interleaved repeats
            for k, c in codecs.items():
                t = time.perf_counter()
                c.decode(z, as_uint8=True)
                times[k].append(1000 * (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128", help="zoo entry: world model, encoder and decoder A")
    p.add_argument("--b", required=True, help="decoder B: an AutoencoderDC folder with the same encoder")
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=20, help="timed decodes per decoder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    from fidelity import hardware, render_paths  # benchmarks/ is the script's folder
    from results_io import check_device, write_result

    dev = check_device(p, args.device)
    models = zoo.load(args.model, device=dev)
    b_ae = load_autoencoder(args.b, device=dev).requires_grad_(False)
    codecs = {"A": models.codec, "B": LatentCodec(b_ae).eval()}
    enc_a, enc_b = models.codec.ae.encoder.state_dict(), b_ae.encoder.state_dict()
    if enc_a.keys() != enc_b.keys() or any(not torch.equal(enc_a[k], enc_b[k].to(enc_a[k])) for k in enc_a):
        raise ValueError(f"{args.b}: its encoder is not the zoo's; the two decoders read different latents")
    if codecs["A"].scaling_factor != codecs["B"].scaling_factor:
        raise ValueError("the two autoencoders scale their latents differently")
    seeds = [HELDOUT_START + i for i in range(args.scenes)]
    plans, c2w, gt, _, K = render_paths(seeds, args.horizon, models.resolution, dev, args.workers)
    H = args.horizon
    horizons = [h for h in HORIZONS if h <= H]
    # 1. the dream once; every latent frame decoded by both
    dreamer = Dreamer(models, DreamerConfig.from_zoo(models.entry.dream_defaults))
    frames = {k: [] for k in codecs}
    for a in tqdm(range(0, args.scenes, args.batch), desc="dream", unit="batch"):
        z_ = min(a + args.batch, args.scenes)
        gen = torch.Generator(dev).manual_seed(a)
        captions = [pl.caption for pl in plans[a:z_]]
        state = dreamer.start(gt[a:z_, 0], c2w[a:z_, 0], K.expand(z_ - a, 3, 3), captions)
        per = {k: [] for k in codecs}
        for t in range(H):  # 1a. one dream step, then B decodes the same latent frame
            rgb, state = dreamer.step(state, c2w[a:z_, t + 1], gen)
            per["A"].append(rgb.cpu())
            with torch.inference_mode():
                per["B"].append(codecs["B"].decode(state.last, as_uint8=True).cpu())
        for k in codecs:
            frames[k].append(torch.stack(per[k], dim=1))  # (b, H, S, S, 3)
    gt_cpu = gt.cpu()
    result: dict = {"benchmark": "decoder_ab", "date": date.today().isoformat(), "hardware": hardware(dev),
                    "platform": platform.platform(), "torch": torch.__version__, "model": args.model,
                    "decoder_a": f"zoo {args.model} autoencoder", "decoder_b": args.b, "scenes": args.scenes,
                    "horizon": H, "dreamer": dict(models.entry.dream_defaults), "decoders": {}}
    hold = [float(psnr(gt_cpu[:, 0], gt_cpu[:, h]).mean()) for h in horizons]
    result["hold_psnr"] = dict(zip(map(str, horizons), hold))
    z1 = models.codec.encode(gt[:1, 0])  # (1, C, h, w)
    ms = decode_ms(codecs, z1, args.repeats)
    for k, codec in codecs.items():
        dream = torch.cat(frames[k])  # (N, H, S, S, 3)
        with torch.inference_mode():
            recon = torch.stack([codec.decode(codec.encode(gt[i, 1:]), as_uint8=True).cpu()
                                 for i in range(gt.shape[0])])  # (N, H, S, S, 3)
        result["decoders"][k] = {
            "decoder_params": sum(p_.numel() for p_ in codec.ae.decoder.parameters()),
            "ceiling_psnr": float(psnr(recon, gt_cpu[:, 1:]).mean()),
            "dream_psnr": {str(h): float(psnr(dream[:, h - 1], gt_cpu[:, h]).mean()) for h in horizons},
            "decode_ms_batch1": ms[k],
        }
    print(json.dumps(result["decoders"], indent=1), "\nhold", result["hold_psnr"])
    write_result(args.out, "decoder_ab", result["hardware"], result)


if __name__ == "__main__":
    main()
