"""Triton bidirectional GDN scan (sana_world.kernels.gdn_scan) against the pure-torch reference, fwd and bwd.

As in test_kernels_linear_attention.py: without CUDA the kernels run on CPU tensors in triton's interpreter
(TRITON_INTERPRET=1 set at collection, before the first `import triton`; if something imported triton
earlier, `test_interpreted_in_fresh_process` reruns this module in a fresh process). On a CUDA machine the
same tests run the compiled kernels, and the `gpu` tests add SANA-WM 2.66B's layout (112-d heads, 21
frames of 880 tokens) in bf16 and fp32.

Tolerances are measured, not fixed: both paths are compared with an fp64 evaluation of the same inputs,
and the kernel may be at most twice as far from it as the torch path, plus `units` fp32 epsilons of the
result's scale (the two sum the tokens and compose the frames in other orders, each rounding in fp32), plus,
for gradients returned in a 16-bit dtype, half an epsilon of that dtype (the two fp32 values may round to
neighbouring 16-bit numbers).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from sana_world.kernels import TritonUnavailableError
from sana_world.kernels.gdn_scan import GDNKernelConfig, triton_bidirectional_gdn
from sana_world.nn.gdn import _both_directions, bidirectional_gdn, gdn_transitions

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS32 = torch.finfo(torch.float32).eps


def _import_kernels() -> tuple[object | None, str]:
    if importlib.util.find_spec("triton") is None:
        return None, "triton is not installed"
    if DEVICE == "cpu":
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            return None, "triton imported before TRITON_INTERPRET=1: run by test_interpreted_in_fresh_process"
        os.environ["TRITON_INTERPRET"] = "1"  # left set: triton also reads it at its first launch
    return importlib.import_module("sana_world.kernels._triton_gdn"), ""


KERNELS, WHY_NOT = _import_kernels()
needs_kernels = pytest.mark.skipif(KERNELS is None, reason=WHY_NOT)


@pytest.mark.skipif(KERNELS is not None or importlib.util.find_spec("triton") is None,
                    reason="the kernel tests run in this process")
def test_interpreted_in_fresh_process() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-rs"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "fresh_process" not in res.stdout.split("short test summary")[-1], res.stdout[-4000:]


def gdn_inputs(B: int, H: int, T: int, S: int, Dk: int, Dv: int, dtype: torch.dtype, device: str,
               rotated: bool, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """Leaf tensors laid out as GDNCameraAttention makes them: (B, H, T, S, D) views of (B, T·S, H, D)
    tensors, β a view of (B, T·S, H), decay of (B, T, H); q ≥ 0 and keys scaled by (D·S)^-½ as after
    ReLU and key scaling; the rotated q̃, k̃ have both signs."""
    g = torch.Generator().manual_seed(seed)

    def frames(x: torch.Tensor) -> torch.Tensor:  # (B, T·S, H, D) -> (B, H, T, S, D)
        x = x.to(device=device, dtype=dtype).requires_grad_(True)
        return x.unflatten(1, (T, S)).permute(0, 3, 1, 2, 4)

    scale = (Dk * S) ** -0.5
    out: dict[str, torch.Tensor | None] = {
        "q": frames(torch.rand(B, T * S, H, Dk, generator=g)),
        "k": frames(torch.rand(B, T * S, H, Dk, generator=g) * scale),
        "v": frames(torch.randn(B, T * S, H, Dv, generator=g)),
        "q_rot": frames(torch.randn(B, T * S, H, Dk, generator=g)) if rotated else None,
        "k_rot": frames(torch.randn(B, T * S, H, Dk, generator=g) * scale) if rotated else None,
    }
    beta = torch.rand(B, T * S, H, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    decay = (0.5 + 0.5 * torch.rand(B, T, H, generator=g)).to(device).requires_grad_(True)
    out["beta"] = beta.unflatten(1, (T, S)).permute(0, 3, 1, 2)
    out["decay"] = decay.transpose(1, 2)
    return out


def exact_gdn(x: dict, eps: float, denominator: bool) -> torch.Tensor:
    """`bidirectional_gdn`'s formula in fp64 (its building blocks keep their input dtype)."""
    q, k, v, beta, decay = (x[n].double() for n in ("q", "k", "v", "beta", "decay"))
    qn = q if x["q_rot"] is None else x["q_rot"].double()
    kn = k if x["k_rot"] is None else x["k_rot"].double()
    W, U = gdn_transitions(kn, v, beta, decay)
    num = qn @ _both_directions(W, U).transpose(-1, -2)  # (B, H, T, S, Dv)
    if not denominator:
        return num
    Wz = gdn_transitions(k, v[..., :1], beta, decay)[0]
    zs = _both_directions(Wz, (k * beta[..., None]).sum(3)[..., None, :])[..., 0, :]  # (B, H, T, Dk)
    return num / ((q * zs[:, :, :, None, :]).sum(-1) + eps)[..., None]


