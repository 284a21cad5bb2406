"""The doubling scan of `linear_recurrence` against the frame-by-frame loop, and the chunk-size-1 shortcut
of the backward scan against the general masked scan."""

from __future__ import annotations

import pytest
import torch

from sana_world.nn import gdn
from sana_world.nn.gdn import gdn_backward_scan, gdn_forward_scan, linear_recurrence


def loop(W: torch.Tensor, U: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    x, out = init, []
    for t in range(W.shape[2]):
        x = x @ W[:, :, t] + U[:, :, t]
        out.append(x)
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("T", [1, 2, 5, 8, 9, 17, 33])
def test_doubling_scan_matches_loop(T):
    g = torch.Generator().manual_seed(T)
    B, H, R, D = 2, 3, 5, 6
    W = 0.9 * torch.eye(D) - 0.1 * torch.rand(B, H, T, D, D, generator=g, dtype=torch.float64)
    U = torch.randn(B, H, T, R, D, generator=g, dtype=torch.float64)
    init = torch.randn(B, H, R, D, generator=g, dtype=torch.float64)
    ref = loop(W, U, init)
    got = linear_recurrence(W, U, init)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    # a wrong composition order (P2 P1) would fail this: the W_t do not commute
    if T > 1:
        assert not torch.allclose(loop(W.flip(2), U, init)[:, :, -1], ref[:, :, -1])


def gdn_inputs(T: int, S: int = 4, D: int = 8):
    g = torch.Generator().manual_seed(0)
    B, H = 2, 2
    q = torch.rand(B, H, T, S, D, generator=g)
    k = torch.rand(B, H, T, S, D, generator=g) / (D * S) ** 0.5
    v = torch.randn(B, H, T, S, D, generator=g)
    beta = torch.rand(B, H, T, S, generator=g)
    decay = 0.5 + 0.5 * torch.rand(B, H, T, generator=g)
    return q, k, v, beta, decay


@pytest.mark.parametrize("rotated", [False, True])
def test_forward_scan_parallel_equals_sequential(monkeypatch, rotated):
    q, k, v, beta, decay = gdn_inputs(T=19)
    kw = dict(q_rot=q.flip(-1), k_rot=k.flip(-1)) if rotated else {}
    par = gdn_forward_scan(q, k, v, beta, decay, **kw)
    monkeypatch.setattr(gdn, "PARALLEL_SCAN_MIN_FRAMES", 10**9)
    seq = gdn_forward_scan(q, k, v, beta, decay, **kw)
    for a, b in zip((par[0], par[1], par[2].kv, par[2].z), (seq[0], seq[1], seq[2].kv, seq[2].z)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_backward_scan_chunk_one_is_zero_like_the_masked_scan():
    q, k, v, beta, decay = gdn_inputs(T=7)
    fast = gdn_backward_scan(q, k, v, beta, decay, chunk_size=1)
    general = gdn_backward_scan(q, k, v, beta, decay, chunk_size=2)
    assert general[0].abs().max() > 0  # chunks of 2 do see a later frame
    masked_num, masked_den = gdn_backward_scan(q, k, v, beta, decay, chunk_size=10**6)
    assert masked_num.abs().max() > 0
    assert fast[0].shape == masked_num.shape and fast[1].shape == masked_den.shape
    assert fast[0].abs().max() == 0 and fast[1].abs().max() == 0
    with pytest.raises(ValueError, match="chunk_size"):
        gdn_backward_scan(q, k, v, beta, decay, chunk_size=0)
