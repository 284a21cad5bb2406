"""Autoencoder specs (SANA f32c32 on the meta device, our small f8c16), the latent codec, save/load."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sana_world.generators.autoencoder import (
    AutoencoderSpec,
    LatentCodec,
    build_autoencoder,
    dc_ae_f8c16_world,
    dc_ae_f32c32,
    fit_scaling_factor,
    load_autoencoder,
)

# config.json of mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers (the fields AutoencoderDC reads).
PUBLISHED_F32C32 = {
    "in_channels": 3,
    "latent_channels": 32,
    "attention_head_dim": 32,
    "encoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3,
    "decoder_block_types": ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3,
    "encoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "encoder_layers_per_block": [2, 2, 2, 3, 3, 3],
    "decoder_layers_per_block": [3, 3, 3, 3, 3, 3],
    "encoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "decoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "upsample_block_type": "interpolate",
    "downsample_block_type": "Conv",
    "decoder_norm_types": "rms_norm",
    "decoder_act_fns": "silu",
    "scaling_factor": 0.41407,
}


def _as_lists(value):
    return [_as_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_f32c32_matches_published_config():
    kwargs = dc_ae_f32c32().to_kwargs()
    assert {k: _as_lists(v) for k, v in kwargs.items()} == PUBLISHED_F32C32


def test_f32c32_on_meta_device():
    spec = dc_ae_f32c32()
    with torch.device("meta"):
        ae = build_autoencoder(spec)
    n, n_enc, n_dec = _n_params(ae), _n_params(ae.encoder), _n_params(ae.decoder)
    print(f"f32c32 params: {n:,} (encoder {n_enc:,}, decoder {n_dec:,})")
    assert 3.0e8 < n < 3.3e8 and 1.4e8 < n_enc < 1.6e8  # 312 M: 153 M + 159 M with diffusers 0.42
    assert spec.downsample_factor == 32 and spec.latent_shape(1024, 1024) == (32, 32, 32)
    codec = LatentCodec(ae)
    assert codec.scaling_factor == 0.41407
    z = codec.encode(torch.empty(1, 3, 1024, 1024, device="meta"))  # shapes only, no compute
    assert z.shape == (1, 32, 32, 32)
    assert codec.decode(z).shape == (1, 3, 1024, 1024)


def test_spec_validation():
    spec = dc_ae_f8c16_world()
    with pytest.raises(ValueError, match="decoder_layers_per_block"):
        replace(spec, decoder_layers_per_block=(1, 2))
    with pytest.raises(ValueError, match="unknown block types"):
        replace(spec, encoder_block_types=("ResBlock", "Attention", "ResBlock", "ResBlock"))
    with pytest.raises(ValueError, match="divisible"):
        spec.latent_shape(100, 128)


@pytest.fixture(scope="module")
def small_ae():
    torch.manual_seed(0)
    return build_autoencoder(dc_ae_f8c16_world(scaling_factor=0.5)).eval()


def test_small_config_round_trips_128(small_ae):
    n = _n_params(small_ae)
    print(f"f8c16 world params: {n:,} (encoder {_n_params(small_ae.encoder):,})")
    assert 2e6 < n < 1.5e7
    codec = LatentCodec(small_ae)
    images = torch.randint(0, 256, (1, 128, 128, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = codec.encode(images)
        out = codec.decode(z)
        out_u8 = codec.decode(z, as_uint8=True)
    assert z.shape == (1, *dc_ae_f8c16_world().latent_shape(128, 128)) == (1, 16, 16, 16)
    assert out.shape == (1, 3, 128, 128) and out.dtype == torch.float32
    assert out_u8.shape == (1, 128, 128, 3) and out_u8.dtype == torch.uint8
    expected = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(out_u8, expected)


def test_codec_scales_exactly_once_on_real_ae(small_ae):
    codec = LatentCodec(small_ae)  # scaling from the AE config: 0.5
    assert codec.scaling_factor == 0.5
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        raw = small_ae.encode(x).latent
        z = codec.encode(x)
        assert torch.equal(z, raw * 0.5)
        assert torch.equal(codec.decode(z), small_ae.decode(z / 0.5).sample)
        # uint8 (B, H, W, 3) input maps to the same [-1, 1] tensor.
        u8 = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
        as_float = u8.permute(0, 3, 1, 2).float() / 127.5 - 1
        assert torch.equal(codec.encode(u8), codec.encode(as_float))


class _IdentityAE(nn.Module):
    """encode/decode are the identity, so any (un)scaling the codec does shows up directly."""

    def __init__(self, scaling_factor: float) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(
            scaling_factor=scaling_factor, latent_channels=3, encoder_block_out_channels=(8,)
        )

    def encode(self, x):
        return SimpleNamespace(latent=x)

    def decode(self, z):
        return SimpleNamespace(sample=z)


def test_codec_scaling_and_shift_with_identity_stub():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    codec = LatentCodec(_IdentityAE(0.25), shift=0.1)
    z = codec.encode(x)
    assert torch.allclose(z, (x - 0.1) * 0.25)
    assert torch.allclose(codec.decode(z), x, atol=1e-6)
    override = LatentCodec(_IdentityAE(0.25), scaling_factor=2.0)
    assert torch.allclose(override.encode(x), x * 2.0)
    assert fit_scaling_factor(_IdentityAE(1.0), x, batch_size=1) == pytest.approx(1 / x.square().mean().sqrt().item())


def test_codec_rejects_bad_inputs():
    codec = LatentCodec(_IdentityAE(1.0))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        codec.encode(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        codec.encode(torch.zeros(1, 4, 4, 3))
    with pytest.raises(TypeError):
        codec.encode(torch.zeros(1, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="latents"):
        codec.decode(torch.zeros(1, 5, 4, 4))
    with pytest.raises(ValueError, match="positive"):
        LatentCodec(_IdentityAE(0.0))


def test_codec_rejects_indivisible_size(small_ae):
    with pytest.raises(ValueError, match="divisible"):
        LatentCodec(small_ae).encode(torch.zeros(1, 3, 36, 32))


def test_save_load_round_trip(small_ae, tmp_path):
    small_ae.save_pretrained(tmp_path / "vae")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = LatentCodec(small_ae).encode(x)
        for folder in (tmp_path, tmp_path / "vae"):  # pipeline layout and bare AE folder
            loaded = load_autoencoder(folder)
            assert loaded.config.scaling_factor == 0.5
            assert torch.equal(LatentCodec(loaded).encode(x), ref)
    with pytest.raises(FileNotFoundError, match="missing_ae"):
        load_autoencoder(tmp_path / "missing_ae")


def test_spec_is_a_frozen_dataclass():
    spec = dc_ae_f8c16_world()
    assert isinstance(spec, AutoencoderSpec) and spec.downsample_factor == 8
    with pytest.raises(AttributeError):
        spec.latent_channels = 4  # type: ignore[misc]