def leaves(x: dict) -> dict[str, torch.Tensor]:
    """The leaf behind each input view (gradients are taken w.r.t. the leaves)."""
    return {n: t._base if t._base is not None else t for n, t in x.items() if t is not None}


def run(x: dict, eps: float, denominator: bool, dout: torch.Tensor, backend: str = "torch",
        config: GDNKernelConfig | None = None, exact: bool = False):
    """(output, {name: gradient of the leaf}) for one path."""
    if exact:
        out = exact_gdn(x, eps, denominator)
    elif config is not None:
        out = triton_bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"], q_rot=x["q_rot"],
                                       k_rot=x["k_rot"], eps=eps, denominator=denominator, config=config)
    else:
        out = bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"], q_rot=x["q_rot"],
                                k_rot=x["k_rot"], eps=eps, denominator=denominator, backend=backend)
    named = leaves(x)
    grads = torch.autograd.grad(out, list(named.values()), dout.to(out.dtype), allow_unused=True)
    return out, {n: (torch.zeros_like(t) if gr is None else gr) for (n, t), gr in zip(named.items(), grads)}


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_close_to_exact(x: dict, eps: float, denominator: bool, units: float, units_grad: float,
                          dtype: torch.dtype, config: GDNKernelConfig | None = None) -> None:
    """Kernel error <= 2 · torch error + (units · eps32 [+ eps(dtype) / 2 for 16-bit gradients]) · scale."""
    g = torch.Generator().manual_seed(1)
    B, H, T, S, _ = x["q"].shape
    dout = torch.randn(B, H, T, S, x["v"].shape[-1], generator=g).to(x["q"].device)
    exact, dexact = run(x, eps, denominator, dout, exact=True)
    ref, dref = run(x, eps, denominator, dout)
    out, dout_k = run(x, eps, denominator, dout, backend="triton", config=config)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert out.permute(0, 2, 3, 1, 4).is_contiguous()  # (B, T, S, H, D) in memory: _from_frames is free
    e_ker, e_ref = max_err(out, exact), max_err(ref, exact)
    assert e_ker <= 2 * e_ref + units * EPS32 * exact.abs().max().item(), ("out", e_ker, e_ref)
    unit_g = units_grad * EPS32 + (torch.finfo(dtype).eps / 2 if dtype != torch.float32 else 0.0)
    for name, d in dexact.items():
        assert dout_k[name].dtype == dref[name].dtype and torch.isfinite(dout_k[name]).all(), name
        e_ker, e_ref = max_err(dout_k[name], d), max_err(dref[name], d)
        assert e_ker <= 2 * e_ref + unit_g * d.abs().max().item(), (name, e_ker, e_ref)


def test_unknown_backend_raises() -> None:
    x = gdn_inputs(1, 1, 2, 3, 8, 8, torch.float32, "cpu", rotated=False)
    with pytest.raises(ValueError, match="backend"):
        bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"],
                          backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_n"):
        GDNKernelConfig(block_n=24)
    with pytest.raises(ValueError, match="block_k"):
        GDNKernelConfig(block_k=8)
    with pytest.raises(ValueError, match="input_precision"):
        GDNKernelConfig(input_precision="bf16")  # type: ignore[arg-type]


def test_triton_on_cpu_without_interpreter_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    if KERNELS is not None:
        monkeypatch.setattr(KERNELS, "INTERPRET", False)
    x = gdn_inputs(1, 1, 2, 3, 8, 8, torch.float32, "cpu", rotated=False)
    with pytest.raises(TritonUnavailableError, match="backend='torch'"):
        bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"], backend="triton")


