"""What one world-model training step asks of the device: tokens per clip and softmax-attention memory.

SanaWM's GDN blocks are linear in the token count ``N``, but each softmax block runs two full attentions
over all ``N`` tokens of a clip (the main branch and the camera branch), and their memory grows as ``N^2``.
The fused kernels (CUDA's, and ``_scaled_dot_product_flash_attention_for_cpu`` on the CPU, fp32 and bf16)
keep no scores, but a chunk-causal mask, a bool ``N x N`` tensor, is turned into a float bias of the
query's dtype (at most 4 bytes an element) for each call. With
the identity codec (``autoencoder="pixels"``) ``N`` is every pixel of every latent frame, so a modest
resolution can ask for far more memory than the machine has; the trainer refuses such a run before it
starts (:func:`check_clip_cost`) instead of swapping for minutes without a step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from sana_world.generators.train.errors import usage_error
from sana_world.world_model import SanaWMConfig

_GB = 1024**3


@dataclass(frozen=True)
class ClipCost:
    """Tokens of one training clip and the softmax-attention memory of one step on one rank (an estimate)."""

    frames: int  # latent frames per clip
    grid: tuple[int, int]  # tokens per latent frame (rows, columns)
    batch: int  # clips per rank per step
    attention_bytes: int  # softmax-attention memory of one step
    device_bytes: int | None  # the device's memory (None: unknown)

    @property
    def tokens(self) -> int:
        return self.frames * self.grid[0] * self.grid[1]

    @property
    def too_large(self) -> bool:
        return self.device_bytes is not None and self.attention_bytes > self.device_bytes

    def summary(self) -> str:
        device = "" if self.device_bytes is None else f" of the device's {_size(self.device_bytes)}"
        rows, cols = self.grid
        return (f"{self.tokens:,} tokens per clip ({self.frames} latent frames of {rows}x{cols} tokens); "
                f"softmax attention needs about {_size(self.attention_bytes)} per step "
                f"({self.batch} clips){device}")


def _size(n: int) -> str:
    return f"{n / _GB:.1f} GB" if n >= _GB / 10 else f"{n / 1024**2:.1f} MB"


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (the machine's RAM for the CPU); None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return None


def clip_cost(model: SanaWMConfig, latent_frames: int, latent_size: tuple[int, int], batch: int,
              device: torch.device, masked: bool) -> ClipCost:
    """The cost of clips of ``latent_frames`` latent frames of ``latent_size`` latents (module doc);
    ``masked``: chunk-causal attention."""
    grid = (latent_size[0] // model.patch_size[1], latent_size[1] // model.patch_size[2])
    n = latent_frames * grid[0] * grid[1]
    calls = 2 * sum(model.is_softmax_block(i) for i in range(model.num_layers))  # main + camera branch
    per_call = 4 * n * n if masked else 0  # the mask as a float bias; the same on every device (module doc)
    return ClipCost(latent_frames, grid, batch, calls * per_call, device_memory(device))


def check_clip_cost(cost: ClipCost, allow: bool) -> None:
    """A usage error when the estimate exceeds the device's memory, unless ``allow``."""
    if cost.too_large and not allow:
        raise usage_error(ValueError, f"{cost.summary()}: this run cannot fit. Train on the latents of an "
                          "autoencoder export (<autoencoder=PATH>, e.g. an autoencoder run's export/: 8x "
                          "fewer tokens per side), or use a smaller <resolution>, fewer <clip_frames>, a "
                          "larger <temporal_stride> or a smaller <batch_size>; "
                          "<allow_large_attention=True> tries anyway")
