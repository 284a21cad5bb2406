"""Build the models of a zoo entry (``sana_world.zoo``): autoencoder codec, SANA-WM world model, SanaDiT
scene-start model and the text encoder they were trained with.

    >>> from sana_world.generators import zoo
    >>> models = zoo.load("rooms-128")                      # verified, fp32 on the CPU
    >>> models.world_model, models.codec, models.image, models.text

Weights ship in bf16 (they are half the size) and load into fp32 modules by default; pass ``dtype`` to
keep another precision. ``add_component`` imports a trainer's ``export/`` folder into an entry, splitting
weights into safetensors shards of at most ``max_shard_bytes`` (the repository keeps files under 16 MiB).

Export folders: the autoencoder trainer writes ``RUN/export`` itself when a run finishes; the world-model
and image trainers write checkpoints only, and ``export_folder`` writes ``RUN/export`` from a run's latest
checkpoint (for any trainer, an autoencoder run stopped early included):

    python -m sana_world.generators.train.export_folder runs/wm runs/wm.tar     # writes runs/wm/export
    python -m sana_world.generators.zoo derive rooms-128 ./zoo/cand --world-model runs/wm/export
    python -m sana_world.generators.zoo add my-entry world_model runs/wm/export --overwrite

``derive_entry`` (the ``derive`` command) copies an entry to a new folder with some components replaced by
exports (a candidate to score with ``benchmarks/fidelity.py --model ./zoo/cand`` before it replaces the
shipped one); ``replace_component`` (the ``add`` command) swaps one component of an entry in place, and
refuses to overwrite one without ``overwrite=True`` (``--overwrite``).

Both check every export before writing anything (:func:`compatibility_problems` and the rules below) and
raise :class:`ZooError` listing every problem:

* the world model must dream one latent frame per env step, as the Dream envs do: Plücker / temporal stride
  1, trained chunk-causally with one latent frame per chunk and a clean anchor frame (the world-model
  trainer's ``--temporal-stride 1 --chunk-size 1``, the shipped entry's settings);
* channels and sizes fit: the world and image models take the autoencoder's latent channels and the
  procedural text encoder's captions, the entry's resolution divides by the autoencoder's downsample factor
  times each patch size, and every component was trained at that resolution;
* an autoencoder export loads strictly (:func:`~sana_world.generators.autoencoder.load_autoencoder`);
* an autoencoder that changes the latent space (other encoder weights or scaling factor; a decoder-only
  fine-tune keeps it) needs every component trained on latents to come with it: a world model, and an
  image model or ``--drop-image``, unless ``--max-latent-drift D`` is given and the new encoder's scaled
  latents lie within D (relative RMS) of the old one's on held-out GT frames, measured then (an anchored
  fine-tune, ``--anchor-weight``): the kept models then read latents that far from the ones they learnt;
  a world or image model trained on an autoencoder folder that still exists must have been trained on the
  entry's latents.

The manifest's resolution, dream defaults and description are rewritten from the exports' training configs
(the world model's training resolution and ``shift``, and its context level if it trained at one; the
base's tuned sampler choices stay otherwise), and ``derived_from`` names the base entry, the exports and
where each dream default came from.
:func:`load` runs the same compatibility checks on an existing entry before it builds any model.

Names and folders (:func:`entry`, used by :func:`load`): a bare name ("rooms-128") is always an entry of
the zoo, whatever folders the current directory holds; a folder is given as a path: a ``Path``, or a
string with a path separator or starting with "." or "~" ("runs/wm/cand", "./cand", "~/cand").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sana_world.checkpoints import read_json_object
from sana_world.generators.autoencoder import downsample_factor_of, weight_gaps
from sana_world.zoo import ZooEntry, ZooError, entry, is_path

__all__ = ["ZooModels", "add_component", "compatibility_problems", "derive_entry", "entry", "is_path", "load",
           "load_state_dict", "replace_component"]

MAX_SHARD_BYTES = 15 * 1024 * 1024
_CLASSES = {"world_model": "SanaWM", "image": "SanaDiT", "autoencoder": "AutoencoderDC"}
_LABELS = {"world_model": "world model", "image": "image model", "autoencoder": "autoencoder"}
_LATENT_USERS = ("world_model", "image")  # components trained on the autoencoder's latents
_DROPPABLE = ("image",)  # load() builds an entry without them (ZooModels.image is None)
_AE_ENCODER_KEYS = ("in_channels", "latent_channels", "encoder_block_types", "encoder_block_out_channels",
                    "encoder_layers_per_block", "encoder_qkv_multiscales", "downsample_block_type",
                    "attention_head_dim", "encoder_out_shortcut")


@dataclass
class ZooModels:
    """The models of one zoo entry, in eval mode without gradients."""

    entry: ZooEntry
    codec: nn.Module  # LatentCodec over the AutoencoderDC
    world_model: nn.Module  # SanaWM
    text: nn.Module  # ProceduralTextEncoder
    image: nn.Module | None  # SanaDiT (None if the entry has none)

    @property
    def resolution(self) -> int:
        return self.entry.resolution


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``folder`` (shards merged; duplicate keys raise)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ZooError(f"no .safetensors weights in {folder}")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        part = load_file(str(f))
        dup = set(out) & set(part)
        if dup:
            raise ZooError(f"{f} repeats tensors of another shard: {sorted(dup)[:3]}")
        out.update(part)
    return out


def _config(cls: type, raw: dict[str, Any]) -> Any:
    """A frozen config dataclass from JSON (lists back to tuples where the default is a tuple)."""
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            v = raw[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def _build(kind: str, meta: dict[str, Any]) -> nn.Module:
    """The (random) SanaWM / SanaDiT that ``meta["config"]`` describes."""
    if kind == "world_model":
        from sana_world.world_model import SanaWM, SanaWMConfig

        return SanaWM(_config(SanaWMConfig, meta["config"]))
    from sana_world.generators.image.dit import SanaDiT, SanaDiTConfig

    return SanaDiT(_config(SanaDiTConfig, meta["config"]))


def _fit_problem(model: nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """How ``weights`` fail to fill ``model`` exactly (missing, unexpected, other shapes), or None."""
    missing, unexpected, shapes = weight_gaps(model, {k: v.shape for k, v in weights.items()})
    if not (missing or unexpected or shapes):
        return None
    return (f"missing {len(missing)} {missing[:3]}, unexpected {len(unexpected)} {unexpected[:3]}, "
            f"other shapes {len(shapes)} {shapes[:3]}")


def load_component(folder: str | os.PathLike[str], kind: str, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> nn.Module:
    """The frozen ``kind`` ("world_model" or "image") of one component or export folder (config.json +
    .safetensors shards), strictly loaded, on ``device`` in ``dtype``, eval; ZooError if it is another class
    or its weights do not fit its config."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ZooError(f"{folder} has no config.json: pass a zoo component folder or a trainer's export/ folder")
    meta = _read_json(folder / "config.json")
    if meta.get("_class_name") != _CLASSES[kind]:
        raise ZooError(f"{folder}/config.json describes {meta.get('_class_name')!r}, expected "
                       f"{_CLASSES[kind]!r}")
    model = _build(kind, meta)
    weights = load_state_dict(folder)
    problem = _fit_problem(model, weights)
    if problem:
        raise ZooError(f"{folder}: weights do not fit {_CLASSES[kind]} ({problem})")
    model.load_state_dict(weights, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _read_json(path: Path, unchanged: str = "") -> dict[str, Any]:
    return read_json_object(path, ZooError, unchanged)


# --- What the Dream envs need from an entry ----------------------------------------------------------------


def _text_dim() -> int:
    """Caption width of the text encoder :func:`load` builds (the procedural encoder's default)."""
    from sana_world.generators.text_encoders import ProceduralTextEncoderConfig

    return ProceduralTextEncoderConfig().dim


def _ae_geometry(config: dict[str, Any]) -> tuple[int, int] | None:
    """(latent channels, downsample factor) of a diffusers AutoencoderDC config; None if it is none."""
    if config.get("_class_name") != "AutoencoderDC" or "latent_channels" not in config \
            or "encoder_block_out_channels" not in config:  # fmt: skip
        return None
    return int(config["latent_channels"]), downsample_factor_of(config)


def _wm_problems(cfg: dict[str, Any], where: str, ae: tuple[int, int] | None, resolution: int) -> list[str]:
    m, t = cfg.get("config") or {}, cfg.get("training") or {}
    out, flags = [], []
    stride = m.get("plucker_stride")
    if stride != 1:
        channels = 6 * stride if isinstance(stride, int) else "?"
        out.append(f"world model {where} has temporal stride {stride} (plucker_stride: chunk_plucker of "
                   f"{channels} channels), but the Dream envs dream one latent frame per env step and need "
                   "temporal stride 1")
        flags.append("--temporal-stride 1")
    if "chunk_size" in t and t["chunk_size"] != 1:
        out.append(f"world model {where} was trained with chunk_size {t['chunk_size']} (latent frames per "
                   "causal chunk), but the Dream envs stream one latent frame per chunk and need "
                   "chunk_size 1")
        flags.append("--chunk-size 1")
    if t.get("chunk_causal") is False:
        out.append(f"world model {where} was trained bidirectionally (chunk_causal false), but the Dream "
                   "envs stream it chunk-causally")
    if t.get("anchor_frame") is False:
        out.append(f"world model {where} was trained without a clean anchor frame, but the Dream envs start "
                   "every stream from one")
        flags.append("--anchor-frame")
    if flags:
        out.append("train the world model with `python -m sana_world.generators.train.world_model "
                   f"{' '.join(flags)} ...` (the shipped rooms-128 world model's settings) and export it "
                   "again")
    patch = tuple(m.get("patch_size", (1, 1, 1)))[1:]
    out += _latent_problems("world model", m, t, where, ae, resolution, patch)
    return out


def _latent_problems(label: str, m: dict[str, Any], t: dict[str, Any], where: str, ae: tuple[int, int] | None,
                     resolution: int, patch: tuple[int, ...]) -> list[str]:
    """Channel and size problems of a model on the autoencoder's latents and the procedural captions."""
    out = []
    dim = _text_dim()
    if ae is not None and m.get("in_channels") != ae[0]:
        out.append(f"{label} {where} takes {m.get('in_channels')} latent channels, but the entry's "
                   f"autoencoder gives {ae[0]}")
    if m.get("caption_channels") != dim or t.get("text_encoder", "procedural") != "procedural":
        out.append(f"{label} {where} was trained on {m.get('caption_channels')}-d captions of text "
                   f"encoder {t.get('text_encoder', '?')!r}, but zoo entries use the procedural text encoder "
                   f"({dim}-d; the trainers' --text-encoder procedural)")
    if ae is not None and resolution % ae[1] == 0:
        side = resolution // ae[1]
        if any(side % max(1, int(p)) for p in patch):
            out.append(f"{label} {where} has patch size {list(patch)}, which does not divide the "
                       f"{side}x{side} latents of the entry's {resolution}x{resolution} frames")
    return out


def compatibility_problems(configs: dict[str, dict[str, Any]], resolution: int,
                           where: dict[str, str] | None = None) -> list[str]:
    """What keeps the components ``configs`` (component -> its ``config.json``) from running together in a
    Dream env at ``resolution``: one sentence each, empty if nothing does. ``where`` names each component's
    folder in the sentences. Reads configs only (no weights): :func:`load` checks an entry with it before it
    builds any model, ``derive`` and ``add`` check the entry they would write."""
    where = {c: (where or {}).get(c, c) for c in configs}
    out: list[str] = []
    ae = None
    if "autoencoder" in configs:
        ae = _ae_geometry(configs["autoencoder"])
        if ae is None:
            out.append(f"autoencoder {where['autoencoder']} is not a diffusers AutoencoderDC folder (an "
                       "in-house checkpoint export?); export the autoencoder run with `python -m "
                       "sana_world.generators.train.export_folder RUN_DIR OUT.tar`")
        elif resolution % ae[1]:
            out.append(f"the entry's resolution {resolution} is not a multiple of autoencoder "
                       f"{where['autoencoder']}'s downsample factor {ae[1]}")
    if "world_model" in configs:
        out += _wm_problems(configs["world_model"], where["world_model"], ae, resolution)
    if "image" in configs:
        m, t = configs["image"].get("config") or {}, configs["image"].get("training") or {}
        p = int(m.get("patch_size", 1))
        out += _latent_problems("image model", m, t, where["image"], ae, resolution, (p, p))
    return out


def load(name: str | os.PathLike[str] = "rooms-128", device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, verify: bool = True) -> ZooModels:
    """The verified models of zoo entry ``name`` (a bare name or a folder path, :func:`entry`) on ``device``
    in ``dtype`` (module doc). The components' configs are checked against what the Dream envs need
    (:func:`compatibility_problems`, the one check of the autoencoder's config) before any weight is read:
    ZooError naming every problem."""
    from sana_world.generators.autoencoder import LatentCodec, load_checked_autoencoder
    from sana_world.generators.text_encoders import ProceduralTextEncoder

    dev = torch.device(device)
    e = entry(name, verify=verify)
    folders = {c: e.folder(c) for c in e.manifest["components"]}
    for required in ("autoencoder", "world_model"):
        e.folder(required)  # ZooError naming the entry if it has none
    configs = {c: _read_json(f / "config.json") for c, f in folders.items()}
    problems = compatibility_problems(configs, e.resolution, {c: str(f) for c, f in folders.items()})
    if problems:
        raise ZooError(f"zoo entry {e.name!r} ({e.root}) does not fit the Dream envs: " + "; ".join(problems))
    try:
        ae = load_checked_autoencoder(folders["autoencoder"], configs["autoencoder"], dtype=dtype, device=dev)
    except ValueError as err:
        raise ZooError(f"zoo entry {e.name!r}: {err}") from err
    codec = LatentCodec(ae.requires_grad_(False)).eval()
    wm = load_component(e.folder("world_model"), "world_model", dev, dtype)
    image = load_component(e.folder("image"), "image", dev, dtype) if e.has("image") else None
    text = ProceduralTextEncoder().to(dev).eval()
    return ZooModels(entry=e, codec=codec, world_model=wm, text=text, image=image)


def main(argv: list[str] | None = None) -> None:
    """``python -m sana_world.generators.zoo {add,derive} ...`` (``zoo_derive.main``)."""
    from sana_world.generators.zoo_derive import main as zoo_main

    zoo_main(argv)


_WRITERS = ("add_component", "derive_entry", "replace_component")


def __getattr__(name: str) -> Any:
    """The entry writers live in :mod:`sana_world.generators.zoo_derive` (which reads this module's helpers);
    ``zoo.derive_entry`` and the others resolve there on first use."""
    if name in _WRITERS:
        from sana_world.generators import zoo_derive

        return getattr(zoo_derive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

if __name__ == "__main__":
    main()
