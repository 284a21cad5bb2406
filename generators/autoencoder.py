"""Deep-compression autoencoders (diffusers ``AutoencoderDC``) and the latent codec the generators use.

The network itself is diffusers' ``AutoencoderDC``; this module only adds

* :class:`AutoencoderSpec`: a typed, frozen description that produces the ``AutoencoderDC`` keyword
  arguments, with two presets: :func:`dc_ae_f32c32` (the published SANA-1.0 autoencoder) and
  :func:`dc_ae_f8c16_world` (a few-M-parameter autoencoder for our 128x128 rooms);
* :class:`LatentCodec`: images <-> diffusion latents, the one place where the latent scaling lives;
* :func:`build_autoencoder` / :func:`load_autoencoder` / :func:`fit_scaling_factor`;
* the helpers the model zoo shares: :func:`autoencoder_folder`, :func:`downsample_factor_of`,
  :func:`weight_gaps`.

Example:
    >>> import torch
    >>> spec = dc_ae_f32c32()
    >>> spec.latent_shape(1024, 1024)
    (32, 32, 32)
    >>> with torch.device("meta"):
    ...     ae = build_autoencoder(spec)
    >>> codec = LatentCodec(ae)
    >>> codec.scaling_factor
    0.41407
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from diffusers import AutoencoderDC

_RES = "ResBlock"
_VIT = "EfficientViTBlock"
_BLOCK_TYPES = (_RES, _VIT)
_WEIGHTS = "diffusion_pytorch_model.safetensors"  # diffusers' weight file (or shard index stem)


def downsample_factor_of(config: Mapping[str, Any] | Any) -> int:
    """Spatial compression (image side / latent side) of an ``AutoencoderDC`` config: a config dict,
    ``ae.config`` or an :class:`AutoencoderSpec`. Every stage after the first halves the resolution."""
    stages = config["encoder_block_out_channels"] if isinstance(config, Mapping) \
        else config.encoder_block_out_channels  # fmt: skip
    return 2 ** (len(stages) - 1)


def weight_gaps(model: nn.Module,
                shapes: Mapping[str, Sequence[int]]) -> tuple[list[str], list[str], list[str]]:
    """How tensors of ``shapes`` (name -> shape) fail to fill ``model`` exactly: the names of its state dict
    they lack, those it lacks, and those of another shape; each sorted, all empty if they fit."""
    want = model.state_dict()
    missing = sorted(set(want) - set(shapes))
    unexpected = sorted(set(shapes) - set(want))
    other = sorted(k for k in set(want) & set(shapes) if tuple(want[k].shape) != tuple(shapes[k]))
    return missing, unexpected, other


@dataclass(frozen=True)
class AutoencoderSpec:
    """Constructor arguments of a diffusers ``AutoencoderDC``; one entry per resolution stage.

    Stage ``i`` runs at ``1 / 2**i`` of the input resolution, so ``len(block_out_channels) - 1``
    stride-2 stages give a downsampling factor of ``2 ** (n_stages - 1)``.
    """

    latent_channels: int
    encoder_block_types: tuple[str, ...]
    decoder_block_types: tuple[str, ...]
    encoder_block_out_channels: tuple[int, ...]
    decoder_block_out_channels: tuple[int, ...]
    encoder_layers_per_block: tuple[int, ...]
    decoder_layers_per_block: tuple[int, ...]
    encoder_qkv_multiscales: tuple[tuple[int, ...], ...]
    decoder_qkv_multiscales: tuple[tuple[int, ...], ...]
    in_channels: int = 3
    attention_head_dim: int = 32
    downsample_block_type: str = "Conv"  # anything but "pixel_unshuffle" is a strided conv
    upsample_block_type: str = "interpolate"
    decoder_norm_types: str = "rms_norm"
    decoder_act_fns: str = "silu"
    scaling_factor: float = 1.0  # 1 / RMS of the raw latents; see fit_scaling_factor

    def __post_init__(self) -> None:
        n = len(self.encoder_block_out_channels)
        per_stage = {
            "encoder_block_types": self.encoder_block_types,
            "decoder_block_types": self.decoder_block_types,
            "decoder_block_out_channels": self.decoder_block_out_channels,
            "encoder_layers_per_block": self.encoder_layers_per_block,
            "decoder_layers_per_block": self.decoder_layers_per_block,
            "encoder_qkv_multiscales": self.encoder_qkv_multiscales,
            "decoder_qkv_multiscales": self.decoder_qkv_multiscales,
        }
        for name, value in per_stage.items():
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} stages, encoder_block_out_channels has {n}")
        for name in ("encoder_block_types", "decoder_block_types"):
            unknown = set(getattr(self, name)) - set(_BLOCK_TYPES)
            if unknown:
                raise ValueError(f"{name}: unknown block types {sorted(unknown)}; expected {_BLOCK_TYPES}")
        if self.scaling_factor <= 0:
            raise ValueError(f"scaling_factor must be positive, got {self.scaling_factor}")

    @property
    def downsample_factor(self) -> int:
        """Spatial compression: image side / latent side."""
        return downsample_factor_of(self)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of a ``height x width`` image."""
        f = self.downsample_factor
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} is not divisible by the downsampling factor {f}")
        return (self.latent_channels, height // f, width // f)

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``diffusers.AutoencoderDC``."""
        return asdict(self)


def dc_ae_f32c32() -> AutoencoderSpec:
    """The published SANA-1.0 DC-AE (``mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers``): 1024^2 -> 32x32x32.

    Three ResBlock stages then three EfficientViT stages (multi-scale linear attention with a 5x5
    aggregation branch), channels 128..1024, RMSNorm + SiLU decoder, latent scale 0.41407.
    About 312 M parameters (153 M encoder, 159 M decoder).
    """
    types = (_RES, _RES, _RES, _VIT, _VIT, _VIT)
    channels = (128, 256, 512, 512, 1024, 1024)
    multiscales = ((), (), (), (5,), (5,), (5,))
    return AutoencoderSpec(
        latent_channels=32,
        encoder_block_types=types,
        decoder_block_types=types,
        encoder_block_out_channels=channels,
        decoder_block_out_channels=channels,
        encoder_layers_per_block=(2, 2, 2, 3, 3, 3),
        decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
        encoder_qkv_multiscales=multiscales,
        decoder_qkv_multiscales=multiscales,
        scaling_factor=0.41407,
    )


def dc_ae_f8c16_world(scaling_factor: float = 1.0) -> AutoencoderSpec:
    """A small DC-AE for our 128x128 procedural rooms: 128^2 -> 16x16x16, about 7 M parameters.

    Why f8c16 rather than SANA's f32c32:

    * f32 would leave a 4x4 latent at 128^2, too coarse for a room with several objects; f8 gives a
      16x16 grid, i.e. 256 DiT tokens at patch 1 -- the token count SANA itself uses at 512^2.
    * 16 channels is a 12x compression (3*8*8/16). A few-M-parameter AE trained on one small domain
      cannot reach DC-AE's 96x, and our textures (checker, stripes, dots, brick) are high-frequency.
    * Same block recipe as SANA's (ResBlocks at high resolution, EfficientViT multi-scale linear
      attention at 32^2 and 16^2, RMSNorm + SiLU decoder) so code paths match the big model.

    ``scaling_factor`` is unknown until the AE is trained: measure it with :func:`fit_scaling_factor`.
    """
    return _f8c16(channels=(32, 64, 128, 256), decoder_layers=(1, 2, 2, 2), scaling_factor=scaling_factor)


def dc_ae_f8c16_lite(scaling_factor: float = 1.0) -> AutoencoderSpec:
    """The CPU-friendly twin of :func:`dc_ae_f8c16_world`: same 128^2 -> 16x16x16 latent and block recipe,
    half the channels (16..128) and one decoder layer at the two high-resolution stages.

    Decoding one 128^2 frame costs 1.5 GFLOP against 6.3 for ``f8c16`` (counted with
    ``torch.utils.flop_counter``), which is what a Dream env pays per step on a laptop CPU; about 1.9 M
    parameters.
    """
    return _f8c16(channels=(16, 32, 64, 128), decoder_layers=(1, 1, 2, 2), scaling_factor=scaling_factor)


def dc_ae_f8c16_lite_wide(scaling_factor: float = 1.0) -> AutoencoderSpec:
    """The ``f8c16_lite`` encoder with the ``f8c16`` decoder (channels 32..256, layers 1, 2, 2, 2).

    A larger decoder for latents that already exist: trained with the lite encoder frozen (the autoencoder
    trainer's ``--init-weights ... --init-encoder-only --freeze-encoder``), the latent space and its scale
    stay exactly the lite autoencoder's, so a world model trained on them keeps working. The decoder has
    3.6 M parameters (lite: 0.9 M) and costs 6.3 GFLOP a 128^2 frame (lite: 1.5).
    """
    return _f8c16(channels=(16, 32, 64, 128), decoder_layers=(1, 2, 2, 2), scaling_factor=scaling_factor,
                  decoder_channels=(32, 64, 128, 256))


def _f8c16(channels: tuple[int, ...], decoder_layers: tuple[int, ...], scaling_factor: float,
           decoder_channels: tuple[int, ...] | None = None) -> AutoencoderSpec:
    """The f8c16 recipe: ResBlocks at 128^2 and 64^2, EfficientViT (5x5 multi-scale) at 32^2 and 16^2;
    the decoder's channels are the encoder's unless given."""
    types = (_RES, _RES, _VIT, _VIT)
    multiscales = ((), (), (5,), (5,))
    return AutoencoderSpec(
        latent_channels=16,
        encoder_block_types=types,
        decoder_block_types=types,
        encoder_block_out_channels=channels,
        decoder_block_out_channels=channels if decoder_channels is None else decoder_channels,
        encoder_layers_per_block=(1, 1, 2, 2),
        decoder_layers_per_block=decoder_layers,
        encoder_qkv_multiscales=multiscales,
        decoder_qkv_multiscales=multiscales,
        scaling_factor=scaling_factor,
    )


AE_PRESETS: dict[str, Callable[[], AutoencoderSpec]] = {
    "f32c32": dc_ae_f32c32,
    "f8c16": dc_ae_f8c16_world,
    "f8c16_lite": dc_ae_f8c16_lite,
    "f8c16_lite_wide": dc_ae_f8c16_lite_wide,
}


def build_autoencoder(spec: AutoencoderSpec) -> AutoencoderDC:
    """A randomly initialised ``AutoencoderDC``; wrap in ``with torch.device("meta"):`` for shape-only use."""
    from diffusers import AutoencoderDC

    return AutoencoderDC(**spec.to_kwargs())


def autoencoder_folder(path: str | Path) -> Path:
    """The autoencoder folder of ``path``: ``path`` itself if it holds a ``config.json``, else its ``vae/``
    subfolder if that does (a SANA diffusers pipeline folder), else ``path`` (which then holds none)."""
    from sana_world.checkpoints import model_dir

    return model_dir(path, "vae")


def load_autoencoder(
    local_dir: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None
) -> AutoencoderDC:
    """Load a diffusers-format ``AutoencoderDC`` from local files (never the hub), strictly.

    ``local_dir`` is either the AE folder itself (``config.json`` + safetensors weights) or a pipeline folder
    with a ``vae/`` subfolder, as in the SANA diffusers repositories (:func:`autoencoder_folder`). The
    folder's ``config.json`` must name ``"_class_name": "AutoencoderDC"`` and its weights must fill exactly
    the model that config describes: a ValueError naming the folder is raised for another class, an in-house
    checkpoint export (the model config nested under ``"config"``), missing weights, or any missing /
    unexpected / shape-mismatched tensor (diffusers itself would only warn and leave those layers at their
    random init).
    """
    from sana_world.checkpoints import read_json_object

    root = Path(local_dir)
    folder = autoencoder_folder(root)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no autoencoder at {root}: expected {root / 'config.json'} or {root / 'vae' / 'config.json'}"
        )
    # 1. the config: the right class, in diffusers' flat format
    config = read_json_object(folder / "config.json", ValueError)
    if config.get("_class_name") != "AutoencoderDC":
        cls = config.get("_class_name")
        raise ValueError(f"{folder} holds a {cls!r} (config.json _class_name), not an 'AutoencoderDC'")
    if "latent_channels" not in config and isinstance(config.get("config"), dict):
        raise ValueError(
            f"{folder} is an in-house checkpoint export (model config nested under 'config', weights in "
            "model.safetensors), not a diffusers AutoencoderDC folder; export the autoencoder run with "
            "`python -m sana_world.generators.train.export_folder RUN_DIR OUT.tar`, which writes "
            "RUN_DIR/export as the trainer does at the end of a run (diffusers folder with the fitted "
            "scaling_factor)"
        )
    return load_checked_autoencoder(folder, config, dtype=dtype, device=device)


def load_checked_autoencoder(
    folder: Path, config: dict[str, Any], *, dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> AutoencoderDC:
    """The weights half of :func:`load_autoencoder`: the ``AutoencoderDC`` of AE folder ``folder`` whose
    ``config.json`` the caller has read as ``config`` and checked (an ``AutoencoderDC`` in diffusers' flat
    format, as :func:`~sana_world.generators.zoo.compatibility_problems` requires); ValueError naming the
    folder unless its weights fill exactly the model ``config`` describes."""
    from diffusers import AutoencoderDC
    from diffusers.utils import logging as diffusers_logging

    if not any(folder.glob("diffusion_pytorch_model*.safetensors")):
        raise ValueError(f"{folder} has no diffusion_pytorch_model*.safetensors weights")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # e.g. unused config keys: the config was checked already
    try:
        # 2. the weights' names and shapes (file headers) against the model: every tensor, nothing else
        shapes = _weight_shapes(folder)
        if shapes is not None:  # else a weight file is missing: diffusers names it below
            with torch.device("meta"):
                missing, unexpected, other = weight_gaps(AutoencoderDC.from_config(config), shapes)
            if missing or unexpected or other:
                raise ValueError(
                    f"{folder}: the weights do not fit the AutoencoderDC its config.json describes "
                    f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. "
                    f"{unexpected[:3]}; {len(other)} of another shape, e.g. {other[:3]}); was config.json "
                    "edited or copied from another autoencoder?"
                )
        # 3. the weights themselves, read once
        kwargs: dict[str, Any] = {"local_files_only": True, "low_cpu_mem_usage": False,
                                  "use_safetensors": True}
        if dtype is not None:
            kwargs["torch_dtype"] = dtype
        ae = AutoencoderDC.from_pretrained(folder, **kwargs)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if device is not None:
        ae = ae.to(device)
    return ae.eval()


def _weight_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of every tensor diffusers loads from AE folder ``folder`` (the shards its index names,
    else the single weight file), read from the safetensors headers alone; None if one of the files is
    missing."""
    from safetensors import safe_open

    from sana_world.checkpoints import read_json_object

    index = folder / f"{_WEIGHTS}.index.json"
    files = [folder / _WEIGHTS]
    if index.is_file():
        weight_map = read_json_object(index, ValueError).get("weight_map") or {}
        files = [folder / name for name in sorted(set(weight_map.values()))]
    if not all(f.is_file() for f in files):
        return None
    out: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            out.update({k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()})
    return out


class LatentCodec(nn.Module):
    """Images <-> diffusion latents through an autoencoder; the only place latents are (un)scaled.

    ``z = (ae.encode(x) - shift) * scaling_factor`` and ``x = ae.decode(z / scaling_factor + shift)``.
    ``scaling_factor=None`` takes ``ae.config.scaling_factor`` (0.41407 for SANA's DC-AE). The codec does
    not disable autograd: wrap calls in ``torch.no_grad()`` when the AE is frozen.
    """

    def __init__(self, ae: nn.Module, scaling_factor: float | None = None, shift: float = 0.0) -> None:
        super().__init__()
        self.ae = ae
        scale = float(ae.config.scaling_factor) if scaling_factor is None else float(scaling_factor)
        if scale <= 0:
            raise ValueError(f"scaling_factor must be positive, got {scale}")
        self.scaling_factor = scale
        self.shift = float(shift)

    @property
    def downsample_factor(self) -> int:
        return downsample_factor_of(self.ae.config)

    @property
    def latent_channels(self) -> int:
        return int(self.ae.config.latent_channels)

    def _param(self) -> torch.Tensor:
        return next(self.ae.parameters())

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) or float [-1, 1] (B, 3, H, W) -> float [-1, 1] (B, 3, H, W) on the AE."""
        if images.ndim != 4:
            raise ValueError(f"images must be 4-D, got shape {tuple(images.shape)}")
        p = self._param()
        if images.dtype == torch.uint8:
            if images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be (B, H, W, 3), got {tuple(images.shape)}")
            x = images.to(p.device).permute(0, 3, 1, 2).to(p.dtype) / 127.5 - 1.0  # (B, 3, H, W)
        elif images.is_floating_point():
            if images.shape[1] != 3:
                raise ValueError(f"float images must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
            x = images.to(device=p.device, dtype=p.dtype)
        else:
            raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
        f = self.downsample_factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by the downsampling factor {f}")
        return x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> scaled latents (B, C, H/f, W/f)."""
        x = self.to_model_input(images)  # (B, 3, H, W)
        raw = self.ae.encode(x).latent  # (B, C, h, w)
        return (raw - self.shift) * self.scaling_factor

    def decode(self, latents: torch.Tensor, *, as_uint8: bool = False) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> float [-1, 1] (B, 3, H, W), or uint8 (B, H, W, 3) if ``as_uint8``."""
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (B, {self.latent_channels}, h, w), got {tuple(latents.shape)}")
        p = self._param()
        raw = latents.to(device=p.device, dtype=p.dtype) / self.scaling_factor + self.shift
        images = self.ae.decode(raw).sample  # (B, 3, H, W)
        if not as_uint8:
            return images
        return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def fit_scaling_factor(ae: nn.Module, images: torch.Tensor, batch_size: int = 16) -> float:
    """1 / RMS of the raw (unscaled) latents of ``images`` -- SANA's definition of the latent scale.

    Store it with ``ae.register_to_config(scaling_factor=value)`` before ``ae.save_pretrained``.
    """
    codec = LatentCodec(ae, scaling_factor=1.0)
    total, count = 0.0, 0
    for start in range(0, images.shape[0], batch_size):
        raw = codec.encode(images[start : start + batch_size]).double()  # (b, C, h, w)
        total += float(raw.square().sum())
        count += raw.numel()
    if count == 0:
        raise ValueError("fit_scaling_factor needs at least one image")
    rms = (total / count) ** 0.5
    if rms == 0:
        raise ValueError("all latents are zero; cannot fit a scaling factor")
    return 1.0 / rms


@torch.no_grad()
def latent_drift(encode: Callable[[torch.Tensor], torch.Tensor], encode0: Callable[[torch.Tensor], torch.Tensor],
                 rgb: torch.Tensor, batch_size: int = 64) -> float:
    """How far one encoder's latents lie from another's: ``RMS(encode(x) - encode0(x)) / RMS(encode0(x))``
    over uint8 frames ``rgb`` (N, H, W, 3), each encoder taking float [-1, 1] (b, 3, H, W) (an anchored
    autoencoder fine-tune's drift from its init; a new autoencoder's from an entry's, scaled latents)."""
    if rgb.dtype != torch.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[0] == 0:
        raise ValueError(f"rgb must be uint8 (N, H, W, 3) with N >= 1, got {rgb.dtype} {tuple(rgb.shape)}")
    sums = torch.zeros(2, dtype=torch.float64, device=rgb.device)
    for chunk in rgb.split(batch_size):
        x = chunk.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (b, 3, H, W)
        z, z0 = encode(x).double(), encode0(x).double()  # (b, C, h, w)
        sums += torch.stack([(z - z0).square().sum(), z0.square().sum()])
    if sums[1] == 0:
        raise ValueError("the reference encoder's latents are all zero: no drift can be measured against them")
    return float(sums[0] / sums[1]) ** 0.5
