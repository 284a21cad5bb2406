"""Helpers shared by test files (importable as ``helpers``: tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def off_init(build: Callable[[], M], seed: int = 0) -> M:
    """``build()`` under ``torch.manual_seed(seed)``, in eval mode, with every parameter moved off its init
    (norm weights by 0.3 σ, the rest by 0.05 σ): zero-initialised paths (camera branches, Plücker
    projections, gates) then contribute, so a parity test sees them."""
    torch.manual_seed(seed)
    model = build().eval()
    with torch.no_grad():
        for key, p in model.named_parameters():  # 1. every parameter, in registration order
            p.add_((0.3 if "norm" in key else 0.05) * torch.randn_like(p))
    return model


def tiny_train_state(seed: int = 0):
    """A 2-layer MLP's TrainState (AdamW, 3-step warm-up, EMA 0.5): checkpoint, resume and loop tests."""
    from sana_world.generators.train.common import EMA, TrainState, warmup_constant

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return TrainState(model=model, optimizer=opt, scheduler=warmup_constant(opt, 3), ema=EMA(model, 0.5))


def tiny_train_step(state) -> torch.Tensor:
    """One optimizer, scheduler and EMA step of :func:`tiny_train_state` on random inputs; the loss."""
    loss = state.model(torch.randn(5, 4)).square().mean()
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.ema.update(state.model)
    state.step += 1
    return loss.detach()


def spy_pool_supersample(monkeypatch, module) -> list[int]:
    """Record the ``supersample`` of every ``ClipPool`` that ``module`` builds (the pools still render)."""
    seen: list[int] = []
    real = module.ClipPool

    def spy(cfg, *args, **kwargs):
        seen.append(cfg.supersample)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(module, "ClipPool", spy)
    return seen


def tiny_dit_folder(root: Path, res: int, seed: int = 0, truncate: bool = True,
                    timestep_scale: float = 1.0) -> Path:
    """A tiny flow-matching SanaDiT on pixel latents (3 ch, ``res`` a side) and procedural captions, as an
    export folder (every parameter moved off its init, so every layer acts: the init zeroes output layers)."""
    from safetensors.torch import save_file

    from sana_world.generators.image.dit import PRESETS, SanaDiT

    cfg = dataclasses.replace(PRESETS["tiny"](), in_channels=3, caption_channels=256, patch_size=2,
                              sample_size=res, truncate_timesteps=truncate, timestep_scale=timestep_scale)
    torch.manual_seed(seed)
    model = SanaDiT(cfg)
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    root.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"_class_name": "SanaDiT", "config": dataclasses.asdict(cfg)}))
    return root
