"""Sol-RL post-training: DiffusionNFT's gradient against its closed form, the contrastive selection and
advantages, the FP8 preview copy, a toy policy that learns what the reward prefers, and a CPU run of the
trainer with exact resume and export."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import tiny_dit_folder

from sana_world.generators.train.sol_rl import (
    SolRLConfig, contrastive_indices, nft_loss, optimality, preview_model, spearman, train,
)

RES = 16


def test_the_nft_gradient_at_the_old_policy_has_its_closed_form() -> None:
    """At v = v_old both implicit policies equal the old one (w+ = w- = w), and the gradient per element is
    -2 s A (x0_old - x0) / (w M) with A = (2p - 1) adv_clip, whatever beta; p = 1/2 gives none."""
    torch.manual_seed(0)
    B, M = 4, 2 * 3 * 3
    x0, x_s, v_old = (torch.randn(B, 2, 3, 3, dtype=torch.float64) for _ in range(3))
    s = torch.tensor([0.2, 0.5, 0.7, 0.9], dtype=torch.float64)
    p = torch.tensor([1.0, 0.5, 0.0, 0.8], dtype=torch.float64)
    for beta in (0.1, 1.0):
        v = v_old.clone().requires_grad_(True)
        nft_loss(v, v_old, x_s, x0, s, p, beta=beta, adv_clip=5.0).backward()
        e = x_s - s.view(-1, 1, 1, 1) * v_old - x0  # (B, ...) the old policy's clean-estimate error
        w = e.abs().flatten(1).mean(1).view(-1, 1, 1, 1)
        A = ((2 * p - 1) * 5.0).view(-1, 1, 1, 1)
        expected = -2 * s.view(-1, 1, 1, 1) * A * e / (w * B * M)
        torch.testing.assert_close(v.grad, expected, rtol=1e-10, atol=1e-12)
        assert v.grad[1].abs().max() == 0


def test_selection_keeps_the_extremes_and_advantages_are_centred() -> None:
    rewards = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    idx = contrastive_indices(rewards, 2)
    assert idx.tolist() == [[1, 4, 5, 0], [0, 1, 4, 5]]
    p = optimality(rewards.gather(1, idx), adv_clip=5.0)  # unclipped: centred on 1/2
    assert ((0 <= p) & (p <= 1)).all() and torch.allclose(p.mean(1), torch.full((2,), 0.5))
    clipped = optimality(rewards.gather(1, idx), adv_clip=1.0)
    assert clipped.max() == 1.0 and clipped.min() == 0.0
    assert (p[:, :2] > 0.5).all() and (p[:, 2:] < 0.5).all()
    flat = optimality(torch.ones(1, 4), adv_clip=5.0)  # all equal: no preference
    assert torch.equal(flat, torch.full((1, 4), 0.5))
    a = torch.arange(6.0)
    assert spearman(a, a**3) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, torch.zeros(6)) == 0.0
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 2.0])) == pytest.approx(0.75**0.5)


def test_the_fp8_preview_is_a_close_but_quantised_copy() -> None:
    """FP8 (emulated on the CPU) converts the wide layers, changes the output by a few percent, and leaves
    the original model untouched."""
    from sana_world.generators.image.dit import PRESETS, SanaDiT
    from sana_world.nn.fp8 import FP8Linear

    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["tiny"](), dim=256, head_dim=32, caption_channels=256, in_channels=4,
                              sample_size=8)
    model = SanaDiT(cfg).eval()
    for prm in model.parameters():
        prm.data.add_(0.02 * torch.randn_like(prm))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([300.0, 700.0])
    y, m = torch.randn(2, 5, 256), torch.ones(2, 5, dtype=torch.bool)
    cheap = preview_model(model, "fp8")
    assert any(isinstance(mod, FP8Linear) for mod in cheap.modules())
    with torch.no_grad():
        ref, out = model(x, t, y, m), cheap(x, t, y, m)
    rel = float((out - ref).norm() / ref.norm())
    assert 1e-4 < rel < 0.1, rel
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(preview_model(model, "bf16").parameters()).dtype == torch.bfloat16


def test_a_toy_policy_learns_what_the_reward_prefers() -> None:
    """A 2-D flow model of two equal modes (x = -2 and x = +2), post-trained with the NFT loss on its own
    samples, rewarded by x: the share of samples in the right mode rises from about a half to most."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))

    def data(n):
        x = torch.randn(n, 2) * 0.3
        x[:, 0] += torch.where(torch.rand(n) < 0.5, -2.0, 2.0)
        return x

    def velocity(model, x, s):
        return model(torch.cat([x, s[:, None]], 1))

    @torch.no_grad()
    def sample(model, eps, steps=8):
        x = eps.clone()
        for i in range(steps):  # 1. Euler from s = 1 to 0
            s = torch.full((x.shape[0],), 1 - i / steps)
            x = x - velocity(model, x, s) / steps
        return x

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(600):  # 1. flow-matching pre-training
        x0, eps, s = data(256), torch.randn(256, 2), torch.rand(256)
        x_s = (1 - s[:, None]) * x0 + s[:, None] * eps
        loss = (velocity(net, x_s, s) - (eps - x0)).square().mean()
        opt.zero_grad(), loss.backward(), opt.step()
    probe = torch.randn(2000, 2, generator=torch.Generator().manual_seed(9))

    def right(m) -> float:
        return float((sample(m, probe)[:, 0] > 0).float().mean())

    start = right(net)
    old_net = copy.deepcopy(net).requires_grad_(False)  # the behaviour policy, an EMA
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(60):  # 2. NFT: 8 prompts-worth of 16 candidates, keep 4 + 4
        eps = torch.randn(8 * 16, 2)
        x0 = sample(old_net, eps)
        r = x0[:, 0].view(8, 16)
        kept = contrastive_indices(r, 4)
        flat = (kept + 16 * torch.arange(8)[:, None]).flatten()
        p = optimality(r.gather(1, kept), 5.0).flatten()
        x0 = x0[flat]
        s, e = torch.rand(x0.shape[0]), torch.randn_like(x0)
        x_s = (1 - s[:, None]) * x0 + s[:, None] * e
        with torch.no_grad():
            v_old = velocity(old_net, x_s, s)
        loss = nft_loss(velocity(net, x_s, s), v_old, x_s, x0, s, p, beta=0.5, adv_clip=5.0)
        opt.zero_grad(), loss.backward(), opt.step()
        with torch.no_grad():
            for o, q in zip(old_net.parameters(), net.parameters()):
                o.lerp_(q, 0.5)
    end = right(net)
    assert 0.35 < start < 0.65 and end > 0.8, (start, end)


