"""The dream step's softmax attention at its steady-state shape on CUDA: one masked SDPA call (the chunk-causal
window mask over [sink; 10 recent; context; new frame], as the blocks run it) against two unmasked calls (one
per query frame, each over the 12 key frames it sees), under each SDPA backend. Batch 512, 4 heads of 64,
256 tokens a frame, bf16.

    python benchmarks/sdpa_window.py --out results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).parent))
from linear_attention import hardware, timed  # noqa: E402
from results_io import write_result  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    B, H, D, S = a.batch, 4, 64, 256
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(B, H, 2 * S, D, device=dev, dtype=dt)  # (B, H, 2 frames, D): context, new frame
    k = torch.randn(B, H, 13 * S, D, device=dev, dtype=dt)  # sink, 10 recent, context, new frame
    v = torch.randn_like(k)
    fm = torch.ones(2, 13, dtype=torch.bool, device=dev)
    fm[0, 12] = False  # the context frame does not see the new one
    fm[1, 1] = False  # the new frame's window has moved past the oldest recent frame
    mask = fm.repeat_interleave(S, 0).repeat_interleave(S, 1)  # (2S, 13S)

    def masked() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def split() -> torch.Tensor:
        a_ = F.scaled_dot_product_attention(q[:, :, :S], k[:, :, : 12 * S], v[:, :, : 12 * S])
        kk, vv = (torch.cat([t[:, :, :S], t[:, :, 2 * S :]], 2) for t in (k, v))
        return torch.cat([a_, F.scaled_dot_product_attention(q[:, :, S:], kk, vv)], 2)

    err = (masked().float() - split().float()).abs().max().item()
    flops = 4 * B * H * D * (2 * S) * (12 * S)  # the attended pairs, QK^T and PV
    rows = []
    for backend in (None, SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        for name, fn in (("masked", masked), ("split", split)):  # 1. each way under each backend
            try:
                if backend is None:
                    ms = timed(fn, 3, 20, True)[0]
                else:
                    with sdpa_kernel(backend):
                        ms = timed(fn, 3, 20, True)[0]
            except RuntimeError as e:  # a backend that cannot run this call (flash takes no mask)
                rows.append({"way": name, "backend": "auto" if backend is None else backend.name,
                             "error": str(e)[:120]})  # fmt: skip
                continue
            rows.append({"way": name, "backend": "auto" if backend is None else backend.name, "ms": ms,
                         "tflops": flops / ms / 1e9})  # fmt: skip
            print(f"{name:7s} {rows[-1]['backend']:20s} {ms:7.2f} ms {flops / ms / 1e9:7.1f} TFLOP/s")
    write_result(a.out, "sdpa_window", hardware(), {"benchmark": "sdpa_window", "torch": torch.__version__,
                                                     "batch": B, "max_abs_diff_split_vs_masked": err,
                                                     "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
