"""Warm starts for a larger SanaWM from trained weights: more blocks, or a finer spatial patch.

- **More blocks** (``num_layers`` up; a block's kind depends only on its index, so the old blocks keep theirs): the old blocks
  keep their weights and the new ones are appended with freshly initialised weights whose residual outputs
  (attention ``proj``, the Mix-FFN ``pointwise`` conv, cross-attention ``proj``, ``plucker_proj``) are zero.
  Each new block is then the identity, so the grown model computes exactly what the old one did, and
  training starts from there (the zero projections still get gradients: their inputs are not zero).
- **A finer patch** (``patch_size`` (1, 2, 2) -> (1, 1, 1)): one token per latent pixel instead of one per
  2 x 2 latent pixels. The patch embedders' kernels are summed (a new token embeds one latent pixel as the
  old token embedded a 2 x 2 patch of that value) and the output head's rows are averaged over the 2 x 2
  sub-positions. Not exact: positions (RoPE, the 3 x 3 Mix-FFN conv) now step half as far, so the model
  must adapt in training; everything else carries over.

    python -m sana_world.generators.train.grow WEIGHTS_FOLDER runs/init_p1 --preset rooms_p1

A source that already has the preset's shape is copied unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from sana_world.world_model import PRESETS, SanaWM, SanaWMConfig

__all__ = ["grow_folder", "grow_state_dict", "source_config"]

# The residual output projections of a block: zero makes the block the identity.
_ZERO_OUT = ("attn.proj.weight", "attn.proj.bias", "ffn.glu.pointwise.weight", "ffn.glu.pointwise.bias",
             "cross_attn.proj.weight", "cross_attn.proj.bias", "plucker_proj.weight", "plucker_proj.bias")


def _check(old: SanaWMConfig, new: SanaWMConfig) -> None:
    """Raise unless ``new`` differs from ``old`` only in what :func:`grow_state_dict` can grow."""
    same = dataclasses.replace(new, num_layers=old.num_layers, patch_size=old.patch_size)
    if same != old:
        diff = [f.name for f in dataclasses.fields(old) if getattr(same, f.name) != getattr(old, f.name)]
        raise ValueError(f"can only grow num_layers and refine patch_size; these differ too: {diff}")
    if new.num_layers < old.num_layers:
        raise ValueError(f"num_layers can only grow ({old.num_layers} -> {new.num_layers})")
    if new.patch_size != old.patch_size and new.patch_size != (1, 1, 1):
        raise ValueError(f"patch_size can only go to (1, 1, 1), asked {old.patch_size} -> {new.patch_size}")


@torch.no_grad()
def grow_state_dict(sd: dict[str, torch.Tensor], old: SanaWMConfig, new: SanaWMConfig,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """The weights of a ``new``-config SanaWM grown from ``sd`` of an ``old``-config one (module doc)."""
    _check(old, new)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        fresh = SanaWM(new).state_dict()  # (new blocks' weights, and the target shapes)
    out: dict[str, torch.Tensor] = {}
    # 1. every old tensor (shapes checked at the end, after step 2 refits the patch tensors)
    for key, value in sd.items():
        if key not in fresh:
            raise KeyError(f"{key} of the old weights has no place in the new model")
        out[key] = value.clone()
    # 2. a finer patch: summed embedding kernels, output head rows averaged over the sub-positions
    if new.patch_size != old.patch_size:
        for name in ("patch_embed", "plucker_embed", "raymap_embed"):
            w = sd[f"{name}.weight"]  # (D, C_in, 1, ph, pw)
            out[f"{name}.weight"] = w.sum(dim=(3, 4), keepdim=True)  # (D, C_in, 1, 1, 1)
        _, ph, pw = old.patch_size
        C = old.in_channels
        w, b = sd["final.proj.weight"], sd["final.proj.bias"]  # (ph·pw·C, D), (ph·pw·C,)
        out["final.proj.weight"] = w.view(ph * pw, C, -1).mean(dim=0)  # (C, D)
        out["final.proj.bias"] = b.view(ph * pw, C).mean(dim=0)  # (C,)
    # 3. new blocks: fresh weights, residual outputs zero (identity blocks)
    for key, value in fresh.items():
        if key in out:
            continue
        if not key.startswith("blocks."):
            raise KeyError(f"{key} is new but is not in a new block")
        local = key.split(".", 2)[2]
        out[key] = torch.zeros_like(value) if local in _ZERO_OUT else value.clone()
    for key, value in out.items():
        if value.shape != fresh[key].shape:
            raise ValueError(f"{key}: grown shape {tuple(value.shape)} != model shape {tuple(fresh[key].shape)}")
    return out


def source_config(src: Path) -> SanaWMConfig:
    """The SanaWMConfig of a weights folder's ``config.json``."""
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("_class_name") != "SanaWM":
        raise ValueError(f"{src}/config.json is not a SanaWM config")
    return SanaWMConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["config"].items()})


def grow_folder(src: Path, dst: Path, new: SanaWMConfig, seed: int = 0) -> Path:
    """Write ``dst/model.safetensors`` + ``config.json`` (fp32) grown from the weights folder ``src``
    (a zoo world_model folder or a run's export/, with its config.json); ``dst`` must not hold files."""
    from safetensors.torch import save_file

    from sana_world.generators.zoo import load_state_dict

    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty; grow_folder writes a new folder")
    old = source_config(src)
    sd = {k: v.float() for k, v in load_state_dict(src).items()}
    grown = grow_state_dict(sd, old, new, seed)
    dst.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in grown.items()}, str(dst / "model.safetensors"))
    config = {"_class_name": "SanaWM", "config": dataclasses.asdict(new), "grown_from": str(src)}
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return dst


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="weights folder (zoo world_model or run export/) with config.json")
    p.add_argument("dst", type=Path, help="output folder")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="config to grow into")
    p.add_argument("--seed", type=int, default=0, help="seed of the new blocks' weights")
    a = p.parse_args(argv)
    old = source_config(a.src)
    # the preset's shape, with the source's adapted channels and stride (as the trainer adapts presets)
    new = dataclasses.replace(PRESETS[a.preset](), in_channels=old.in_channels,
                              caption_channels=old.caption_channels, plucker_stride=old.plucker_stride)
    print(f"grew {a.src} into {grow_folder(a.src, a.dst, new, a.seed)} ({a.preset})")


if __name__ == "__main__":
    main()
