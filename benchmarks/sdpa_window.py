"""The dream step's softmax attention at its steady-state shape: one masked SDPA call (the chunk-causal
window mask over [sink; 10 recent; context; new frame], as the blocks run it) against two unmasked calls (one
per query frame, each over the 12 key frames it sees), under each SDPA backend; and a ragged batch (rows at
different frames, some still filling their window: `CausalContext.ragged`) three ways: the per-row token
mask (B, 1, N, N_keys) the blocks build, a float bias of the same shape, and one call per query frame with a
key-only mask (B, 1, 1, N_keys) that broadcasts over the queries. Batch 512, 4 heads of 64, 256 tokens a
frame, bf16 on CUDA (fp32 on the CPU, for the tests).

    python benchmarks/sdpa_window.py --out results
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).parent))
from linear_attention import timed  # noqa: E402
from results_io import check_device, hardware, write_result  # noqa: E402

FRAMES = 13  # key frames: sink, 10 recent, context, new frame


def frame_masks(B: int, filling: int, dev: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The steady-state (2, 13) frame mask, and per-row key validity (B, 13): the first `filling` rows are
    streams restarted 1 .. filling frames ago (their recent slots partly empty), as a vector env's autoresets
    leave them."""
    fm = torch.ones(2, FRAMES, dtype=torch.bool, device=dev)
    fm[0, 12] = False  # the context frame does not see the new one
    fm[1, 1] = False  # the new frame's window has moved past the oldest recent frame
    valid = torch.ones(B, FRAMES, dtype=torch.bool, device=dev)
    for r in range(min(filling, B)):  # 1. row r has frames 0 .. r + 1: sink plus its last r recent slots
        valid[r, 1 : 11 - r] = False
    return fm, valid


def ways(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fm: torch.Tensor, valid: torch.Tensor
         ) -> dict[str, Callable[[], torch.Tensor]]:  # fmt: skip
    """name -> one attention call over q (B, H, 2S, D), k, v (B, H, 13S, D)."""
    S = q.shape[2] // 2

    def tok(m: torch.Tensor) -> torch.Tensor:  # (..., T, F) frames -> (..., T·S, F·S) tokens
        return m.repeat_interleave(S, -2).repeat_interleave(S, -1)

    uniform = tok(fm)  # (2S, 13S)
    rows = tok(fm[None] & valid[:, None])[:, None]  # (B, 1, 2S, 13S)
    bias = torch.zeros(rows.shape, dtype=q.dtype, device=q.device).masked_fill(~rows, float("-inf"))
    keys = valid.repeat_interleave(S, -1)  # (B, 13S)
    key_ctx = (keys & fm[0].repeat_interleave(S))[:, None, None, : 12 * S]  # (B, 1, 1, 12S)
    key_new = (keys & fm[1].repeat_interleave(S))[:, None, None]  # (B, 1, 1, 13S)

    def sdpa(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        return F.scaled_dot_product_attention(q_, k_, v_, attn_mask=m)

    def split() -> torch.Tensor:
        a_ = sdpa(q[:, :, :S], k[:, :, : 12 * S], v[:, :, : 12 * S], None)
        kk, vv = (torch.cat([t[:, :, :S], t[:, :, 2 * S :]], 2) for t in (k, v))
        return torch.cat([a_, sdpa(q[:, :, S:], kk, vv, None)], 2)

    def ragged_split() -> torch.Tensor:
        a_ = sdpa(q[:, :, :S], k[:, :, : 12 * S], v[:, :, : 12 * S], key_ctx)
        return torch.cat([a_, sdpa(q[:, :, S:], k, v, key_new)], 2)

    return {"masked": lambda: sdpa(q, k, v, uniform), "split": split,
            "ragged rows mask": lambda: sdpa(q, k, v, rows), "ragged rows bias": lambda: sdpa(q, k, v, bias),
            "ragged split key mask": ragged_split}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--filling", type=int, default=44,
                   help="rows of the ragged batch still filling their window (512 envs, 128-step episodes: 44)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    cuda = check_device(p, a.device).type == "cuda"
    B, H, D, S = a.batch, 4, 64, 256 if cuda else 16
    dt = torch.bfloat16 if cuda else torch.float32
    q = torch.randn(B, H, 2 * S, D, device=a.device, dtype=dt)  # (B, H, 2 frames, D): context, new frame
    k = torch.randn(B, H, FRAMES * S, D, device=a.device, dtype=dt)
    v = torch.randn_like(k)
    fm, valid = frame_masks(B, a.filling, a.device)
    fns = ways(q, k, v, fm, valid)
    ref = {"split": "masked", "ragged rows bias": "ragged rows mask", "ragged split key mask": "ragged rows mask"}
    diffs = {n: (fns[n]().float() - fns[r]().float()).abs().max().item() for n, r in ref.items()}
    pairs = 4 * H * D * S * S  # FLOPs of one query frame of one row against one key frame, QK^T and PV
    flops = {"masked": 24 * B * pairs, "split": 24 * B * pairs}  # each query frame attends 12 key frames
    ragged = int((fm[None] & valid[:, None]).sum()) * pairs  # the attended frame pairs of every row
    flops.update({n: ragged for n in fns if n.startswith("ragged")})
    rows = []
    backends = (None, SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                SDPBackend.MATH) if cuda else (None,)  # fmt: skip
    for backend in backends:
        for name, fn in fns.items():  # 1. each way under each backend
            label = "auto" if backend is None else backend.name
            try:
                if backend is None:
                    ms = timed(fn, 3, 20, cuda)[0]
                else:
                    with sdpa_kernel(backend):
                        ms = timed(fn, 3, 20, cuda)[0]
            except RuntimeError as e:  # a backend that cannot run this call (flash takes no mask)
                rows.append({"way": name, "backend": label, "error": str(e)[:120]})
                continue
            rows.append({"way": name, "backend": label, "ms": ms, "tflops": flops[name] / ms / 1e9})
            print(f"{name:22s} {label:20s} {ms:8.2f} ms {flops[name] / ms / 1e9:7.1f} TFLOP/s", flush=True)
    write_result(a.out, "sdpa_window", hardware(a.device), {
        "benchmark": "sdpa_window", "torch": torch.__version__, "device": a.device, "batch": B,
        "tokens_per_frame": S, "filling_rows": a.filling, "max_abs_diff": diffs,
        "max_abs_diff_split_vs_masked": diffs["split"], "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
