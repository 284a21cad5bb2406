"""Counter-based Gaussian noise: every row of a batch draws from its own key, in one batched computation.

``torch.Generator`` gives one stream per generator, so a batch of N streams either shares one (row i's
noise then depends on N and on when the other rows started) or makes N small draws a step. Here noise is a
pure function of (key, step, stream, element): Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As
Easy as 1, 2, 3", SC'11; checked against Random123's known answers in the tests) computed with plain torch
integer ops on any device, then Box-Muller. A Dream vector env gives each env a key at its reset and counts
its steps, so env i dreams exactly what a single env with the same key dreams, whatever the batch does.

The 32-bit words live in int64 tensors; products are split into 16-bit halves so no int64 overflows.

    >>> import torch
    >>> z = counter_normal(torch.tensor([1, 2]), torch.tensor([0, 0]), stream=0, numel=6)
    >>> z.shape, bool(torch.equal(z[1], counter_normal(torch.tensor([2]), torch.tensor([0]), 0, 6)[0]))
    (torch.Size([2, 6]), True)
"""

from __future__ import annotations

import math

import torch

__all__ = ["counter_normal", "philox4x32"]

_MASK = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # key schedule (Weyl) increments


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * b`` (a: uint32 constant, b: uint32 words in int64), exactly."""
    p1 = b * (a & 0xFFFF)  # < 2^48
    p2 = b * (a >> 16)  # < 2^48; a * b = p1 + p2 * 2^16
    s = p1 + ((p2 & 0xFFFF) << 16)  # < 2^49
    return ((p2 >> 16) + (s >> 32)) & _MASK, s & _MASK


def philox4x32(counter: torch.Tensor, key: torch.Tensor, rounds: int = 10) -> torch.Tensor:
    """Philox4x32-``rounds`` of ``counter`` (..., 4) under ``key`` (..., 2), uint32 words held in int64
    (broadcasting); returns (..., 4) uint32 words in int64."""
    if counter.shape[-1] != 4 or key.shape[-1] != 2:
        raise ValueError(f"counter must end in 4 words and key in 2, got {tuple(counter.shape)} / {tuple(key.shape)}")
    c0, c1, c2, c3 = (w.to(torch.int64) for w in counter.unbind(-1))
    k0, k1 = (w.to(torch.int64) for w in key.unbind(-1))
    for r in range(rounds):  # 1. a round, 2. the key bump between rounds
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return torch.stack(torch.broadcast_tensors(c0, c1, c2, c3), dim=-1)


def counter_normal(keys: torch.Tensor, steps: torch.Tensor, stream: int, numel: int) -> torch.Tensor:
    """Standard normal noise (N, numel) float32: row i a pure function of (``keys[i]``, ``steps[i]``,
    ``stream``), on ``keys``' device. ``keys`` (N,) non-negative int64 (63 bits used); ``steps`` (N,)
    non-negative int64; ``stream`` in [0, 2^32) tells apart draws of the same step."""
    if keys.ndim != 1 or steps.shape != keys.shape:
        raise ValueError(f"keys and steps must be (N,) alike, got {tuple(keys.shape)} / {tuple(steps.shape)}")
    if not 0 <= int(stream) <= _MASK or numel < 1:
        raise ValueError(f"stream must lie in [0, 2^32) and numel be >= 1, got {stream} / {numel}")
    dev = keys.device
    if dev.type == "mps":  # no float64 there: the same numbers, made on the CPU
        return counter_normal(keys.cpu(), steps.cpu(), stream, numel).to(dev)
    keys, steps = keys.to(torch.int64), steps.to(device=dev, dtype=torch.int64)
    blocks = -(-numel // 4)
    j = torch.arange(blocks, dtype=torch.int64, device=dev)  # (M,) block index
    ctr = torch.stack(torch.broadcast_tensors(j[None], torch.full_like(j, int(stream))[None],
                                              (steps & _MASK)[:, None], ((steps >> 32) & _MASK)[:, None]),
                      dim=-1)  # (N, M, 4)
    key = torch.stack([keys & _MASK, (keys >> 32) & _MASK], dim=-1)[:, None]  # (N, 1, 2)
    words = philox4x32(ctr, key).to(torch.float64)  # (N, M, 4); float64 keeps all 32 bits
    u = (words + 0.5) * 2.0**-32  # uniforms in (0, 1)
    r = torch.sqrt(-2.0 * torch.log(u[..., 0::2]))  # (N, M, 2)
    theta = 2.0 * math.pi * u[..., 1::2]
    z = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)  # (N, M, 2, 2)
    return z.reshape(keys.shape[0], blocks * 4)[:, :numel].to(torch.float32)
