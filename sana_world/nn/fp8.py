"""FP8 (e4m3) inference for the linear layers of the SANA-family DiTs on Ada / Hopper GPUs: the Hopper
analogue of SANA's NVFP4 deployment. An option, never on by default:

    model, summary = convert_to_fp8(model.eval(), FP8Config())  # in place; CUDA, compute capability >= 8.9
    print(summary.report())

Numerics of a converted layer y = x Wᵀ + b, x (M, K), W (N, K):

1. W is quantised once, at conversion: q_W = e4m3(W / s_W) with s_W = amax / 448 per output channel
   (`granularity="rowwise"`, the default) or per tensor (`"tensorwise"`). The full-precision weight is freed.
2. x is quantised at every call the same way: one scale per token row (rowwise) or per tensor.
3. y = (q_x q_Wᵀ) · s_x · s_W + b: e4m3 products summed in fp32 by `torch._scaled_mm` (cuBLASLt / CUTLASS),
   the scales and the bias applied in its epilogue, the output rounded once to the input dtype (bf16 in
   deployment; the autocast dtype under autocast, as `nn.Linear`).

`backend="emulate"` runs the same quantisation in pure torch (quantise -> dequantise -> fp32 matmul), on any
device: the CPU reference of the kernel (same q_x, q_W and scales bit for bit; only the fp32 summation order
and, with `fast_accum`, the kernel's accumulator precision differ).

Error: e4m3 keeps 3 mantissa bits, so round-to-nearest moves an element by at most 2⁻⁴ of its value (or
s · 2⁻¹⁰ in the subnormal range below s · 2⁻⁶). For random-sign products the relative error of a matmul is
the rms relative error of one product: √2 · 2⁻⁴ · E[1/m²]^½ / √3 ≈ 3.7e-2 (mantissa m log-uniform on [1, 2)).

Inference only: converted layers hold buffers, not parameters, and raise if called with grad enabled on an
input that requires grad (run under `torch.no_grad()` / `torch.inference_mode()`). Cast the model's dtype
before converting: a later `.to(dtype)` would cast the FP8 buffers, so the next call refuses to run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_SKIP",
    "E4M3_MAX",
    "FP8Config",
    "FP8Linear",
    "FP8PointwiseConv2d",
    "FP8Summary",
    "FP8UnsupportedError",
    "check_fp8_kernel",
    "convert_to_fp8",
    "dequantize_fp8",
    "fp8_copy",
    "fp8_mm_emulated",
    "fp8_mm_kernel",
    "quantize_fp8",
    "skip_reason",
]

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0  # largest finite e4m3fn value
AMAX_FLOOR = 1e-12  # all-zero rows get a tiny scale instead of a division by zero
ROW_ALIGN = 16  # the kernel's row count is padded to a multiple of this (zero rows, sliced off)
OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

# The conditioning path (timestep and caption embedders, adaLN-single: few rows, precision-critical
# modulation) and the first and last layers (patch embedders, final layer) of SanaDiT and SanaWM.
DEFAULT_SKIP = ("patch_embed", "plucker_embed", "raymap_embed", "t_embed", "guidance_embed", "t_block",
                "caption_proj", "final")  # fmt: skip


class FP8UnsupportedError(RuntimeError):
    """The device (or this torch build) has no FP8 `torch._scaled_mm` for the requested scaling."""


@dataclass(frozen=True)
class FP8Config:
    """Attributes:
    backend: "scaled_mm": `torch._scaled_mm` on a CUDA GPU of compute capability >= 8.9 (checked at
        conversion, with a probe call); "emulate": the pure-torch reference of the same quantisation.
    granularity: "rowwise": a scale per weight output channel and per activation token row (the RowWise
        recipe of `torch._scaled_mm`); "tensorwise": one scale per weight and one per activation tensor.
    fast_accum: `torch._scaled_mm(use_fast_accum=True)`: faster on Hopper, a less precise accumulator
        (the emulation sums in fp32 either way).
    skip: module-name entries whose layers stay in the model dtype, matched on whole dotted components
        ("final" matches "final.proj", not "finalize"; "blocks.0" skips block 0, not block 10).
    include: optional predicate (name, module) -> bool; a layer is converted only where it returns True.
    min_features: layers with fewer input or output features stay (quantising the activation costs more
        than a narrow GEMM saves).
    pointwise_convs: also convert 1×1 Conv2d layers (the Mix-FFN's inverted and pointwise convs, about
        40 % of a SANA block's GEMM FLOPs), run on a channels-last view of their input.
    """

    backend: Literal["scaled_mm", "emulate"] = "scaled_mm"
    granularity: Literal["rowwise", "tensorwise"] = "rowwise"
    fast_accum: bool = False
    skip: tuple[str, ...] = DEFAULT_SKIP
    include: Callable[[str, nn.Module], bool] | None = None
    min_features: int = 256
    pointwise_convs: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("scaled_mm", "emulate"):
            raise ValueError(f"FP8Config.backend must be 'scaled_mm' or 'emulate', got {self.backend!r}")
        if self.granularity not in ("rowwise", "tensorwise"):
            raise ValueError(
                f"FP8Config.granularity must be 'rowwise' or 'tensorwise', got {self.granularity!r}"
            )
        if isinstance(self.skip, str):
            raise TypeError("FP8Config.skip is a tuple of name entries, got a single string")
        if self.min_features < 0:
            raise ValueError(f"FP8Config.min_features must be >= 0, got {self.min_features}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields (the include predicate by name)."""
        d = asdict(self)
        d["include"] = None if self.include is None else getattr(self.include, "__name__", repr(self.include))
        return d


# 1. Quantisation, the emulated matmul and the kernel call.


def quantize_fp8(x: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> q (M, K) e4m3 and its fp32 scale, (M, 1) rowwise or () per tensor, with x ≈ q · scale."""
    if rowwise:
        amax = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True).float()  # (M, 1): max |x|
    else:
        amax = torch.linalg.vector_norm(x, float("inf")).float()  # ()
    scale = amax.clamp_min(AMAX_FLOOR) / E4M3_MAX
    scaled = x / scale.reshape(-1, 1)  # (M, K) fp32 (a 0-d scale would leave bf16 x in bf16)
    return scaled.clamp_(-E4M3_MAX, E4M3_MAX).to(E4M3), scale  # round to nearest even


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q (M, K) e4m3, scale (M, 1) | () -> (M, K) fp32."""
    return q.float() * scale


def fp8_mm_emulated(xq: torch.Tensor, xs: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor,
                    bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """The kernel's arithmetic in fp32: xq (M, K), xs (M, 1) | (), wq (N, K), ws (N,) | () -> (M, N).

    e4m3 products are exact in fp32; the scales then the bias are applied as the kernel's epilogue does."""
    acc = xq.float() @ wq.float().t()  # (M, N)
    out = acc * xs * ws.reshape(1, -1)
    if bias is not None:
        out = out + bias.float()
    return out.to(out_dtype)


def fp8_mm_kernel(xq: torch.Tensor, xs: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor,
                  bias: torch.Tensor | None, out_dtype: torch.dtype,
                  fast_accum: bool) -> torch.Tensor:  # fmt: skip
    """`torch._scaled_mm`: xq (M, K) row-major, wq (N, K) (passed as the column-major (K, N) it needs), scales
    as in `fp8_mm_emulated` -> (M, N) in out_dtype. The bias is fused except for fp32 output (unsupported)."""
    fused = bias is not None and out_dtype != torch.float32
    out = torch._scaled_mm(
        xq.contiguous(), wq.t(), scale_a=xs, scale_b=ws.reshape(1, -1) if ws.ndim else ws,
        bias=bias.to(out_dtype) if fused else None, out_dtype=out_dtype, use_fast_accum=fast_accum,
    )  # fmt: skip
    if bias is not None and not fused:
        out = out + bias.to(out_dtype)
    return out


def check_fp8_kernel(device: torch.device | str, granularity: str = "rowwise",
                     out_dtype: torch.dtype = torch.bfloat16) -> None:  # fmt: skip
    """Raise `FP8UnsupportedError` unless `torch._scaled_mm` runs e4m3 × e4m3 -> out_dtype with this scaling
    on `device` (a CUDA GPU of compute capability >= 8.9, checked with a 16×32×16 probe call)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise FP8UnsupportedError(f"the FP8 kernel needs a CUDA device, the model is on {device}; "
                                  "use FP8Config(backend='emulate') for the CPU reference")  # fmt: skip
    if not torch.cuda.is_available():
        raise FP8UnsupportedError("the FP8 kernel needs CUDA, and CUDA is not available")
    if torch.version.hip:
        raise FP8UnsupportedError("ROCm is not supported (its FP8 GEMMs take float8_e4m3fnuz)")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise FP8UnsupportedError(
            f"{torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; FP8 matmul needs "
            ">= 8.9 (Ada, Hopper, Blackwell). Keep the model in bf16 there"
        )
    rowwise = granularity == "rowwise"
    x = torch.ones(16, 32, device=device)
    (xq, xs), (wq, ws) = quantize_fp8(x, rowwise), quantize_fp8(x, rowwise)
    what = f"torch._scaled_mm ({granularity} scaling, {out_dtype} out) on {device}, torch {torch.__version__}"
    try:
        out = fp8_mm_kernel(xq, xs, wq, ws.reshape(-1) if rowwise else ws, None, out_dtype, False)
    except RuntimeError as e:
        raise FP8UnsupportedError(f"{what} fails: {e}".splitlines()[0]) from e
    expected = torch.full_like(out, 32.0)  # 32 × (448 · 1/448)², up to the rounding of 1/448 and the output
    if not torch.allclose(out, expected, rtol=2**-7, atol=0.0):
        raise FP8UnsupportedError(f"{what} returned wrong values on a probe")


def _output_dtype(x: torch.Tensor) -> torch.dtype:
    """What nn.Linear would return: the autocast dtype under autocast, else the input dtype."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


# 2. The modules.


class FP8Linear(nn.Module):
    """Drop-in inference replacement of nn.Linear: forward(x (..., in_features)) -> (..., out_features).

    Buffers: weight_fp8 (N, K) e4m3, weight_scale (N,) rowwise | () per tensor, fp32; bias (N,) | None in the
    original dtype. Build with `from_linear`; `convert_to_fp8` does it for a whole model.
    """

    def __init__(self, weight_fp8: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
                 cfg: FP8Config) -> None:  # fmt: skip
        super().__init__()
        if weight_fp8.dtype != E4M3 or weight_scale.dtype != torch.float32:
            raise TypeError(f"weight_fp8 must be {E4M3} and weight_scale fp32, got {weight_fp8.dtype}, "
                            f"{weight_scale.dtype}")  # fmt: skip
        self.out_features, self.in_features = weight_fp8.shape
        self.rowwise = cfg.granularity == "rowwise"
        self.use_kernel = cfg.backend == "scaled_mm"
        self.fast_accum = cfg.fast_accum
        self.register_buffer("weight_fp8", weight_fp8.contiguous())  # (N, K): its .t() is column-major
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def quantized_weight(cls, weight: torch.Tensor, cfg: FP8Config) -> tuple[torch.Tensor, torch.Tensor]:
        """weight (N, K) -> (q (N, K) e4m3, scale (N,) | ())."""
        q, scale = quantize_fp8(weight.detach(), cfg.granularity == "rowwise")
        return q, scale.reshape(-1) if scale.ndim else scale

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: FP8Config) -> FP8Linear:
        return cls(*cls.quantized_weight(linear.weight, cfg), linear.bias, cfg)

    def dequantized_weight(self) -> torch.Tensor:
        """(N, K) fp32: what the layer multiplies by."""
        return self.weight_fp8.float() * self.weight_scale.reshape(-1, 1)

    def extra_repr(self) -> str:
        granularity = "rowwise" if self.rowwise else "tensorwise"
        backend = "scaled_mm" if self.use_kernel else "emulate"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {granularity}, {backend}")  # fmt: skip

    def _check_call(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError(f"{name} is inference-only (FP8 weights, no backward): call the model under "
                               "torch.no_grad() or torch.inference_mode()")  # fmt: skip
        if self.weight_fp8.dtype != E4M3 or self.weight_scale.dtype != torch.float32:
            cast = f"{self.weight_fp8.dtype} / {self.weight_scale.dtype}"
            raise RuntimeError(f"{name} buffers were cast to {cast} after conversion: cast the model before "
                               "convert_to_fp8")  # fmt: skip
        if self.use_kernel and not x.is_cuda:
            raise RuntimeError(f"{name} was converted for the CUDA FP8 kernel, called on {x.device}")

    def matmul(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """x (M, K) -> (M, N) in out_dtype."""
        if out_dtype not in OUT_DTYPES:
            raise TypeError(f"{type(self).__name__} computes bf16, fp16 or fp32 outputs, got {out_dtype}")
        M = x.shape[0]
        if self.use_kernel and M % ROW_ALIGN:
            x = F.pad(x, (0, 0, 0, -M % ROW_ALIGN))  # (M', K): zero rows leave the row and tensor scales be
        with torch.autocast(x.device.type, enabled=False):  # the emulation's matmul stays fp32
            xq, xs = quantize_fp8(x, self.rowwise)  # (M', K) e4m3, (M', 1) | ()
            if not self.use_kernel:
                return fp8_mm_emulated(xq, xs, self.weight_fp8, self.weight_scale, self.bias, out_dtype)
            out = fp8_mm_kernel(xq, xs, self.weight_fp8, self.weight_scale, self.bias, out_dtype,
                                self.fast_accum)  # fmt: skip
        return out[:M]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        self._check_call(x)
        rows = x.reshape(-1, self.in_features)  # (M, K)
        return self.matmul(rows, _output_dtype(x)).view(*x.shape[:-1], self.out_features)


def is_pointwise_conv(m: nn.Module) -> bool:
    """A 1×1, stride-1, unpadded, ungrouped Conv2d: a linear layer over the channels of every pixel."""
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding in ((0, 0), "valid"))  # fmt: skip


class FP8PointwiseConv2d(FP8Linear):
    """Drop-in inference replacement of a 1×1 Conv2d: forward(x (B, C, H, W)) -> (B, N, H, W).

    Runs on the channels-last view of x (free when x is channels-last, as the Mix-FFN's input is) and
    returns a channels-last tensor."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, cfg: FP8Config) -> FP8PointwiseConv2d:
        if not is_pointwise_conv(conv):
            raise TypeError(f"not a 1×1 stride-1 ungrouped Conv2d: {conv}")
        weight = conv.weight.reshape(conv.out_channels, conv.in_channels)  # (N, C)
        return cls(*cls.quantized_weight(weight, cfg), conv.bias, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, N, H, W)."""
        self._check_call(x)
        B, C, H, W = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, C)  # (B·H·W, C)
        out = self.matmul(rows, _output_dtype(x))  # (B·H·W, N)
        return out.view(B, H, W, self.out_features).permute(0, 3, 1, 2)  # (B, N, H, W), channels-last


# 3. Whole-model conversion.


@dataclass(frozen=True)
class FP8Summary:
    """What `convert_to_fp8` did. converted: module names now FP8; skipped: (name, reason) of linear and
    1×1-conv layers kept in the model dtype, and of other channel-mixing convs (no FP8 path);
    converted_weights / kept_weights: weight elements of the converted / kept linear and 1×1-conv layers."""

    config: FP8Config
    converted: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    converted_weights: int
    kept_weights: int

    @property
    def converted_fraction(self) -> float:
        """Share of the linear and 1×1-conv weight elements that are FP8 now."""
        total = self.converted_weights + self.kept_weights
        return self.converted_weights / total if total else 0.0

    def reasons(self) -> dict[str, int]:
        """Skip reasons with their layer counts (the part of a reason before ':' groups layers)."""
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"config": self.config.describe(), "converted": len(self.converted),
                "skipped": len(self.skipped), "converted_fraction": self.converted_fraction,
                "converted_weights": self.converted_weights, "kept_weights": self.kept_weights,
                "skip_reasons": self.reasons(),
                "skipped_layers": [list(s) for s in self.skipped]}  # fmt: skip

    def report(self) -> str:
        cfg = self.config
        head = (f"fp8 ({cfg.backend}, {cfg.granularity}): {len(self.converted)} layers converted "
                f"({self.converted_fraction:.1%} of linear weights), {len(self.skipped)} kept")  # fmt: skip
        lines = [head]
        lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def _matches(name: str, entry: str) -> bool:
    """entry is a run of whole dotted components of name."""
    return f".{entry}." in f".{name}."


def skip_reason(name: str, module: nn.Module, cfg: FP8Config) -> str | None:
    """Why a linear or 1×1-conv layer stays in the model dtype under cfg (None: it is converted)."""
    if isinstance(module, nn.Conv2d) and not cfg.pointwise_convs:
        return "1x1 conv: FP8Config.pointwise_convs is False"
    entry = next((e for e in cfg.skip if _matches(name, e)), None)
    if entry is not None:
        return f"name filter: matches skip entry {entry!r}"
    if cfg.include is not None and not cfg.include(name, module):
        return "name filter: FP8Config.include returned False"
    n, k = module.weight.shape[:2]
    if n % 16 or k % 16:
        return f"shape: weight ({n}, {k}) is not a multiple of 16, stays {module.weight.dtype}"
    if min(n, k) < cfg.min_features:
        return f"small: weight ({n}, {k}) under min_features={cfg.min_features}"
    if module.weight.dtype not in OUT_DTYPES:
        return f"dtype: weight is {module.weight.dtype}"
    return None


def _other_conv_reason(module: nn.Module) -> str | None:
    """Channel-mixing convs with no FP8 path (reported, never converted); depthwise convs are not GEMMs."""
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and module.groups == 1:
        return f"conv: kernel {tuple(module.kernel_size)} has no FP8 path"
    return None


def convert_to_fp8(model: nn.Module, cfg: FP8Config | None = None) -> tuple[nn.Module, FP8Summary]:
    """Replace the model's nn.Linear (and 1×1 Conv2d) layers by FP8 ones, in place, for inference.

    Layers that cfg skips, with shapes `torch._scaled_mm` cannot take (a side not a multiple of 16) or under
    `min_features` stay as they are; the returned summary names each with its reason. FP8 layers have no
    `.weight`: code that reads a layer's weight directly needs that layer skipped (nn.MultiheadAttention's
    out_proj is; in SanaDiT / SanaWM only `t_embed`, in `DEFAULT_SKIP`, does). The full-precision
    weights of converted layers are freed (deep-copy the model first to keep them). Raises ValueError for a
    model in training mode and `FP8UnsupportedError` (before changing anything) when cfg asks for the kernel
    on a device without it. Returns (model, summary); model is the argument unless it is itself a layer.
    """
    cfg = cfg or FP8Config()
    if model.training:
        raise ValueError("convert_to_fp8 is for inference (converted layers have no backward): call "
                         "model.eval() first")  # fmt: skip
    # 1. Plan: every linear / 1×1-conv layer under every name, with its skip reason (None: convert); a
    #    module registered under several names follows the decision for its first name.
    plan: list[tuple[str, nn.Module, str | None]] = []
    other: list[tuple[str, str]] = []
    decided: dict[int, str | None] = {}
    mha = [f"{n}." for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, FP8Linear):
            raise ValueError(f"{name or 'the model'} is already FP8: convert a model once")
        if isinstance(m, nn.Linear) or is_pointwise_conv(m):
            inside = any(name.startswith(prefix) for prefix in mha)  # MHA reads out_proj.weight itself
            reason = "parent: nn.MultiheadAttention reads the weight" if inside else skip_reason(name, m, cfg)
            reason = decided.setdefault(id(m), reason)
            plan.append((name, m, reason))
        elif (reason := _other_conv_reason(m)) is not None:
            other.append((name, reason))
    # 2. The kernel must run on every device that holds a linear layer (converted or not: asking for the
    #    kernel on a CPU or pre-Ada model is refused even where every layer would be skipped), for the
    #    output dtypes the converted layers will produce.
    if cfg.backend == "scaled_mm":
        for device in sorted({str(m.weight.device) for _, m, _ in plan}):
            dtypes = {m.weight.dtype for _, m, r in plan if r is None and str(m.weight.device) == device}
            for dtype in sorted(dtypes or {torch.bfloat16}, key=str):
                check_fp8_kernel(device, cfg.granularity, dtype)
    # 3. Replace (a module shared by several parents stays shared).
    done: dict[int, nn.Module] = {}
    for name, m, reason in plan:
        if reason is not None:
            continue
        if id(m) not in done:
            done[id(m)] = FP8Linear.from_linear(m, cfg) if isinstance(m, nn.Linear) else \
                FP8PointwiseConv2d.from_conv(m, cfg)  # fmt: skip
        if not name:
            model = done[id(m)]
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, done[id(m)])
    weights = {True: 0, False: 0}
    for m, reason in {id(m): (m, reason) for _, m, reason in plan}.values():  # each module once
        weights[reason is None] += m.weight.numel()
    summary = FP8Summary(cfg, tuple(n for n, _, r in plan if r is None),
                         tuple((n, r) for n, _, r in plan if r is not None) + tuple(other),
                         weights[True], weights[False])  # fmt: skip
    return model, summary


def fp8_copy(model: nn.Module, cfg: FP8Config | None = None) -> nn.Module:
    """An FP8 inference copy of ``model`` (eval, no grad), the original untouched: ``cfg``, else the kernel
    (``torch._scaled_mm``) on CUDA and its bit-exact emulation elsewhere, both with the default settings."""
    import copy

    if cfg is None:
        device = next(model.parameters()).device
        cfg = FP8Config(backend="scaled_mm" if device.type == "cuda" else "emulate")
    clone = copy.deepcopy(model).eval().requires_grad_(False)
    return convert_to_fp8(clone, cfg)[0]
