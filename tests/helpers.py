"""Helpers shared by test files (importable as ``helpers``: tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
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