def _config(policy, out, **kw) -> SolRLConfig:
    base = dict(policy=str(policy), resolution=RES, pool_trajectories=3, pool_steps=3, pool_workers=0,
                prompts=2, candidates=4, keep=1, preview_steps=2, sample_steps=2, lr=1e-4, warmup_steps=2, ema_decay=0.5,
                out_dir=str(out), progress=False, log_every=5, seed=0)
    return SolRLConfig.from_flat(**{**base, **kw})


@pytest.mark.slow
def test_a_cpu_run_resumes_exactly_and_exports_a_flow_model(tmp_path) -> None:
    """4 steps straight = 2 + 2 resumed, bit for bit (losses and reward log); the export is a flow-matching
    SanaDiT; a Sprint student and a missing policy are refused."""
    from sana_world.generators.train.export_folder import main as export_main

    policy = tiny_dit_folder(tmp_path / "policy", RES)
    straight = train(_config(policy, tmp_path / "a", steps=4, ckpt_every=2))
    first = train(_config(policy, tmp_path / "b", steps=2, ckpt_every=2))
    second = train(_config(policy, tmp_path / "b", steps=4, ckpt_every=2, resume=True))
    assert np.isfinite(straight.losses).all() and len(straight.losses) == 4
    np.testing.assert_allclose(first.losses + second.losses, straight.losses, rtol=1e-6, atol=0)
    assert first.log + second.log == straight.log
    rows = [json.loads(line) for line in (tmp_path / "b" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:  # best kept >= worst kept in preview order; rewards are intersections in [0, 1]
        assert 0 <= r["kept_worst"] <= 1 and 0 <= r["kept_best"] <= 1 and -1 <= r["rank_corr"] <= 1
    export_main([str(tmp_path / "a"), str(tmp_path / "a.tar")])
    meta = json.loads((tmp_path / "a" / "export" / "config.json").read_text())
    assert meta["_class_name"] == "SanaDiT" and meta["config"]["guidance_embeds"] is False
    assert meta["training"]["_trainer"] == "sana_world.generators.train.sol_rl"
    with pytest.raises(ValueError, match="policy is required"):
        SolRLConfig.from_flat(out_dir=str(tmp_path / "d"))
    with pytest.raises(ValueError, match="candidates"):
        _config(policy, tmp_path / "d", candidates=3, keep=2)
    assert math.isfinite(second.losses[-1])
