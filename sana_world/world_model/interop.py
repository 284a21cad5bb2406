"""Conversion between `SanaWM` and diffusers' `SanaWMTransformer3DModel`.

diffusers is imported lazily; loading a diffusers-format directory (config.json + *.safetensors, sharded
or not, or a pipeline root with `transformer/`; :mod:`sana_world.checkpoints`) needs only safetensors.

Names are a one-to-one rename (no fused or split tensors). The `recall_gate` buffers (always zero,
never read) are dropped on the way in and recreated on the way out.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoints import assert_materialized, build_on_meta, diffusers_source, take
from .config import SanaWMConfig
from .model import SanaWM

if TYPE_CHECKING:
    from diffusers import SanaWMTransformer3DModel

__all__ = ["config_from_diffusers", "config_to_diffusers", "from_diffusers", "to_diffusers"]

DIFFUSERS_CLASS = "SanaWMTransformer3DModel"
# diffusers config key -> SanaWMConfig field, for keys that carry over unchanged.
_SAME_KEYS = {
    "in_channels": "in_channels",
    "num_layers": "num_layers",
    "hidden_size": "dim",
    "num_attention_heads": "cross_heads",
    "linear_head_dim": "head_dim",
    "softmax_every_n": "softmax_every_n",
    "mlp_ratio": "mlp_ratio",
    "t_kernel_size": "t_kernel_size",
    "conv_kernel_size": "conv_kernel_size",
    "qk_norm": "qk_norm",
    "cross_norm": "cross_norm",
    "y_norm": "y_norm",
    "caption_channels": "caption_channels",
}
# diffusers config keys whose value must be exactly this (anything else is an unimplemented path).
_REQUIRED = {
    "ffn_type": "GLUMBConvTemp",
    "k_conv_only": True,
    "pos_embed_type": "wan_rope",
    "use_pe": True,
    "cam_attn_compress": 1,
    "use_chunk_plucker_post_attn": True,
    "mlp_acts": ("silu", "silu", None),
    "learn_sigma": False,
    "pred_sigma": False,
}
# Keys diffusers itself ignores in the forward (documented there as kept for config compatibility).
_IGNORED = {"init_cam_from_base", "fp32_attention", "image_size", "mixed_precision"}
_DERIVED = {"patch_size", "chunk_plucker_channels", "chunk_plucker_post_attn_blocks"}


def config_from_diffusers(config: dict[str, Any]) -> SanaWMConfig:
    """Map a `SanaWMTransformer3DModel` config dict to `SanaWMConfig`; unsupported values raise ValueError."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(config) - set(_SAME_KEYS) - set(_REQUIRED) - _IGNORED - _DERIVED)
    if unknown:
        raise ValueError(f"unsupported {DIFFUSERS_CLASS} config keys: {unknown}")
    for key, expected in _REQUIRED.items():
        value = config.get(key, expected)
        value = tuple(value) if isinstance(value, list) else value
        if value != expected:
            raise ValueError(f"{key}={value!r} is not supported (only {expected!r})")
    kwargs: dict[str, Any] = {ours: config[theirs] for theirs, ours in _SAME_KEYS.items() if theirs in config}
    if "patch_size" in config:
        kwargs["patch_size"] = tuple(config["patch_size"])
    channels = config.get("chunk_plucker_channels", 48)
    if channels % 6 != 0:
        raise ValueError(f"chunk_plucker_channels={channels} is not a multiple of 6")
    kwargs["plucker_stride"] = channels // 6
    blocks = config.get("chunk_plucker_post_attn_blocks", 20)
    layers = kwargs.get("num_layers", 20)
    kwargs["plucker_blocks"] = None if blocks < 0 or blocks >= layers else blocks
    return SanaWMConfig(**kwargs)


def config_to_diffusers(cfg: SanaWMConfig) -> dict[str, Any]:
    """`SanaWMConfig` -> `SanaWMTransformer3DModel(**kwargs)` keyword arguments."""
    defaults = SanaWMConfig()
    for name in ("gdn_eps", "norm_eps", "cross_norm_eps", "rope_theta"):
        if getattr(cfg, name) != getattr(defaults, name):
            value, fixed = getattr(cfg, name), getattr(defaults, name)
            raise ValueError(f"{name}={value} has no diffusers equivalent (fixed at {fixed})")
    kwargs = {theirs: getattr(cfg, ours) for theirs, ours in _SAME_KEYS.items()}
    kwargs.update({k: v for k, v in _REQUIRED.items() if k != "mlp_acts"})
    kwargs.update(
        mlp_acts=_REQUIRED["mlp_acts"],
        patch_size=tuple(cfg.patch_size),
        chunk_plucker_channels=cfg.plucker_channels,
        chunk_plucker_post_attn_blocks=cfg.num_layers if cfg.plucker_blocks is None else cfg.plucker_blocks,
    )
    return kwargs


