"""Counter-based noise: Philox4x32-10 against Random123's known answers, then the normals built on it."""

from __future__ import annotations

import math

import pytest
import torch

from sana_world.counter_noise import counter_normal, philox4x32

KAT = [  # Random123's kat_vectors for philox4x32_10: counter, key, output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_philox_known_answers_one_by_one_and_batched() -> None:
    ctr = torch.tensor([c for c, _, _ in KAT])
    key = torch.tensor([k for _, k, _ in KAT])
    want = torch.tensor([o for _, _, o in KAT])
    assert torch.equal(philox4x32(ctr, key), want)
    for c, k, o in KAT:
        assert philox4x32(torch.tensor(c), torch.tensor(k)).tolist() == list(o)


def test_normals_are_standard_normal() -> None:
    z = counter_normal(torch.arange(16), torch.arange(16), stream=0, numel=8192).flatten().double()
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1.0) < 0.01
    xs = torch.sort(z).values  # Kolmogorov-Smirnov distance to the normal CDF
    cdf = 0.5 * (1 + torch.erf(xs / math.sqrt(2)))
    n = xs.numel()
    ks = torch.maximum(torch.arange(1, n + 1) / n - cdf, cdf - torch.arange(n) / n).max().item()
    assert ks < 1.63 / math.sqrt(n)  # rejects at the 1 % level
    pairs = counter_normal(torch.tensor([7]), torch.tensor([0]), 0, 20000)[0]
    assert abs(torch.corrcoef(torch.stack([pairs[:-1], pairs[1:]]))[0, 1].item()) < 0.03  # neighbours


def test_each_row_depends_on_its_own_key_step_and_stream_only() -> None:
    keys, steps = torch.tensor([5, 2**62 - 1, 5]), torch.tensor([0, 3, 1])
    z = counter_normal(keys, steps, 0, 100)
    for i in range(3):  # a row alone is the row in the batch
        assert torch.equal(z[i], counter_normal(keys[i:i + 1], steps[i:i + 1], 0, 100)[0])
    assert not torch.equal(z[0], z[2])  # another step
    assert not torch.equal(z[0], counter_normal(keys[:1], steps[:1], 1, 100)[0])  # another stream
    assert torch.equal(z[:, :37], counter_normal(keys, steps, 0, 37))  # a prefix is the shorter draw


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="alike"):
        counter_normal(torch.tensor([1, 2]), torch.tensor([0]), 0, 4)
    with pytest.raises(ValueError, match="stream"):
        counter_normal(torch.tensor([1]), torch.tensor([0]), -1, 4)
    with pytest.raises(ValueError, match="4 words"):
        philox4x32(torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))


@pytest.mark.gpu
def test_cuda_draws_the_cpu_words_and_normals() -> None:
    keys, steps = torch.tensor([1, 2**40 + 3]), torch.tensor([0, 9])
    cpu = counter_normal(keys, steps, 1, 4096)
    gpu = counter_normal(keys.cuda(), steps.cuda(), 1, 4096)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_compiled_draws_equal_eager() -> None:
    """What a compiled Dream env draws (DreamConfig.compile compiles the noise too)."""
    keys, steps = torch.arange(3), torch.tensor([0, 5, 2**33])
    compiled = torch.compile(counter_normal, dynamic=False)
    assert torch.equal(compiled(keys, steps, 1, 4096), counter_normal(keys, steps, 1, 4096))
