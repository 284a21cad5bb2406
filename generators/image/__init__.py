"""Image generators: the SANA linear DiT and its diffusers interop."""

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
from .interop import config_from_diffusers, config_to_diffusers, from_diffusers, to_diffusers

__all__ = [
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
