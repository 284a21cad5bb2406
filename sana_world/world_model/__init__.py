"""SANA-WM world model: hybrid GDN / softmax video DiT with UCPE camera control and diffusers interop."""

from .cameras import WMCameraInputs, camera_inputs_from_actions, prepare_camera_inputs, snap_num_frames
from .causal import ChunkCausalConfig
from .config import PRESETS, SanaWMConfig, sana_wm_2600m, small, tiny
from .interop import config_from_diffusers, config_to_diffusers, from_diffusers, to_diffusers
from .model import GLUMBConvTemp, SanaWM, SanaWMBlock, image_conditioned_timesteps, param_count
from .streaming import WMStreamConfig, WMStreamEngine, WMStreamState, WMText

__all__ = [
    "ChunkCausalConfig",
    "WMCameraInputs",
    "WMStreamConfig",
    "WMStreamEngine",
    "WMStreamState",
    "WMText",
    "camera_inputs_from_actions",
    "prepare_camera_inputs",
    "snap_num_frames",
    "GLUMBConvTemp",
    "PRESETS",
    "SanaWM",
    "SanaWMBlock",
    "SanaWMConfig",
    "config_from_diffusers",
    "config_to_diffusers",
    "from_diffusers",
    "image_conditioned_timesteps",
    "param_count",
    "sana_wm_2600m",
    "small",
    "tiny",
    "to_diffusers",
]
