"""SanaDiT against diffusers' SanaTransformer2DModel: forward parity, weight round trips, loading."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sana_world.generators.image import (
    PRESETS,
    SanaDiT,
    config_from_diffusers,
    from_diffusers,
    param_count,
    tiny,
    to_diffusers,
)
from sana_world.generators.image import interop

diffusers = pytest.importorskip("diffusers")
SanaTransformer2DModel = diffusers.SanaTransformer2DModel

TOL = 1e-5
# Tiny diffusers configs: width 64 = 2 heads × 32, cross 2 heads × 24, 2 blocks.
BASE = dict(
    in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=32, num_layers=2,
    num_cross_attention_heads=2, cross_attention_head_dim=24, cross_attention_dim=64, caption_channels=32,
    sample_size=8,
)  # fmt: skip
CONFIGS = {
    "plain": {},
    "qk_cross_norm": dict(qk_norm="rms_norm_across_heads"),
    "guidance": dict(guidance_embeds=True),
    "sprint_like": dict(qk_norm="rms_norm_across_heads", guidance_embeds=True),
    "patch2_pe_bias": dict(
        patch_size=2, interpolation_scale=1.0, attention_bias=True, out_channels=8, norm_eps=1e-5,
        mlp_ratio=2.0,
    ),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def make_diffusers(name: str, seed: int = 0) -> SanaTransformer2DModel:
    """Random diffusers model with every parameter moved off its init (norm weights away from 1)."""
    torch.manual_seed(seed)
    model = SanaTransformer2DModel(**{**BASE, **CONFIGS[name]}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def make_inputs(dm: SanaTransformer2DModel, seed: int = 1) -> dict[str, torch.Tensor | None]:
    """Batch 2, non-square 6×10 latents, captions of 7 tokens with 7 and 3 valid, fractional t."""
    g = torch.Generator().manual_seed(seed)
    guidance = torch.tensor([0.45, 0.3]) if dm.config.guidance_embeds else None
    return dict(
        x=torch.randn(2, 4, 6, 10, generator=g),
        timestep=torch.tensor([500.7, 20.25]),
        encoder_hidden_states=torch.randn(2, 7, 32, generator=g),
        encoder_attention_mask=torch.tensor([[1] * 7, [1] * 3 + [0] * 4]),
        guidance=guidance,
    )


@torch.no_grad()
def run_diffusers(dm: SanaTransformer2DModel, inp: dict) -> torch.Tensor:
    return dm(
        inp["x"], inp["encoder_hidden_states"], inp["timestep"], guidance=inp["guidance"],
        encoder_attention_mask=inp["encoder_attention_mask"], return_dict=False,
    )[0]  # fmt: skip


@torch.no_grad()
def run_ours(model: SanaDiT, inp: dict) -> torch.Tensor:
    return model(**inp)


def parity_error(model: SanaDiT, dm: SanaTransformer2DModel) -> float:
    inp = make_inputs(dm)
    return rel_err(run_ours(model.eval(), inp), run_diffusers(dm, inp))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_diffusers(name):
    dm = make_diffusers(name)
    model = from_diffusers(dm)
    inp = make_inputs(dm)
    ref = run_diffusers(dm, inp)
    out = run_ours(model.eval(), inp)
    assert out.shape == ref.shape == (2, dm.config.out_channels, 6, 10)
    assert torch.isfinite(ref).all() and ref.norm() > 0
    assert rel_err(out, ref) < TOL


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_reproduces_state_dict_exactly(name):
    dm = make_diffusers(name)
    back = to_diffusers(from_diffusers(dm)).state_dict()
    ref = dm.state_dict()
    assert back.keys() == ref.keys()
    for key, value in ref.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(to_diffusers(from_diffusers(dm)).config) == public(dm.config)


def test_to_diffusers_forward_matches_ours_with_position_table():
    """At the base grid diffusers uses the cached (non-persistent) sin-cos table that to_diffusers sets."""
    torch.manual_seed(0)
    cfg = config_from_diffusers({**BASE, **CONFIGS["patch2_pe_bias"]})
    model = SanaDiT(cfg).eval()
    dm = to_diffusers(model)
    for size in ((8, 8), (6, 10)):
        inp = dict(make_inputs(dm), x=torch.randn(2, 4, *size))
        assert rel_err(run_ours(model, inp), run_diffusers(dm, inp)) < TOL


def test_from_diffusers_copies_and_casts():
    dm = make_diffusers("plain")
    model = from_diffusers(dm)
    with torch.no_grad():
        model.final.proj.weight.zero_()
    assert dm.proj_out.weight.abs().sum() > 0  # weights were copied, not shared
    half = from_diffusers(dm, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert not any(t.is_meta for t in [*half.parameters(), *half.buffers()])


@pytest.mark.parametrize("layout", ["single", "sharded", "pipeline_root"])
def test_load_from_saved_directory(tmp_path, layout):
    dm = make_diffusers("sprint_like")
    if layout == "single":
        dm.save_pretrained(tmp_path)
    elif layout == "sharded":
        dm.save_pretrained(tmp_path, max_shard_size="100KB")
        assert len(list(tmp_path.glob("*.safetensors"))) > 1
        assert len(list(tmp_path.glob("*.safetensors.index.json"))) == 1
    else:
        dm.save_pretrained(tmp_path / "transformer")
    model = from_diffusers(tmp_path)
    inp = make_inputs(dm)
    assert torch.equal(run_ours(model.eval(), inp), run_ours(from_diffusers(dm).eval(), inp))
    assert rel_err(run_ours(model, inp), run_diffusers(dm, inp)) < TOL


def test_timestep_truncation():
    dm = make_diffusers("plain")
    inp = make_inputs(dm)
    at = {t: dict(inp, timestep=torch.tensor([t, t])) for t in (500.7, 500.0)}
    # 1. diffusers' image model embeds fractional t as given, so the converted default matches it.
    assert rel_err(run_diffusers(dm, at[500.7]), run_diffusers(dm, at[500.0])) > 1e-4
    exact = from_diffusers(dm)
    assert not exact.cfg.truncate_timesteps
    assert rel_err(run_ours(exact.eval(), at[500.7]), run_diffusers(dm, at[500.7])) < TOL
    # 2. NVlabs behaviour: t.long() before the sinusoid, so 500.7 acts exactly like 500.
    trunc = from_diffusers(dm, truncate_timesteps=True).eval()
    assert torch.equal(run_ours(trunc, at[500.7]), run_ours(trunc, at[500.0]))
    assert rel_err(run_ours(trunc, at[500.7]), run_diffusers(dm, at[500.0])) < TOL
    assert rel_err(run_ours(trunc, at[500.7]), run_ours(exact, at[500.7])) > 1e-4
    # 3. Presets truncate except the Sprint ones (they feed t in [0, 1]).
    assert {name: f().truncate_timesteps for name, f in PRESETS.items()} == {
        name: not name.startswith("sprint") for name in PRESETS
    }


def _swap_pair(pairs, a: str, b: str):
    """Swap the diffusers-side names of the first two entries whose names end with a and b."""
    pairs = list(pairs)
    i = next(n for n, p in enumerate(pairs) if p[1].endswith(a))
    j = next(n for n, p in enumerate(pairs) if p[1].endswith(b))
    pairs[i], pairs[j] = (pairs[i][0], pairs[j][1]), (pairs[j][0], pairs[i][1])
    return pairs


BROKEN_MAPPINGS = {
    # (Swapping a q-norm weight with its k-norm partner is a true symmetry of q·k, so not a test case.)
    "qk_norm_across_blocks": ("_renames", lambda pairs: _swap_pair(pairs, "0.attn1.norm_q.weight",
                                                                   "1.attn1.norm_q.weight")),
    "cross_norm_across_blocks": ("_renames", lambda pairs: _swap_pair(pairs, "0.attn2.norm_k.weight",
                                                                      "1.attn2.norm_k.weight")),
    "block_tables_swapped": ("_renames", lambda pairs: _swap_pair(pairs, "0.scale_shift_table",
                                                                  "1.scale_shift_table")),
    "t_vs_guidance_mlp": ("_renames", lambda pairs: _swap_pair(pairs, "timestep_embedder.linear_2.weight",
                                                               "guidance_embedder.linear_2.weight")),
    "k_vs_v": ("_fused", lambda groups: [(o, [p[0], p[2], p[1]]) if len(p) == 3 else (o, p)
                                         for o, p in groups]),
    "cross_k_vs_v": ("_fused", lambda groups: [(o, p[::-1]) if len(p) == 2 else (o, p) for o, p in groups]),
}  # fmt: skip


@pytest.mark.parametrize("broken", list(BROKEN_MAPPINGS))
def test_parity_check_catches_broken_mapping(monkeypatch, broken):
    dm = make_diffusers("sprint_like")
    assert parity_error(from_diffusers(dm), dm) < TOL
    attr, corrupt = BROKEN_MAPPINGS[broken]
    original = getattr(interop, attr)
    monkeypatch.setattr(interop, attr, lambda cfg: corrupt(original(cfg)))
    assert parity_error(from_diffusers(dm), dm) > 1e-3


@pytest.mark.parametrize(
    "key, value",
    [
        ("qk_norm", "rms_norm"),
        ("dropout", 0.1),
        ("norm_elementwise_affine", True),
        ("cross_attention_dim", 48),
        ("num_cross_attention_heads", None),
        ("use_linear_projection", True),
    ],
)
def test_unsupported_diffusers_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        config_from_diffusers({**BASE, key: value})


def test_unsupported_conversions_to_diffusers():
    with pytest.raises(ValueError, match="truncate_timesteps"):
        to_diffusers(SanaDiT(tiny()))
    odd = dataclasses.replace(tiny(), truncate_timesteps=False, qk_norm=True, cross_norm=False)
    with pytest.raises(ValueError, match="cross_norm"):
        to_diffusers(SanaDiT(odd))
    converted = to_diffusers(SanaDiT(tiny()), drop_timestep_truncation=True)
    assert converted.config.num_layers == 2
    with pytest.raises(TypeError, match="SanaTransformer2DModel"):
        from_diffusers(torch.nn.Linear(2, 2))


def test_guidance_argument_is_checked():
    dm = make_diffusers("guidance")
    model = from_diffusers(dm)
    inp = make_inputs(dm)
    with pytest.raises(ValueError, match="guidance"):
        model(**dict(inp, guidance=None))
    plain = from_diffusers(make_diffusers("plain"))
    with pytest.raises(ValueError, match="guidance_embeds=False"):
        plain(**inp)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = SanaDiT(tiny())
    inp = make_inputs(make_diffusers("plain"))
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(**inp).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-7)


def test_full_model_traces_without_graph_breaks():
    torch._dynamo.reset()
    model = from_diffusers(make_diffusers("sprint_like")).eval()
    inp = make_inputs(make_diffusers("sprint_like"))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(**inp), model(**inp), atol=1e-6)


def test_preset_parameter_counts():
    counts = {name: param_count(f()) for name, f in PRESETS.items()}
    assert 25e6 < counts["small"] < 35e6
    assert 0.55e9 < counts["sana_600m"] < 0.65e9
    assert 1.55e9 < counts["sana_1600m"] < 1.65e9
    assert 4.6e9 < counts["sana_4800m"] < 4.9e9
    assert counts["sprint_1600m"] > counts["sana_1600m"]  # + guidance MLP and qk norms