def _renames(cfg: SanaWMConfig) -> list[tuple[str, str]]:
    """(ours, diffusers) parameter names."""
    pairs = [
        ("patch_embed", "x_embedder.proj"),
        ("plucker_embed", "plucker_embedder.proj"),
        ("raymap_embed", "raymap_embedder.proj"),
        ("t_embed.fc1", "t_embedder.linear_1"),
        ("t_embed.fc2", "t_embedder.linear_2"),
        ("t_block.linear", "t_block.1"),
        ("caption_proj.fc1", "y_embedder.y_proj.fc1"),
        ("caption_proj.fc2", "y_embedder.y_proj.fc2"),
        ("final.proj", "final_layer.linear"),
    ]
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"blocks.{i}"
        for name in ("proj", "output_gate", "q_proj_cam", "k_proj_cam", "v_proj_cam", "out_proj_cam"):
            pairs.append((f"{ours}.attn.{name}", f"{theirs}.attn.{name}"))
        for name in ("beta_proj", "gate_proj"):
            pairs.append((f"{ours}.attn.gates.{name}", f"{theirs}.attn.{name}"))
        pairs += [
            (f"{ours}.cross_attn.q", f"{theirs}.cross_attn.q_linear"),
            (f"{ours}.cross_attn.kv", f"{theirs}.cross_attn.kv_linear"),
            (f"{ours}.cross_attn.proj", f"{theirs}.cross_attn.proj"),
            (f"{ours}.ffn.glu.inverted", f"{theirs}.mlp.inverted_conv.conv"),
            (f"{ours}.ffn.glu.depthwise", f"{theirs}.mlp.depth_conv.conv"),
        ]
        if cfg.has_plucker_proj(i):
            pairs.append((f"{ours}.plucker_proj", f"{theirs}.plucker_proj"))
    named = [(f"{a}.{s}", f"{b}.{s}") for a, b in pairs for s in ("weight", "bias")]
    named += [("final.scale_shift_table", "final_layer.scale_shift_table")]
    if cfg.y_norm:
        named.append(("caption_proj.norm.weight", "attention_y_norm.weight"))
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"blocks.{i}"
        named += [
            (f"{ours}.mod.scale_shift_table", f"{theirs}.scale_shift_table"),
            (f"{ours}.attn.qkv.weight", f"{theirs}.attn.qkv.weight"),
            (f"{ours}.attn.gates.A_log", f"{theirs}.attn.A_log"),
            (f"{ours}.attn.gates.dt_bias", f"{theirs}.attn.dt_bias"),
            (f"{ours}.ffn.glu.pointwise.weight", f"{theirs}.mlp.point_conv.conv.weight"),
            (f"{ours}.ffn.t_conv.weight", f"{theirs}.mlp.t_conv.weight"),
        ]
        if not cfg.is_softmax_block(i):
            for name in ("conv_k", "conv_k_cam"):
                named.append((f"{ours}.attn.{name}.weight", f"{theirs}.attn.{name}.weight"))
        if cfg.qk_norm:
            for name in ("q_norm", "k_norm", "q_norm_cam", "k_norm_cam"):
                named.append((f"{ours}.attn.{name}.weight", f"{theirs}.attn.{name}.weight"))
        if cfg.cross_norm:
            for n in "qk":
                pair = (f"{ours}.cross_attn.qk_norm.{n}.weight", f"{theirs}.cross_attn.{n}_norm.weight")
                named.append(pair)
    return named


def _recall_gates(cfg: SanaWMConfig) -> list[str]:
    return [f"blocks.{i}.attn.recall_gate" for i in range(cfg.num_layers)]


def state_dict_from_diffusers(sd: dict[str, torch.Tensor], cfg: SanaWMConfig) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    out = {ours: take(sd, theirs, "diffusers") for ours, theirs in _renames(cfg)}
    for key in _recall_gates(cfg):
        if key in sd and sd.pop(key).abs().max() != 0:
            raise ValueError(f"{key} is non-zero; SanaWM (like diffusers' forward) has no recall gate")
    if sd:
        raise ValueError(f"diffusers parameters with no counterpart in SanaWM: {sorted(sd)[:10]}")
    return out


def state_dict_to_diffusers(sd: dict[str, torch.Tensor], cfg: SanaWMConfig) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    out = {theirs: take(sd, ours, "SanaWM") for ours, theirs in _renames(cfg)}
    if sd:
        raise ValueError(f"SanaWM parameters with no diffusers counterpart: {sorted(sd)[:10]}")
    ref = out["final_layer.linear.weight"]
    for key in _recall_gates(cfg):
        out[key] = torch.zeros(1, dtype=ref.dtype, device=ref.device)
    return out


def from_diffusers(
    obj_or_dir: SanaWMTransformer3DModel | str | os.PathLike[str], dtype: torch.dtype | None = None
) -> SanaWM:
    """Build a `SanaWM` from a diffusers `SanaWMTransformer3DModel` (weights copied) or a diffusers-format
    directory. dtype: parameter dtype; None means float32."""
    dtype = torch.float32 if dtype is None else dtype
    config, sd, copy = diffusers_source(obj_or_dir, DIFFUSERS_CLASS)
    cfg = config_from_diffusers(config)
    ours = state_dict_from_diffusers(sd, cfg)
    for key, value in ours.items():
        ours[key] = value.detach().to(dtype=dtype, copy=copy)
    model = build_on_meta(lambda: SanaWM(cfg), ours)
    # 1. assign=True replaced the parameters, so re-apply the frozen (unused) ones.
    model.raymap_embed.requires_grad_(False)
    for block in model.blocks:
        if block.is_softmax:
            block.attn.gates.requires_grad_(False)
    return model


def to_diffusers(model: SanaWM) -> SanaWMTransformer3DModel:
    """Build a diffusers `SanaWMTransformer3DModel` with the same weights, dtype and device as `model`."""
    from diffusers import SanaWMTransformer3DModel
    from diffusers.models.transformers.transformer_sana_wm import SanaWMRotaryPosEmbed

    cfg = model.cfg
    kwargs = config_to_diffusers(cfg)
    theirs = state_dict_to_diffusers({k: v.detach().clone() for k, v in model.state_dict().items()}, cfg)
    dmodel = build_on_meta(lambda: SanaWMTransformer3DModel(**kwargs), theirs)
    # 1. The RoPE table is a plain attribute (neither parameter nor buffer): rebuild it off the meta device.
    with torch.device("cpu"):
        dmodel.rope = SanaWMRotaryPosEmbed(cfg.head_dim, tuple(cfg.patch_size), max_seq_len=1024)
    assert_materialized(dmodel)
    return dmodel.train(model.training)
