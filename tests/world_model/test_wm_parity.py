"""SanaWM against diffusers' SanaWMTransformer3DModel (bidirectional form), plus the GDN scans and the
UCPE transforms against naive references and diffusers' helpers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sana_world.nn.gdn import (
    GDNState,
    bidirectional_gdn,
    bidirectional_short_conv,
    gdn_backward_scan,
    gdn_forward_scan,
)
from sana_world.nn.rope import axial_rope_tables
from sana_world.world_model import (
    PRESETS,
    SanaWM,
    SanaWMConfig,
    from_diffusers,
    image_conditioned_timesteps,
    param_count,
    tiny,
    to_diffusers,
)
from sana_world.world_model import interop
from sana_world.world_model.ucpe import (
    apply_ucpe,
    cam_rope_tables,
    camera_ray_matrices,
    downscale_to_reference_rms,
    invert_se3,
)

diffusers = pytest.importorskip("diffusers")
wm = pytest.importorskip("diffusers.models.transformers.transformer_sana_wm")
SanaWMTransformer3DModel = diffusers.SanaWMTransformer3DModel

TOL = 1e-4
# Tiny diffusers configs: width 64 = 4 GDN heads × 16, 2 cross heads, 4 blocks, Plücker stride 2.
BASE = dict(
    in_channels=4, num_layers=4, hidden_size=64, num_attention_heads=2, linear_head_dim=16,
    caption_channels=16, mlp_ratio=2.0, chunk_plucker_channels=12, chunk_plucker_post_attn_blocks=4,
)  # fmt: skip
CONFIGS = {
    "softmax_every_2": dict(softmax_every_n=2),
    "softmax_every_4": dict(softmax_every_n=4, chunk_plucker_post_attn_blocks=2),
    # 2 heads × 24 (softmax camera scale from the padded size 128), 2×2 patches, no q/k/y norms.
    "patch2_no_norms": dict(
        hidden_size=48, linear_head_dim=24, patch_size=(1, 2, 2), softmax_every_n=2, qk_norm=False,
        cross_norm=False, y_norm=False, t_kernel_size=5, conv_kernel_size=3,
    ),
}  # fmt: skip


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def make_diffusers(name: str, seed: int = 0) -> SanaWMTransformer3DModel:
    """Random diffusers model with every parameter moved off its init (zero inits; unit norm weights
    get a larger nudge so that swapping two of them is visible)."""
    torch.manual_seed(seed)
    model = SanaWMTransformer3DModel(**{**BASE, **CONFIGS[name]}).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            p.add_((0.3 if "norm" in key else 0.05) * torch.randn_like(p))
    return model


def random_poses(batch: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """(B, T, 4, 4) random rigid camera-to-world poses."""
    rot, _ = torch.linalg.qr(torch.randn(batch, frames, 3, 3, generator=g))
    rot = rot * torch.linalg.det(rot).sign()[..., None, None]
    c2w = torch.eye(4).repeat(batch, frames, 1, 1)
    c2w[..., :3, :3] = rot
    c2w[..., :3, 3] = torch.randn(batch, frames, 3, generator=g)
    return c2w


def make_inputs(dm: SanaWMTransformer3DModel, frames: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Batch 2, non-square 4×6 latents, captions of 7 tokens with 7 and 3 valid, fractional per-frame t."""
    g = torch.Generator().manual_seed(seed)
    B, H, W = 2, 4, 6
    intrinsics = torch.tensor([5.0, 4.5, 2.7, 1.6]).expand(B, frames, 4)
    return dict(
        hidden_states=torch.randn(B, dm.config.in_channels, frames, H, W, generator=g),
        timestep=torch.rand(B, frames, generator=g) * 1000,
        encoder_hidden_states=torch.randn(B, 7, dm.config.caption_channels, generator=g),
        encoder_attention_mask=torch.tensor([[1] * 7, [1] * 3 + [0] * 4]),
        camera_conditions=torch.cat([random_poses(B, frames, g).reshape(B, frames, 16), intrinsics], -1),
        chunk_plucker=torch.randn(B, dm.config.chunk_plucker_channels, frames, H, W, generator=g),
    )