@needs_kernels
def test_bad_shapes_raise() -> None:
    x = gdn_inputs(1, 1, 2, 3, 136, 8, torch.float32, DEVICE, rotated=False)
    with pytest.raises(ValueError, match="head dims up to"):
        triton_bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"])
    x = gdn_inputs(1, 1, 2, 3, 8, 8, torch.float32, DEVICE, rotated=False)
    with pytest.raises(ValueError, match="decay"):
        triton_bidirectional_gdn(x["q"], x["k"], x["v"], x["beta"], x["decay"][:, :, :1])


@pytest.mark.parametrize(
    "rotated,denominator,T,S,Dk,Dv,config",
    [
        ("qk", True, 3, 20, 16, 16, GDNKernelConfig(block_n=16)),  # main branch: RoPE keys, own normaliser
        ("", False, 3, 20, 16, 16, GDNKernelConfig(block_n=16)),  # camera branch: numerator only
        # normaliser as row Dv of the state in a second row block; padded head dims; two token splits;
        # head-dim slices of 16 (two per contraction, the second partly padding)
        ("", True, 3, 37, 12, 20, GDNKernelConfig(block_n=16, block_k=16, splits=2)),
        ("qk", False, 1, 9, 8, 8, GDNKernelConfig()),  # one frame: the backward scan is empty
        ("q", True, 2, 9, 8, 8, GDNKernelConfig()),  # rotated queries only (merged normaliser)
        ("k", True, 2, 9, 8, 8, GDNKernelConfig()),  # rotated keys only
    ],
)
@needs_kernels
def test_matches_torch_fp32(rotated, denominator, T, S, Dk, Dv, config) -> None:
    x = gdn_inputs(1, 2, T, S, Dk, Dv, torch.float32, DEVICE, rotated=bool(rotated))
    x["q_rot"], x["k_rot"] = (x[n] if n[0] in rotated else None for n in ("q_rot", "k_rot"))
    assert_close_to_exact(x, 1e-8, denominator, 8, 32, torch.float32, config=config)


@needs_kernels
def test_bf16_inputs_computed_in_fp32() -> None:
    """bf16 q, k, v, β and fp32 decay: both paths compute in fp32 from the same values (output within fp32
    rounding of each other); gradients come back in bf16, within one bf16 rounding of the torch path's."""
    x = gdn_inputs(1, 2, 2, 20, 16, 16, torch.bfloat16, DEVICE, rotated=True)
    dout = torch.randn(1, 2, 2, 20, 16, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    ref, dref = run(x, 1e-8, True, dout)
    out, dk = run(x, 1e-8, True, dout, config=GDNKernelConfig(block_n=16))
    assert max_err(out, ref) <= 64 * EPS32 * ref.abs().max().item()
    for name, d in dref.items():
        assert dk[name].dtype == d.dtype, name
        assert max_err(dk[name], d) <= 2**-7 * d.abs().max().item(), name


@pytest.mark.gpu
@needs_kernels
@pytest.mark.parametrize(
    "dtype,branch,precision",
    [
        (torch.bfloat16, "main", "ieee"),
        (torch.bfloat16, "camera", "ieee"),
        (torch.float32, "main", "ieee"),
        (torch.bfloat16, "main", "tf32x3"),
    ],
)
def test_cuda_matches_reference_sana_wm_layout(dtype: torch.dtype, branch: str, precision: str) -> None:
    """SANA-WM 2.66B's layout at 161 frames (21 latent frames of 880 tokens, 112-d heads), 4 of its 20
    heads. Units for ieee dots (other summation order only): 8 fp32 epsilons on the output, 32 on gradients
    (they sum the tokens twice, through the states and back; the linear-attention kernel measured 9 on an
    H200 where the torch path rounded exactly). tf32x3 drops the low×low part of each product, a relative
    error of 2^-22 = 2 epsilons per product on top, so the units double."""
    x = gdn_inputs(1, 4, 21, 880, 112, 112, dtype, "cuda", rotated=branch == "main")
    scale = 1 if precision == "ieee" else 2
    assert_close_to_exact(x, 1e-8, branch == "main", 8 * scale, 32 * scale, dtype,
                          config=GDNKernelConfig(input_precision=precision))
