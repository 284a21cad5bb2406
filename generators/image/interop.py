"""Conversion between `SanaDiT` and diffusers' `SanaTransformer2DModel`.

diffusers is imported lazily inside the functions that need it; loading a diffusers-format directory
(config.json + *.safetensors, sharded or not; :mod:`sana_world.checkpoints`) needs only safetensors.

Parameter names differ in three ways: ours fuse the linear attention's q/k/v into one `qkv` Linear
and the cross-attention's k/v into one `kv` Linear; the rest is a one-to-one rename.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from sana_world.checkpoints import assert_materialized, build_on_meta, diffusers_source, take

from .dit import SanaDiT, SanaDiTConfig

if TYPE_CHECKING:
    from diffusers import SanaTransformer2DModel

__all__ = ["config_from_diffusers", "config_to_diffusers", "from_diffusers", "to_diffusers"]

DIFFUSERS_CLASS = "SanaTransformer2DModel"
DIFFUSERS_LINEAR_ATTN_EPS = 1e-15
# diffusers config key -> SanaDiTConfig field, for keys that carry over unchanged.
_SAME_KEYS = {
    "in_channels": "in_channels",
    "out_channels": "out_channels",
    "num_layers": "num_layers",
    "attention_head_dim": "head_dim",
    "num_cross_attention_heads": "cross_heads",
    "cross_attention_head_dim": "cross_head_dim",
    "caption_channels": "caption_channels",
    "mlp_ratio": "mlp_ratio",
    "attention_bias": "attention_bias",
    "sample_size": "sample_size",
    "patch_size": "patch_size",
    "norm_eps": "norm_eps",
    "interpolation_scale": "interpolation_scale",
    "guidance_embeds": "guidance_embeds",
    "guidance_embeds_scale": "guidance_embeds_scale",
    "timestep_scale": "timestep_scale",
}
# diffusers config keys that need a check or a computation.
_CHECKED_KEYS = {
    "num_attention_heads",
    "cross_attention_dim",
    "dropout",
    "norm_elementwise_affine",
    "qk_norm",
}


def config_from_diffusers(config: dict[str, Any], truncate_timesteps: bool = False) -> SanaDiTConfig:
    """Map a `SanaTransformer2DModel` config dict to `SanaDiTConfig`; unsupported values raise ValueError."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(config) - set(_SAME_KEYS) - _CHECKED_KEYS)
    if unknown:
        raise ValueError(f"unsupported {DIFFUSERS_CLASS} config keys: {unknown}")
    kwargs: dict[str, Any] = {ours: config[theirs] for theirs, ours in _SAME_KEYS.items() if theirs in config}
    for key in ("num_cross_attention_heads", "cross_attention_head_dim"):
        if key in config and config[key] is None:
            raise ValueError(f"{key}=None (no cross-attention) is not supported")
    heads = config.get("num_attention_heads", 70)
    kwargs["dim"] = heads * kwargs.get("head_dim", 32)
    cross_dim = config.get("cross_attention_dim", 2240)
    if cross_dim != kwargs["dim"]:
        raise ValueError(
            f"cross_attention_dim={cross_dim} must equal "
            f"num_attention_heads·attention_head_dim={kwargs['dim']}"
        )
    if config.get("dropout", 0.0) != 0.0:
        raise ValueError(f"dropout={config['dropout']} is not supported (only 0.0)")
    if config.get("norm_elementwise_affine", False):
        raise ValueError("norm_elementwise_affine=True is not supported (only False)")
    qk_norm = config.get("qk_norm")
    if qk_norm not in (None, "rms_norm_across_heads"):
        raise ValueError(f"qk_norm={qk_norm!r} is not supported (only None or 'rms_norm_across_heads')")
    kwargs["qk_norm"] = kwargs["cross_norm"] = qk_norm is not None
    return SanaDiTConfig(**kwargs, truncate_timesteps=truncate_timesteps)


