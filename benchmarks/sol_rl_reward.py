"""How well text -> image samples match the scene their caption describes, before and after Sol-RL, and
whether low-precision previews rank candidates as full precision does (Sol-RL's premise).

Prompts: captions of held-out scenes (seeds from HELDOUT_START on, never trained on), each with its
trajectory's GT frames as views. Reward: :class:`~sana_world.generators.rewards.SceneColourReward` (best-view
colour-histogram intersection, 1 = a view's exact colours). Every model samples the same noise.

1. Reward table: each model (the zoo entry's image model, then each ``--policy`` export) at each
   ``--guidance``, ``--steps`` Flow-Euler steps, ``--seeds`` samples a prompt: mean reward and its standard
   error over prompts, the paired difference from the base (same prompts, same noise) and its standard
   error, and the share of samples above the base model's median.
2. Ranking table (the zoo model): ``--candidates`` samples a prompt in each preview precision at
   ``--preview-steps`` steps against the full-precision ``--sample-steps`` reference: Spearman rank
   correlation per prompt, the share of the reference's top-``--keep`` found in the preview's top-``--keep``,
   and ms per image on this machine (CPU FP8 is an emulation: slower, not faster, than fp32).
3. A guard against reward hacking: each policy's flow-matching loss on the held-out GT frames (the same
   noise and flow times for all), and its paired difference from the base's.

    python benchmarks/sol_rl_reward.py --policy runs/sol_rl/export --prompts 32
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rooms-128", help="zoo entry: base image model, codec, text encoder")
    p.add_argument("--policy", nargs="*", default=[], help="Sol-RL export folders to compare with the base")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--seeds", type=int, default=4, help="samples a prompt in the reward table")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--shift", type=float, default=2.0)
    p.add_argument("--candidates", type=int, default=16, help="0: skip the ranking table")
    p.add_argument("--keep", type=int, default=4)
    p.add_argument("--preview-steps", type=int, default=6)
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--suffix", default="")
    a = p.parse_args()
    dev = check_device(p, a.device)
    from sana_world.data.pool import ClipPool, PoolConfig
    from sana_world.generators import zoo
    from sana_world.generators.rewards import SceneColourReward
    from sana_world.generators.train.sol_rl import (
        SolRLConfig, Sampler, contrastive_indices, preview_model, spearman,
    )
    from sana_world.generators.zoo import load_component
    from sana_world.worlds.sampler import HELDOUT_START

    # 1. models, held-out prompts and their views, one noise tensor for everything
    models = zoo.load(a.model, device=dev)
    base = models.image.float().eval()
    policies = [("base", base)] + [(str(f), load_component(f, "image", dev).eval()) for f in a.policy]
    pool = ClipPool(PoolConfig(trajectories=a.prompts, steps=15, size=models.resolution, workers=0,
                               keys_fraction=0.0, seed=HELDOUT_START), dev, progress=False)
    captions, views = pool.captions, pool.rgb.permute(0, 1, 4, 2, 3).float() / 255  # (P, F, 3, H, W)
    reward = SceneColourReward()
    side = models.resolution // models.codec.downsample_factor
    C = models.codec.latent_channels

    def scores(model, guidance: float, steps: int, n: int, seed: int, precision: str = "fp32"):
        """(P, n) rewards of n samples a prompt (noise seeded by ``seed``), and ms per image."""
        cfg = SolRLConfig(policy="-", shift=a.shift, guidance=guidance)
        sampler = Sampler(models.codec, models.text, cfg)
        net = model if precision == "fp32" else preview_model(model, precision)
        noise = torch.randn(a.prompts * n, C, side, side, generator=torch.Generator(dev).manual_seed(seed),
                            device=dev)
        caps = [c for c in captions for _ in range(n)]
        out, t0 = [], time.perf_counter()
        for i in range(0, len(caps), a.batch):  # 1. batches of samples
            _, images = sampler(net, caps[i:i + a.batch], noise[i:i + a.batch], steps)
            out.append(reward(images, views.repeat_interleave(n, 0)[i:i + a.batch]))
        ms = 1000 * (time.perf_counter() - t0) / len(caps)
        return torch.cat(out).view(a.prompts, n), ms, images

    # 2. the reward table
    rows, sheet = [], []
    print(f"{'policy':<36} {'cfg':>4} {'reward':>7} {'sem':>6} {'vs base':>8} {'sem':>6} {'>base med':>9}")
    for g in a.guidance:
        r0 = None
        for name, model in policies:
            r, ms, _ = scores(model, g, a.steps, a.seeds, seed=0)
            r0 = r if r0 is None else r0
            delta = (r - r0).mean(1)  # (P,) paired: the same prompts and noise as the base
            row = {"policy": name, "guidance": g, "steps": a.steps, "reward": float(r.mean()),
                   "sem": float(r.mean(1).std() / a.prompts**0.5), "delta_vs_base": float(delta.mean()),
                   "delta_sem": float(delta.std() / a.prompts**0.5),
                   "above_base_median": float((r > r0.median()).float().mean()), "ms": ms}
            rows.append(row)
            print(f"{name[-36:]:<36} {g:>4.1f} {row['reward']:>7.4f} {row['sem']:>6.4f} "
                  f"{row['delta_vs_base']:>+8.4f} {row['delta_sem']:>6.4f} {row['above_base_median']:>9.3f}")
    # 3. does each policy still model the data? Its flow-matching loss on the held-out GT views (the same
    # noise and flow times for every policy), against the base's
    x0 = torch.cat([models.codec.encode(v * 2 - 1).float() for v in views])  # (P F, C, h, w)
    caps = [c for c in captions for _ in range(views.shape[1])]
    g = torch.Generator(dev).manual_seed(2)
    s = torch.rand(x0.shape[0], generator=g, device=dev)  # (P F,)
    eps = torch.randn(x0.shape, generator=g, device=dev)
    x_s = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * eps
    fm_rows, fm0 = [], None
    with torch.no_grad():
        for name, model in policies:
            per = []
            for i in range(0, x0.shape[0], a.batch):  # 1. batches of frames
                cond = models.text.encode(caps[i:i + a.batch]).to(dev)
                t = 1000.0 * float(model.cfg.timestep_scale) * s[i:i + a.batch]
                v = model(x_s[i:i + a.batch], t, cond.hidden, cond.mask).float()
                per.append((v - (eps - x0)[i:i + a.batch]).square().flatten(1).mean(1))
            per = torch.cat(per)  # (P F,)
            fm0 = per if fm0 is None else fm0
            fm_rows.append({"policy": name, "fm_loss": float(per.mean()),
                            "delta_vs_base": float((per - fm0).mean()), "delta_sem": float((per - fm0).std() / per.numel()**0.5)})
            print(f"flow-matching loss on held-out GT frames: {name[-36:]:<36} {per.mean():.4f} "
                  f"({fm_rows[-1]['delta_vs_base']:+.4f} ± {fm_rows[-1]['delta_sem']:.4f} vs base)")
    # 4. the ranking table: previews against the full-precision reference
    ranking = []
    if a.candidates:
        ref, ref_ms, _ = scores(base, a.guidance[0], a.sample_steps, a.candidates, seed=1)
        top_ref = contrastive_indices(ref, a.keep)[:, :a.keep]
        print(f"\n{'preview':<8} {'steps':>5} {'spearman':>8} {'top-k hit':>9} {'ms/img':>7}   "
              f"(reference fp32 {a.sample_steps} steps: {ref_ms:.1f} ms/img)")
        for precision in ("fp8", "bf16", "fp32"):
            r, ms, _ = scores(base, a.guidance[0], a.preview_steps, a.candidates, seed=1, precision=precision)
            rho = sum(spearman(x, y) for x, y in zip(r, ref)) / a.prompts
            top = contrastive_indices(r, a.keep)[:, :a.keep]
            hit = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(top, top_ref)) / top_ref.numel()
            ranking.append({"precision": precision, "steps": a.preview_steps, "spearman": rho,
                            "topk_hit": hit, "ms": ms})
            print(f"{precision:<8} {a.preview_steps:>5} {rho:>8.3f} {hit:>9.3f} {ms:>7.1f}")
        ranking.append({"precision": "fp32", "steps": a.sample_steps, "reference": True, "ms": ref_ms})
    hw = hardware(dev)
    res = {"benchmark": "sol_rl_reward", "date": date.today().isoformat(), "hardware": hw,
           "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model": a.model, "policies": [n for n, _ in policies], "prompts": a.prompts, "seeds": a.seeds,
           "shift": a.shift, "reward": "SceneColourReward(bins=6, size=32), best of 16 GT views",
           "policy_steps": [json.loads((Path(f) / "config.json").read_text()).get("step") for f in a.policy],
           "rows": rows, "heldout_fm_loss": fm_rows,
           "ranking": {"candidates": a.candidates, "keep": a.keep, "rows": ranking}}
    path = write_result(a.out, "sol_rl_reward", hw, res, a.suffix)
    # 5. a contact sheet: a GT view, then each policy's first sample at the first guidance, 8 prompts across
    import matplotlib.pyplot as plt

    n = min(8, a.prompts)
    strips = [views[:n, 0]]
    for _, model in policies:
        cfg = SolRLConfig(policy="-", shift=a.shift, guidance=a.guidance[-1])
        noise = torch.randn(a.prompts * a.seeds, C, side, side, generator=torch.Generator(dev).manual_seed(0),
                            device=dev)[::a.seeds][:n]
        strips.append(Sampler(models.codec, models.text, cfg)(model, captions[:n], noise, a.steps)[1])
    grid = torch.cat([torch.cat(list(x.permute(0, 2, 3, 1).cpu()), dim=1) for x in strips], dim=0)
    plt.imsave(path.with_suffix(".png"), grid.clamp(0, 1).numpy())  # (rows H, cols W, 3)
    print("wrote", path, "and", path.with_suffix(".png"))


if __name__ == "__main__":
    main()