@pytest.fixture
def fp32_softmax(monkeypatch):
    """Keep diffusers' softmax attention in fp32 (it casts fp32 q, k, v to bf16 before SDPA)."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *args, **kwargs: self)


@torch.no_grad()
def run_diffusers(dm: SanaWMTransformer3DModel, inp: dict) -> torch.Tensor:
    inp = dict(inp, timestep=inp["timestep"][:, None])  # diffusers takes (B, 1, T)
    return dm(**inp, return_dict=False)[0]


@torch.no_grad()
def run_ours(model: SanaWM, inp: dict) -> torch.Tensor:
    return model.eval()(**inp)


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_diffusers(fp32_softmax, name, frames):
    dm = make_diffusers(name)
    inp = make_inputs(dm, frames)
    ref = run_diffusers(dm, inp)
    out = run_ours(from_diffusers(dm), inp)
    assert out.shape == ref.shape == inp["hidden_states"].shape
    assert torch.isfinite(ref).all() and ref.norm() > 0
    assert rel_err(out, ref) < TOL


def test_compiled_blocks_match_diffusers(fp32_softmax):
    """SanaWM.compile_blocks (regional compile; traced with the eager backend here) keeps the parity."""
    dm = make_diffusers("softmax_every_2")
    inp = make_inputs(dm, 5)
    ref = run_diffusers(dm, inp)
    model = from_diffusers(dm)
    assert model.compile_blocks(backend="eager", dynamic=False) is model
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in model.blocks)
    assert rel_err(run_ours(model, inp), ref) < TOL


def test_gdn_backend_switch(fp32_softmax):
    """SanaWM.set_gdn_backend reaches every GDN layer and back; a bad name raises before changing anything."""
    from sana_world.world_model.attention import GDNCameraAttention

    dm = make_diffusers("softmax_every_2")
    inp = make_inputs(dm, 3)
    model = from_diffusers(dm)
    ref = run_ours(model, inp)
    gdn = [m for m in model.modules() if isinstance(m, GDNCameraAttention)]
    assert gdn and all(m.cfg.gdn_backend == "torch" for m in gdn)
    with pytest.raises(ValueError, match="backend"):
        model.set_gdn_backend("cuda")
    assert model.set_gdn_backend("triton") is model and all(m.cfg.gdn_backend == "triton" for m in gdn)
    model.set_gdn_backend("torch")
    assert torch.equal(run_ours(model, inp), ref)


@pytest.mark.gpu
def test_triton_gdn_backend_matches_diffusers_on_cuda(fp32_softmax):
    """The whole model with the fused Triton GDN scans (fp32) against diffusers, forward and backward."""
    pytest.importorskip("triton")
    dm = make_diffusers("softmax_every_2")
    inp = {k: v.cuda() for k, v in make_inputs(dm, 5).items()}
    ref = run_diffusers(dm.cuda(), inp)
    model = from_diffusers(dm).cuda().set_gdn_backend("triton")
    assert rel_err(run_ours(model, inp), ref) < TOL
    grads = {}
    for backend in ("torch", "triton"):  # the backward of the kernels against the torch scans' autograd
        model.set_gdn_backend(backend).zero_grad()
        model.train()(**inp).square().mean().backward()
        grads[backend] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert rel_err(grads["triton"], grads["torch"]) < 1e-3


@pytest.mark.parametrize("drop", ["camera_conditions", "chunk_plucker", "encoder_attention_mask"])
def test_optional_inputs_match_diffusers(fp32_softmax, drop):
    dm = make_diffusers("softmax_every_2")
    inp = make_inputs(dm, 3)
    if drop == "encoder_attention_mask":  # diffusers requires a mask: all ones is the same as none
        ours = dict(inp, encoder_attention_mask=None)
        inp = dict(inp, encoder_attention_mask=torch.ones(2, 7, dtype=torch.long))
    else:
        inp = ours = {k: v for k, v in inp.items() if k != drop}
    assert rel_err(run_ours(from_diffusers(dm), ours), run_diffusers(dm, inp)) < TOL


def test_bf16_softmax_reproduces_diffusers_numerics():
    """Unpatched diffusers runs SDPA in bf16; `softmax_in_bf16=True` does the same."""
    dm = make_diffusers("softmax_every_2")
    inp = make_inputs(dm, 3)
    model = from_diffusers(dm)
    bf16 = SanaWM(dataclasses.replace(model.cfg, softmax_in_bf16=True))
    bf16.load_state_dict(model.state_dict())
    ref = run_diffusers(dm, inp)
    assert rel_err(run_ours(bf16, inp), ref) < 1e-3
    assert rel_err(run_ours(bf16, inp), run_ours(model, inp)) > 1e-6  # the flag does change numerics


def test_timestep_truncation_and_shapes():
    dm = make_diffusers("softmax_every_4")
    model = from_diffusers(dm)
    inp = make_inputs(dm, 2)
    at = lambda t: run_ours(model, dict(inp, timestep=t))  # noqa: E731
    # 1. t.long() before the sinusoid: 500.7 acts exactly like 500, 501 does not.
    assert torch.equal(at(torch.tensor([500.7, 20.2])), at(torch.tensor([500.0, 20.0])))
    assert rel_err(at(torch.tensor([501.0, 20.0])), at(torch.tensor([500.0, 20.0]))) > 1e-5
    # 2. (B,), (B, T) and (B, 1, T) describe the same per-frame timesteps.
    t = torch.tensor([300.0, 40.0])
    same = at(t)
    assert torch.equal(same, at(t[:, None].expand(2, 2)))
    assert torch.equal(same, at(t[:, None, None].expand(2, 1, 2)))
    with pytest.raises(ValueError, match="broadcast"):
        at(torch.zeros(2, 3))


def test_image_conditioned_timesteps():
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    assert image_conditioned_timesteps(torch.tensor([700.0]), mask).tolist() == [[0.0, 700.0, 700.0]]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_reproduces_state_dict_exactly(name):
    dm = make_diffusers(name)
    back = to_diffusers(from_diffusers(dm))
    ref, got = dm.state_dict(), back.state_dict()
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(back.config) == public(dm.config)


def test_to_diffusers_forward_matches_fresh_model(fp32_softmax):
    torch.manual_seed(0)
    model = SanaWM(tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    dm = to_diffusers(model)
    inp = make_inputs(dm, 2)
    assert rel_err(run_ours(model, inp), run_diffusers(dm, inp)) < TOL


def test_load_from_saved_directory(tmp_path):
    dm = make_diffusers("softmax_every_4")
    dm.save_pretrained(tmp_path / "transformer")
    inp = make_inputs(dm, 2)
    assert torch.equal(run_ours(from_diffusers(tmp_path), inp), run_ours(from_diffusers(dm), inp))


def test_unsupported_config_keys_raise():
    config = dict(make_diffusers("softmax_every_2").config)
    with pytest.raises(ValueError, match="cam_attn_compress"):
        interop.config_from_diffusers({**config, "cam_attn_compress": 2})
    with pytest.raises(ValueError, match="use_chunk_plucker_post_attn"):
        interop.config_from_diffusers({**config, "use_chunk_plucker_post_attn": False})
    with pytest.raises(ValueError, match="brand_new_key"):
        interop.config_from_diffusers({**config, "brand_new_key": 1})


def _swap(pairs, a: str, b: str):
    """Swap the diffusers-side names of the entries whose diffusers names are a and b."""
    pairs = list(pairs)
    i = next(n for n, p in enumerate(pairs) if p[1] == a)
    j = next(n for n, p in enumerate(pairs) if p[1] == b)
    pairs[i], pairs[j] = (pairs[i][0], pairs[j][1]), (pairs[j][0], pairs[i][1])
    return pairs


BROKEN = {
    "conv_k_vs_cam": ("blocks.0.attn.conv_k.weight", "blocks.0.attn.conv_k_cam.weight"),
    "q_norm_vs_cam": ("blocks.0.attn.q_norm.weight", "blocks.0.attn.q_norm_cam.weight"),
    "beta_vs_gate": ("blocks.0.attn.beta_proj.weight", "blocks.0.attn.gate_proj.weight"),
    "cam_q_vs_k": ("blocks.0.attn.q_proj_cam.weight", "blocks.0.attn.k_proj_cam.weight"),
    "softmax_cam_k_vs_v": ("blocks.1.attn.k_proj_cam.weight", "blocks.1.attn.v_proj_cam.weight"),
    "A_log_across_blocks": ("blocks.0.attn.A_log", "blocks.2.attn.A_log"),
    "plucker_proj_across_blocks": ("blocks.0.plucker_proj.weight", "blocks.1.plucker_proj.weight"),
    "tables_across_blocks": ("blocks.0.scale_shift_table", "blocks.3.scale_shift_table"),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_parity_check_catches_broken_mapping(fp32_softmax, monkeypatch, broken):
    dm = make_diffusers("softmax_every_2")
    inp = make_inputs(dm, 3)
    ref = run_diffusers(dm, inp)
    assert rel_err(run_ours(from_diffusers(dm), inp), ref) < TOL
    renames = interop._renames
    monkeypatch.setattr(interop, "_renames", lambda cfg: _swap(renames(cfg), *BROKEN[broken]))
    assert rel_err(run_ours(from_diffusers(dm), inp), ref) > 10 * TOL


def test_param_counts_match_diffusers_on_meta():
    counts = {name: param_count(f()) for name, f in PRESETS.items()}
    for name, f in PRESETS.items():
        with torch.device("meta"):
            dm = SanaWMTransformer3DModel(**interop.config_to_diffusers(f()))
        assert counts[name] == sum(p.numel() for p in dm.parameters()), name
    assert 25e6 < counts["small"] < 35e6
    assert 2.6e9 < counts["sana_wm_2600m"] < 2.7e9
    assert SanaWMConfig() == PRESETS["sana_wm_2600m"]()


def test_fresh_model_ignores_camera_until_trained():
    """Zero-initialised Plücker embedder and camera output projections: the camera starts silent."""
    torch.manual_seed(0)
    model = SanaWM(tiny())
    inp = make_inputs(to_diffusers(model), 2)
    bare = {k: v for k, v in inp.items() if k not in ("camera_conditions", "chunk_plucker")}
    assert torch.equal(run_ours(model, inp), run_ours(model, bare))


# ---------------------------------------------------------------------------------------------------
# GDN pieces against naive references
# ---------------------------------------------------------------------------------------------------


def naive_gdn(q, k, v, beta, decay, q_rot, k_rot, eps):
    """Per-frame loops of the recurrence, with explicit per-token sums; (B, H, T, S, D) layout."""
    B, H, T, S, D = q.shape
    eye = torch.eye(D, dtype=torch.float64)

    def state(frames):  # S and z after applying `frames` in order
        s_kv, z = torch.zeros(B, H, D, D, dtype=torch.float64), torch.zeros(B, H, D, dtype=torch.float64)
        for t in frames:
            a_rot, a, u_kv = (torch.zeros(B, H, D, D, dtype=torch.float64) for _ in range(3))
            u_z = torch.zeros(B, H, D, dtype=torch.float64)
            for s in range(S):
                b = beta[:, :, t, s, None, None]
                a_rot = a_rot + b * k_rot[:, :, t, s, :, None] * k_rot[:, :, t, s, None, :]
                a = a + b * k[:, :, t, s, :, None] * k[:, :, t, s, None, :]
                u_kv = u_kv + b * v[:, :, t, s, :, None] * k_rot[:, :, t, s, None, :]
                u_z = u_z + beta[:, :, t, s, None] * k[:, :, t, s]
            g = decay[:, :, t, None, None]
            s_kv = s_kv @ (g * (eye - a_rot)) + u_kv
            z = torch.einsum("bhij,bhj->bhi", g * (eye - a), z) + u_z
        return s_kv, z

    out = torch.zeros(B, H, T, S, D, dtype=torch.float64)
    for t in range(T):
        (kv_f, z_f), (kv_b, z_b) = state(range(t + 1)), state(range(T - 1, t, -1))
        num = torch.einsum("bhij,bhsj->bhsi", kv_f + kv_b, q_rot[:, :, t])
        den = torch.einsum("bhj,bhsj->bhs", z_f + z_b, q[:, :, t])
        out[:, :, t] = num / (den + eps)[..., None]
    return out


def random_gdn_inputs(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, H, S, D = 2, 2, 3, 8
    q, k = (torch.rand(B, H, T, S, D, generator=g) for _ in range(2))
    k = k * (D * S) ** -0.5
    v, q_rot, k_rot = (torch.randn(B, H, T, S, D, generator=g) for _ in range(3))
    k_rot = k_rot * (D * S) ** -0.5
    beta, decay = torch.rand(B, H, T, S, generator=g), 0.5 + 0.5 * torch.rand(B, H, T, generator=g)
    return q, k, v, beta, decay, q_rot, k_rot


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_bidirectional_gdn_matches_naive_loop(frames):
    q, k, v, beta, decay, q_rot, k_rot = random_gdn_inputs(frames)
    out = bidirectional_gdn(q, k, v, beta, decay, q_rot=q_rot, k_rot=k_rot, eps=1e-8)
    ref = naive_gdn(*(t.double() for t in (q, k, v, beta, decay, q_rot, k_rot)), 1e-8)
    assert out.dtype == torch.float32 and rel_err(out, ref) < 1e-5


def test_forward_scan_resumes_from_state_and_matches_diffusers():
    q, k, v, beta, decay, q_rot, k_rot = random_gdn_inputs(5)
    kw = dict(q_rot=q_rot, k_rot=k_rot)
    num, den, final = gdn_forward_scan(q, k, v, beta, decay, **kw)
    # 1. Two chunks chained through the state give the same as one scan.
    cut = lambda t, a, b: t[:, :, a:b]  # noqa: E731
    first = gdn_forward_scan(*(cut(t, 0, 2) for t in (q, k, v, beta, decay)), q_rot=cut(q_rot, 0, 2),
                             k_rot=cut(k_rot, 0, 2))  # fmt: skip
    second = gdn_forward_scan(*(cut(t, 2, 5) for t in (q, k, v, beta, decay)), q_rot=cut(q_rot, 2, 5),
                              k_rot=cut(k_rot, 2, 5), initial_state=first[2])  # fmt: skip
    assert isinstance(final, GDNState)
    assert torch.allclose(torch.cat([first[0], second[0]], 2), num, atol=1e-6)
    assert torch.allclose(torch.cat([first[1], second[1]], 2), den, atol=1e-6)
    assert torch.allclose(second[2].kv, final.kv, atol=1e-6)
    assert torch.allclose(second[2].z, final.z, atol=1e-6)
    # 2. diffusers' chunked scan, (B, H, D, N) layout.
    to_d = lambda t: t.permute(0, 1, 4, 2, 3).flatten(3)  # noqa: E731
    ref_num, ref_den = wm.torch_chunk_sana_gdn(
        to_d(q), to_d(k), to_d(v), to_d(q_rot), to_d(k_rot), beta, decay, chunk_size=2, return_components=True
    )
    assert rel_err(to_d(num), ref_num) < 1e-6 and rel_err(den.flatten(2)[:, :, None], ref_den) < 1e-6
    # 3. Numerator-only backward scan against diffusers' camera rule on flipped-shifted inputs.
    num_b, den_b = gdn_backward_scan(q, k, v, beta, decay, denominator=False)
    assert den_b is None
    flip = lambda t, fill: wm.flip_and_shift(t, dim=2, shift_val=fill)  # noqa: E731
    ref_b = wm.torch_chunk_cam_single_path_delta_rule(to_d(q.flip(2)), to_d(flip(k, 0.0)), to_d(flip(v, 0.0)),
                                                      flip(beta, 0.0), flip(decay, 1.0))  # fmt: skip
    assert rel_err(to_d(num_b.flip(2)), ref_b) < 1e-6


def test_short_conv_is_causal_plus_reverse_minus_centre():
    g = torch.Generator().manual_seed(0)
    B, T, S, C, K = 2, 5, 3, 4, 4
    x, w = torch.randn(B, T * S, C, generator=g), torch.randn(C, 1, K, generator=g)
    seq = x.view(B, T, S, C)

    def causal(s):  # y[t] = Σ_j w_j s[t − K + 1 + j]
        out = torch.zeros_like(s)
        for t in range(T):
            for j in range(K):
                if 0 <= t - K + 1 + j:
                    out[:, t] += w[:, 0, j] * s[:, t - K + 1 + j]
        return out

    ref = causal(seq) + causal(seq.flip(1)).flip(1) - w[:, 0, -1] * seq
    out = bidirectional_short_conv(x, w, T)
    assert torch.allclose(out, ref.reshape(B, T * S, C), atol=1e-5)
    conv = wm.SanaWMTemporalShortConvolution(C, K)
    with torch.no_grad():
        conv.weight.copy_(w)
    assert torch.allclose(out, conv(x, T), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# UCPE against diffusers' helpers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 2, 2)])
def test_ray_matrices_match_diffusers(patch):
    g = torch.Generator().manual_seed(0)
    B, T, h, w = 2, 3, 4, 6
    cc = torch.cat([random_poses(B, T, g).reshape(B, T, 16), torch.rand(B, T, 4, generator=g) * 6 + 1], -1)
    ours = camera_ray_matrices(cc, (T, h, w), patch)
    ref = wm._process_camera_conditions_ucpe(cc, B, (T, h, w), patch)[0].reshape(B, -1, 4, 4)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(invert_se3(ours), wm._invert_SE3(ref), atol=1e-6)
    assert torch.allclose(invert_se3(ours) @ ours, torch.eye(4).expand_as(ours), atol=1e-5)


@pytest.mark.parametrize("head_dim", [16, 24, 112])
def test_ucpe_transform_and_rope_slice_match_diffusers(head_dim):
    g = torch.Generator().manual_seed(0)
    grid, B, H = (2, 3, 4), 2, 2
    N = 24
    rope = wm.SanaWMRotaryPosEmbed(head_dim, (1, 1, 1), max_seq_len=1024)(grid)  # (1, 1, N, hd/2) complex
    bands = (head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))
    cos, sin = axial_rope_tables(bands, grid)
    assert torch.allclose(cos[:, ::2], rope[0, 0].real, atol=1e-6)
    cos_c, sin_c = cam_rope_tables(cos, sin, head_dim)
    rope_c = wm._slice_rope_for_cam(rope, head_dim, head_dim // 2)
    assert torch.allclose(cos_c[:, ::2], rope_c[0, 0].real, atol=1e-6)
    assert torch.allclose(sin_c[:, 1::2], rope_c[0, 0].imag, atol=1e-6)
    x = torch.randn(B, N, H, head_dim, generator=g)
    P = camera_ray_matrices(
        torch.cat([random_poses(B, 2, g).reshape(B, 2, 16), torch.full((B, 2, 4), 3.0)], -1), grid, (1, 1, 1)
    )
    for inverse in (False, True):
        ours = apply_ucpe(x, P, cos_c, sin_c, inverse_rope=inverse)
        ref = wm._apply_ucpe_transform(x.transpose(1, 2), P, rope_c, inverse_rope=inverse).transpose(1, 2)
        assert torch.allclose(ours, ref, atol=1e-5)
    # Decoding by P after encoding by P⁻¹ with inverse RoPE is the identity.
    encoded = apply_ucpe(x, invert_se3(P), cos_c, sin_c)
    assert torch.allclose(apply_ucpe(encoded, P, cos_c, sin_c, inverse_rope=True), x, atol=1e-4)
    big = 3 * x
    to_d = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731  (B, H, D, N)
    ref = wm._downscale_to_reference_rms(to_d(x), to_d(big)).permute(0, 3, 1, 2)
    assert torch.allclose(downscale_to_reference_rms(x, big), ref, atol=1e-6)