def config_to_diffusers(cfg: SanaDiTConfig) -> dict[str, Any]:
    """`SanaDiTConfig` -> `SanaTransformer2DModel(**kwargs)` keyword arguments."""
    if cfg.qk_norm != cfg.cross_norm:
        raise ValueError(
            f"qk_norm={cfg.qk_norm} with cross_norm={cfg.cross_norm} has no diffusers equivalent "
            "(its single qk_norm setting covers both attentions)"
        )
    if cfg.linear_attn_eps != DIFFUSERS_LINEAR_ATTN_EPS:
        raise ValueError(
            f"linear_attn_eps={cfg.linear_attn_eps} has no diffusers equivalent (fixed at 1e-15)"
        )
    kwargs = {theirs: getattr(cfg, ours) for theirs, ours in _SAME_KEYS.items()}
    kwargs["out_channels"] = cfg.out_dim
    kwargs.update(
        num_attention_heads=cfg.heads,
        cross_attention_dim=cfg.dim,
        dropout=0.0,
        norm_elementwise_affine=False,
        qk_norm="rms_norm_across_heads" if cfg.qk_norm else None,
    )
    return kwargs


def _renames(cfg: SanaDiTConfig) -> list[tuple[str, str]]:
    """One-to-one (ours, diffusers) parameter names."""
    t_prefix = "time_embed.timestep_embedder" if cfg.guidance_embeds else "time_embed.emb.timestep_embedder"
    pairs = [
        ("t_embed.fc1", f"{t_prefix}.linear_1"),
        ("t_embed.fc2", f"{t_prefix}.linear_2"),
        ("t_block.linear", "time_embed.linear"),
        ("caption_proj.fc1", "caption_projection.linear_1"),
        ("caption_proj.fc2", "caption_projection.linear_2"),
        ("patch_embed.proj", "patch_embed.proj"),
        ("final.proj", "proj_out"),
    ]
    if cfg.guidance_embeds:
        pairs += [("guidance_embed.fc1", "time_embed.guidance_embedder.linear_1")]
        pairs += [("guidance_embed.fc2", "time_embed.guidance_embedder.linear_2")]
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"transformer_blocks.{i}"
        pairs += [
            (f"{ours}.attn.proj", f"{theirs}.attn1.to_out.0"),
            (f"{ours}.cross_attn.q", f"{theirs}.attn2.to_q"),
            (f"{ours}.cross_attn.proj", f"{theirs}.attn2.to_out.0"),
            (f"{ours}.ffn.inverted", f"{theirs}.ff.conv_inverted"),
            (f"{ours}.ffn.depthwise", f"{theirs}.ff.conv_depth"),
        ]
    named = [(f"{a}.{s}", f"{b}.{s}") for a, b in pairs for s in ("weight", "bias")]
    named += [
        ("caption_proj.norm.weight", "caption_norm.weight"),
        ("final.scale_shift_table", "scale_shift_table"),
    ]
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"transformer_blocks.{i}"
        named += [
            (f"{ours}.mod.scale_shift_table", f"{theirs}.scale_shift_table"),
            (f"{ours}.ffn.pointwise.weight", f"{theirs}.ff.conv_point.weight"),
        ]
        for n in "qk":
            if cfg.qk_norm:
                named.append((f"{ours}.attn.qk_norm.{n}.weight", f"{theirs}.attn1.norm_{n}.weight"))
            if cfg.cross_norm:
                named.append((f"{ours}.cross_attn.qk_norm.{n}.weight", f"{theirs}.attn2.norm_{n}.weight"))
    return named


def _fused(cfg: SanaDiTConfig) -> list[tuple[str, list[str]]]:
    """(our fused parameter, diffusers parameters concatenated along dim 0 in order)."""
    groups = []
    for i in range(cfg.num_layers):
        ours, theirs = f"blocks.{i}", f"transformer_blocks.{i}"
        suffixes = ("weight", "bias") if cfg.attention_bias else ("weight",)
        for s in suffixes:
            groups.append((f"{ours}.attn.qkv.{s}", [f"{theirs}.attn1.to_{n}.{s}" for n in "qkv"]))
        for s in ("weight", "bias"):
            groups.append((f"{ours}.cross_attn.kv.{s}", [f"{theirs}.attn2.to_{n}.{s}" for n in "kv"]))
    return groups


