"""Warm starts of a larger SanaWM (generators.train.grow): appended blocks leave the function unchanged
(bidirectional and chunk-causal); a refined patch embeds a 2x2-constant latent as the old token did; configs
that cannot be grown raise; the folder CLI writes weights the new model loads."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers import off_init
from sana_world.generators.train.grow import grow_folder, grow_state_dict, main
from sana_world.world_model import SanaWM, tiny

B, T, H, W = 2, 3, 4, 4


def _old_cfg():
    return dataclasses.replace(tiny(), num_layers=3, softmax_every_n=3, patch_size=(1, 2, 2), plucker_stride=1)


def _off_init(cfg, seed: int) -> SanaWM:
    """A SanaWM with every parameter moved off its init (the zero-init camera and Plücker paths too)."""
    return off_init(lambda: SanaWM(cfg), seed)


@pytest.fixture(scope="module")
def old() -> SanaWM:
    return _off_init(_old_cfg(), 0)


def _inputs(cfg):
    g = torch.Generator().manual_seed(1)
    rot, _ = torch.linalg.qr(torch.randn(B, T, 3, 3, generator=g))
    c2w = torch.eye(4).repeat(B, T, 1, 1)
    c2w[..., :3, :3] = rot * torch.linalg.det(rot).sign()[..., None, None]
    c2w[..., :3, 3] = torch.randn(B, T, 3, generator=g)
    cams = torch.cat([c2w.reshape(B, T, 16), torch.tensor([5.0, 4.5, 1.2, 0.7]).expand(B, T, 4)], -1)
    return dict(hidden_states=torch.randn(B, cfg.in_channels, T, H, W, generator=g),
                timestep=torch.rand(B, T, generator=g) * 1000,
                encoder_hidden_states=torch.randn(B, 5, cfg.caption_channels, generator=g),
                camera_conditions=cams,
                chunk_plucker=torch.randn(B, cfg.plucker_channels, T, H, W, generator=g))


@torch.no_grad()
@pytest.mark.parametrize("chunk_size", [None, 1])
def test_appended_blocks_are_the_identity(old, chunk_size):
    new_cfg = dataclasses.replace(old.cfg, num_layers=7)  # blocks 3..6 new (5 softmax)
    new = SanaWM(new_cfg).eval()
    new.load_state_dict(grow_state_dict(old.state_dict(), old.cfg, new_cfg))
    x = _inputs(old.cfg)
    ref = old(**x, chunk_size=chunk_size)
    out = new(**x, chunk_size=chunk_size)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the new blocks are not inert: their zero projections get gradients
    new.train()
    with torch.enable_grad():
        new(**x, chunk_size=chunk_size).square().mean().backward()
    assert new.blocks[4].attn.proj.weight.grad.abs().sum() > 0
    assert new.blocks[4].ffn.glu.pointwise.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_refined_patch_embeds_a_constant_patch_as_before(old):
    new_cfg = dataclasses.replace(old.cfg, patch_size=(1, 1, 1))
    new = SanaWM(new_cfg).eval()
    new.load_state_dict(grow_state_dict(old.state_dict(), old.cfg, new_cfg))
    coarse = torch.randn(B, old.cfg.in_channels, T, H // 2, W // 2)
    z = coarse.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)  # (B, C, T, H, W), 2x2-constant
    old_tok = old.patch_embed(z)  # (B, D, T, H/2, W/2)
    new_tok = new.patch_embed(z)  # (B, D, T, H, W)
    torch.testing.assert_close(new_tok[..., ::2, ::2], old_tok, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_tok[..., 1::2, 1::2], old_tok, rtol=1e-5, atol=1e-5)
    # through the unpatchify: a token repeated over its 2x2 latent pixels predicts, at each of them, the
    # mean of the old head's 2x2 predictions of that token (a wrong row order of the head would not)
    x = _inputs(old.cfg)
    inp_old, inp_new = old.prepare_inputs(**x), new.prepare_inputs(**x)
    tok = inp_old.x  # (B, T·h·w, D) on the coarse grid
    D = tok.shape[-1]
    fine = tok.view(B, T, H // 2, W // 2, D).repeat_interleave(2, 2).repeat_interleave(2, 3)  # (B, T, H, W, D)
    out_old = old.output_head(tok, inp_old)  # (B, C, T, H, W)
    out_new = new.output_head(fine.reshape(B, T * H * W, D), inp_new)  # (B, C, T, H, W)
    pooled = torch.nn.functional.avg_pool3d(out_old, (1, 2, 2))  # (B, C, T, H/2, W/2)
    torch.testing.assert_close(out_new[..., ::2, ::2], pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_new[..., 1::2, ::2], pooled, rtol=1e-5, atol=1e-5)
    out = new(**_inputs(old.cfg), chunk_size=1)  # the whole model runs at the finer grid
    assert out.shape == (B, old.cfg.in_channels, T, H, W) and torch.isfinite(out).all()


def test_configs_that_cannot_grow_raise(old):
    sd = old.state_dict()
    with pytest.raises(ValueError, match="differ too"):
        grow_state_dict(sd, old.cfg, dataclasses.replace(old.cfg, dim=128, head_dim=32))
    with pytest.raises(ValueError, match="only grow"):
        grow_state_dict(sd, old.cfg, dataclasses.replace(old.cfg, num_layers=2))
    with pytest.raises(ValueError, match="softmax_every_n"):
        grow_state_dict(sd, old.cfg, dataclasses.replace(old.cfg, num_layers=6, softmax_every_n=2))
    with pytest.raises(ValueError, match="patch_size"):
        grow_state_dict(sd, old.cfg, dataclasses.replace(old.cfg, patch_size=(1, 4, 4)))


def test_folder_and_cli(old, tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({"_class_name": "SanaWM", "config": dataclasses.asdict(old.cfg)}))
    new_cfg = dataclasses.replace(old.cfg, num_layers=5)
    dst = grow_folder(src, tmp_path / "dst", new_cfg)
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["config"]["num_layers"] == 5
    from sana_world.generators.zoo import load_state_dict

    SanaWM(new_cfg).load_state_dict(load_state_dict(dst))  # strict: every key, every shape
    with pytest.raises(ValueError, match="not a SanaWM"):
        (src / "config.json").write_text(json.dumps({"_class_name": "SanaDiT", "config": {}}))
        grow_folder(src, tmp_path / "bad", new_cfg)


@torch.no_grad()
def test_cli_grows_rooms_weights_into_both_presets(tmp_path):
    """A rooms-shaped (patch 2, 6 blocks) weights folder grows through the CLI into rooms_l12 (the same
    outputs) and rooms_p1 (loads strictly); a source already of the preset's shape is copied unchanged."""
    from safetensors.torch import save_file

    from sana_world.generators.zoo import load_state_dict
    from sana_world.world_model import PRESETS

    cfg = dataclasses.replace(PRESETS["rooms"](), in_channels=4, caption_channels=16)
    src_model = _off_init(cfg, 2)
    src = tmp_path / "src"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in src_model.state_dict().items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({"_class_name": "SanaWM", "config": dataclasses.asdict(cfg)}))
    x = _inputs(cfg)
    for preset in ("rooms_l12", "rooms_p1"):
        main([str(src), str(tmp_path / preset), "--preset", preset])
        new_cfg = dataclasses.replace(PRESETS[preset](), in_channels=4, caption_channels=16)
        model = SanaWM(new_cfg).eval()
        model.load_state_dict(load_state_dict(tmp_path / preset))  # strict: every key, every shape
        if preset == "rooms_l12":
            torch.testing.assert_close(model(**x, chunk_size=1), src_model(**x, chunk_size=1), rtol=1e-5, atol=1e-5)
    main([str(tmp_path / "rooms_p1"), str(tmp_path / "again"), "--preset", "rooms_p1"])
    a, b = load_state_dict(tmp_path / "rooms_p1"), load_state_dict(tmp_path / "again")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileExistsError, match="not empty"):
        main([str(src), str(tmp_path / "again"), "--preset", "rooms_p1"])
