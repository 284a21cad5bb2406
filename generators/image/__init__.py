"""Image generators: the SANA linear DiT, its diffusers interop and the text → image pipeline."""

from .dit import (
    PRESETS,
    SanaBlock,
    SanaDiT,
    SanaDiTConfig,
    param_count,
    sana_600m,
    sana_1600m,
    sana_4800m,
    small,
    sprint_600m,
    sprint_1600m,
    tiny,
)
from .pipeline import ImagePipeline, ImagePipelineConfig
from .interop import config_from_diffusers, config_to_diffusers, from_diffusers, to_diffusers

__all__ = [
    "ImagePipeline",
    "ImagePipelineConfig",
    "PRESETS",
    "SanaBlock",
    "SanaDiT",
    "SanaDiTConfig",
    "config_from_diffusers",
    "config_to_diffusers",
    "from_diffusers",
    "param_count",
    "sana_600m",
    "sana_1600m",
    "sana_4800m",
    "small",
    "sprint_600m",
    "sprint_1600m",
    "tiny",
    "to_diffusers",
]