def state_dict_from_diffusers(sd: dict[str, torch.Tensor], cfg: SanaDiTConfig) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    out = {ours: take(sd, theirs, "diffusers") for ours, theirs in _renames(cfg)}
    for ours, parts in _fused(cfg):
        out[ours] = torch.cat([take(sd, k, "diffusers") for k in parts], dim=0)
    if sd:
        raise ValueError(f"diffusers parameters with no counterpart in SanaDiT: {sorted(sd)[:10]}")
    return out


def state_dict_to_diffusers(sd: dict[str, torch.Tensor], cfg: SanaDiTConfig) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    out = {theirs: take(sd, ours, "SanaDiT") for ours, theirs in _renames(cfg)}
    for ours, parts in _fused(cfg):
        for key, chunk in zip(parts, take(sd, ours, "SanaDiT").chunk(len(parts), dim=0)):
            out[key] = chunk.clone()
    if sd:
        raise ValueError(f"SanaDiT parameters with no diffusers counterpart: {sorted(sd)[:10]}")
    return out


def from_diffusers(
    obj_or_dir: SanaTransformer2DModel | str | os.PathLike[str],
    dtype: torch.dtype | None = None,
    *,
    truncate_timesteps: bool = False,
) -> SanaDiT:
    """Build a `SanaDiT` from a diffusers `SanaTransformer2DModel` or a diffusers-format directory.

    Args:
        obj_or_dir: a model instance (weights are copied, not shared) or a directory holding
            config.json and safetensors weights (a pipeline root with `transformer/` also works).
        dtype: parameter dtype; None means float32.
        truncate_timesteps: False reproduces diffusers exactly (it embeds fractional t as given);
            True gives NVlabs' integer-timestep behaviour with the same weights.
    """
    dtype = torch.float32 if dtype is None else dtype
    config, sd, copy = diffusers_source(obj_or_dir, DIFFUSERS_CLASS)
    cfg = config_from_diffusers(config, truncate_timesteps=truncate_timesteps)
    ours = state_dict_from_diffusers(sd, cfg)
    for key, value in ours.items():
        target = dtype if value.is_floating_point() else value.dtype
        ours[key] = value.detach().to(dtype=target, copy=copy)
    return build_on_meta(lambda: SanaDiT(cfg), ours)


def to_diffusers(model: SanaDiT, *, drop_timestep_truncation: bool = False) -> SanaTransformer2DModel:
    """Build a diffusers `SanaTransformer2DModel` with the same weights, dtype and device as `model`.

    diffusers' model embeds fractional timesteps as given; converting a model built with
    `truncate_timesteps=True` raises unless `drop_timestep_truncation=True` acknowledges that change.
    """
    from diffusers import SanaTransformer2DModel

    from sana_world.nn import sincos_pos_embed_2d

    cfg = model.cfg
    if cfg.truncate_timesteps and not drop_timestep_truncation:
        raise ValueError(
            "truncate_timesteps=True has no diffusers equivalent (SanaTransformer2DModel does not round t); "
            "pass drop_timestep_truncation=True to convert anyway"
        )
    kwargs = config_to_diffusers(cfg)
    theirs = state_dict_to_diffusers({k: v.detach().clone() for k, v in model.state_dict().items()}, cfg)
    dmodel = build_on_meta(lambda: SanaTransformer2DModel(**kwargs), theirs)
    # 1. The only non-persistent buffer: the sin-cos table at the base grid, when position tables are on.
    if cfg.interpolation_scale is not None:
        base = cfg.sample_size // cfg.patch_size
        device = model.final.proj.weight.device
        table = sincos_pos_embed_2d(cfg.dim, base, base, base, cfg.interpolation_scale, device=device)
        dmodel.patch_embed.register_buffer("pos_embed", table[None], persistent=False)
    assert_materialized(dmodel)
    return dmodel.train(model.training)
