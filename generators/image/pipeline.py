"""Text → image with a SANA linear DiT: text encoder + denoiser + sampler + latent codec, in one call.

The same class drives a flow-matching model (Flow-Euler or Flow-DPM-Solver, with classifier-free
guidance) and a SANA-Sprint student (TrigFlow few-step sampler; the guidance scale, times the model's
``guidance_embeds_scale``, is fed to its guidance embedding instead of a second pass). A Sprint student
is a flow model in disguise, as diffusers' ``SanaSprintPipeline`` runs it: at TrigFlow angle t it sees
the flow interpolant at flow time sin t / (sin t + cos t) and that time as its timestep, and its
velocity is turned into the TrigFlow output (:func:`~sana_world.samplers.flow_to_trigflow`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sana_world.samplers import (
    FlowDPMSolverSampler, FlowEulerSampler, TrigFlowSampler, cfg_denoiser, flow_to_trigflow,
)


@dataclass(frozen=True)
class ImagePipelineConfig:
    """How images are sampled."""

    sampler: str = "dpm"  # "euler" | "dpm" | "trigflow" (Sprint checkpoints)
    num_steps: int = 20
    shift: float = 3.0
    guidance_scale: float = 4.5
    sigma_data: float = 0.5  # TrigFlow only

    def __post_init__(self) -> None:
        if self.sampler not in ("euler", "dpm", "trigflow"):
            raise ValueError(f"sampler must be 'euler', 'dpm' or 'trigflow', got {self.sampler!r}")
        n = self.num_steps
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:  # numpy integers count
            raise ValueError(f"num_steps must be an int >= 1, got {n!r}")
        object.__setattr__(self, "num_steps", int(n))
        for name in ("shift", "sigma_data"):
            if not getattr(self, name) > 0:  # NaN fails too
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")


class ImagePipeline:
    """``pipe(prompts, generator=g) -> uint8 images (B, H, W, 3)``.

    ``model`` is a :class:`~sana_world.generators.image.SanaDiT` (timestep = 1000·σ for flow models, the
    flow time σ itself for Sprint students, each times the model's ``timestep_scale``: 1 for SANA and
    SANA-Sprint checkpoints), ``text_encoder`` anything with ``encode`` / ``null_embedding``
    (:mod:`sana_world.generators.text_encoders`), ``codec`` a latent codec with ``decode`` and
    ``latent_channels`` / ``downsample_factor`` (:class:`~sana_world.generators.autoencoder.LatentCodec`).
    """

    def __init__(self, model: nn.Module, text_encoder: Any, codec: Any,
                 config: ImagePipelineConfig = ImagePipelineConfig()) -> None:
        self.model, self.text_encoder, self.codec, self.config = model, text_encoder, codec, config

    def _sampler(self):
        c = self.config
        if c.sampler == "euler":
            return FlowEulerSampler(num_steps=c.num_steps, shift=c.shift)
        if c.sampler == "dpm":
            return FlowDPMSolverSampler(num_steps=c.num_steps, shift=c.shift)
        return TrigFlowSampler(num_steps=c.num_steps, sigma_data=c.sigma_data)

    def _model(self, x: torch.Tensor, t: torch.Tensor, emb: Any, guidance: torch.Tensor | None = None):
        """The model in its own dtype (bf16 weights take bf16 inputs); the output in the sampler's dtype."""
        dtype = next(self.model.parameters()).dtype
        out = self.model(x.to(dtype), t, emb.hidden.to(dtype), emb.mask, guidance=guidance)
        return out.to(x.dtype)

    def denoiser(self, prompts: list[str], device: torch.device):
        """The sampler's denoiser for ``prompts``: CFG over (null, prompt) for flow models."""
        c = self.config
        cond = self.text_encoder.encode(prompts).to(device)
        t_scale = float(getattr(getattr(self.model, "cfg", None), "timestep_scale", 1.0))  # as SanaPipeline
        if c.sampler == "trigflow":
            scale = self.model.cfg.guidance_embeds_scale
            guidance = torch.full((len(prompts),), c.guidance_scale * scale, device=device)
            return flow_to_trigflow(lambda x, s: self._model(x, t_scale * s, cond, guidance))
        null = self.text_encoder.null_embedding().to(device).expand(len(prompts))

        def branch(emb: Any):
            return lambda x, s: self._model(x, 1000.0 * t_scale * s, emb)

        return cfg_denoiser((branch(null), branch(cond)), c.guidance_scale)

    @torch.no_grad()
    def latents(self, prompts: list[str], noise: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The sampler's clean latents (B, C, h, w) for ``prompts`` from ``noise`` (B, C, h, w), undecoded
        (``generator``: the TrigFlow sampler's re-noising). Checked inputs: use :meth:`__call__`."""
        kwargs = {"generator": generator} if self.config.sampler == "trigflow" else {}
        return self._sampler().sample(self.denoiser(prompts, noise.device), noise, **kwargs)

    @torch.no_grad()
    def __call__(self, prompts: list[str] | str, height: int, width: int, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, output: str = "uint8") -> torch.Tensor:
        """Images for ``prompts``: uint8 (B, H, W, 3), or float (B, 3, H, W) in [-1, 1] with ``output="float"``."""
        # 1. inputs
        if not isinstance(prompts, (str, list, tuple)):
            raise ValueError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("prompts must not be empty")
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be strings, got {[type(p).__name__ for p in prompts]}")
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        f = self.codec.downsample_factor
        if height % f or width % f:
            raise ValueError(f"height and width must be multiples of the codec's factor {f}, got {height}x{width}")
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        device = next(self.model.parameters()).device
        shape = (len(prompts), self.codec.latent_channels, height // f, width // f)
        # 2. noise, 3. sampling, 4. decoding
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        z = self.latents(prompts, noise, generator)  # (B, C, h, w)
        images = self.codec.decode(z).float().clamp(-1, 1)  # (B, 3, H, W)
        if output == "float":
            return images
        return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
