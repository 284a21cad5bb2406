"""sana_world.nn blocks against naive references and the diffusers modules they mirror."""

from __future__ import annotations

import pytest
import torch

from sana_world.nn import (
    CaptionProjection,
    CaptionProjectionConfig,
    CrossAttention,
    CrossAttentionConfig,
    GLUMBConv,
    GLUMBConvConfig,
    LinearAttention,
    LinearAttentionConfig,
    PatchEmbed,
    PatchEmbedConfig,
    RMSNorm,
    Rope2DConfig,
    Rope3DConfig,
    RotaryEmbedding2D,
    RotaryEmbedding3D,
    TimestepEmbedding,
    apply_rotary,
    key_padding_bias,
    relu_linear_attention,
    rotary_relu_linear_attention,
    sincos_pos_embed_2d,
)

diffusers = pytest.importorskip("diffusers")
from diffusers.models.attention_processor import Attention, SanaLinearAttnProcessor2_0  # noqa: E402
from diffusers.models.embeddings import (  # noqa: E402
    PixArtAlphaTextProjection,
    TimestepEmbedding as DTimestepEmbedding,
    Timesteps,
    apply_rotary_emb,
    get_2d_rotary_pos_embed,
    get_2d_sincos_pos_embed,
)
from diffusers.models.normalization import RMSNorm as DRMSNorm  # noqa: E402
from diffusers.models.transformers.sana_transformer import GLUMBConv as DGLUMBConv  # noqa: E402
from diffusers.models.transformers.sana_transformer import SanaAttnProcessor2_0  # noqa: E402
from diffusers.models.transformers.transformer_sana_video import (  # noqa: E402
    SanaLinearAttnProcessor3_0,
    WanRotaryPosEmbed,
)

TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def perturb_(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its init (norm weights off 1) so a misplaced tensor shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def naive_linear_attention(q, k, v, eps):
    """O(N²) reference in float64: out_i = Σ_j v_j a_ij / (Σ_j a_ij + eps), a_ij = relu(q_i)·relu(k_j)."""
    q, k, v = (t.double() for t in (q, k, v))
    a = torch.relu(q) @ torch.relu(k).transpose(-1, -2)  # (B, H, N, N)
    return (a @ v) / (a.sum(-1, keepdim=True) + eps)


# ---------------------------------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------------------------------


def test_linear_attention_matches_naive_quadratic():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, generator=g) for _ in range(3))
    for eps in (1e-15, 1e-8, 0.5):
        out = relu_linear_attention(q, k, v, eps=eps)
        assert out.shape == (2, 3, 17, 8) and out.dtype == torch.float32
        assert rel_err(out, naive_linear_attention(q, k, v, eps)) < TOL
    # eps is actually used: a large eps shrinks the output.
    assert rel_err(relu_linear_attention(q, k, v, eps=0.5), relu_linear_attention(q, k, v)) > 1e-2


def test_linear_attention_accumulates_in_fp32():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 64, 32, generator=g).bfloat16() for _ in range(3))
    out = relu_linear_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    # Only the final cast rounds: the error is bf16's half-ulp, not an accumulated bf16 sum.
    assert rel_err(out, naive_linear_attention(q, k, v, 1e-15)) < 4e-3


def _diffusers_linear_attention(dim, heads, qk_norm):
    return Attention(
        query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, kv_heads=heads if qk_norm else None,
        qk_norm="rms_norm_across_heads" if qk_norm else None, processor=SanaLinearAttnProcessor2_0(),
    )  # fmt: skip


def _load_linear_attention(ours: LinearAttention, ref: Attention) -> None:
    with torch.no_grad():
        ours.qkv.weight.copy_(torch.cat([ref.to_q.weight, ref.to_k.weight, ref.to_v.weight]))
        ours.proj.load_state_dict(ref.to_out[0].state_dict())
        if ours.qk_norm is not None:
            ours.qk_norm.q.weight.copy_(ref.norm_q.weight)
            ours.qk_norm.k.weight.copy_(ref.norm_k.weight)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_linear_attention_module_matches_diffusers(qk_norm):
    torch.manual_seed(0)
    ref = _diffusers_linear_attention(64, 2, qk_norm)
    perturb_(ref)
    ours = LinearAttention(LinearAttentionConfig(64, head_dim=32, qk_norm=qk_norm))
    _load_linear_attention(ours, ref)
    x = torch.randn(2, 15, 64)
    assert rel_err(ours(x), ref(x)) < TOL


def test_rotary_linear_attention_matches_sana_video():
    torch.manual_seed(0)
    heads, head_dim, grid = 2, 24, (2, 3, 5)
    ref = Attention(
        query_dim=heads * head_dim, heads=heads, dim_head=head_dim, processor=SanaLinearAttnProcessor3_0()
    )
    x = torch.randn(2, 1, *grid)  # only the shape matters to the rope module
    cos_ref, sin_ref = WanRotaryPosEmbed(head_dim, (1, 1, 1), max_seq_len=16)(x)
    tokens = torch.randn(2, 30, heads * head_dim)
    expected = ref(tokens, rotary_emb=(cos_ref, sin_ref))
    # 1. Ours on the same projections.
    q, k, v = (proj(tokens).unflatten(-1, (heads, head_dim)) for proj in (ref.to_q, ref.to_k, ref.to_v))
    cos, sin = RotaryEmbedding3D(Rope3DConfig(head_dim))(grid)
    out = rotary_relu_linear_attention(q, k, v, cos, sin)  # (B, N, H, d)
    assert rel_err(ref.to_out[0](out.flatten(2)), expected) < TOL


# ---------------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head_dim", [32, 112])
def test_rope3d_tables_match_wan(head_dim):
    grid = (3, 5, 7)
    x = torch.zeros(1, 1, *grid)
    cos_ref, sin_ref = WanRotaryPosEmbed(head_dim, (1, 1, 1), max_seq_len=32)(x)  # (1, N, 1, d)
    cos, sin = RotaryEmbedding3D(Rope3DConfig(head_dim))(grid)  # (N, d)
    assert torch.equal(cos, cos_ref[0, :, 0]) and torch.equal(sin, sin_ref[0, :, 0])


def test_rope2d_tables_match_diffusers_2d_rope():
    H, W, head_dim = 4, 6, 16
    cos_ref, sin_ref = get_2d_rotary_pos_embed(head_dim, ((0, 0), (H, W)), (H, W), use_real=True)
    cos, sin = RotaryEmbedding2D(Rope2DConfig(head_dim))((H, W))
    # diffusers' helper puts the column band first; ours is [row | column].
    half = head_dim // 2
    assert torch.allclose(cos, torch.cat([cos_ref[:, half:], cos_ref[:, :half]], 1), atol=1e-6)
    assert torch.allclose(sin, torch.cat([sin_ref[:, half:], sin_ref[:, :half]], 1), atol=1e-6)


def test_apply_rotary_matches_diffusers_and_preserves_norm():
    torch.manual_seed(0)
    cos, sin = RotaryEmbedding3D(Rope3DConfig(32))((2, 3, 4))
    x = torch.randn(2, 24, 3, 32)  # (B, N, H, d)
    out = apply_rotary(x, cos, sin)
    ref = apply_rotary_emb(x, (cos, sin), use_real=True, use_real_unbind_dim=-1, sequence_dim=1)
    assert rel_err(out, ref) < 1e-6
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    # Relative property: <R_m q, R_n k> depends on m - n only (1-D check along the w band).
    q, k = torch.randn(32), torch.randn(32)
    qs, ks = q.expand(1, 24, 1, 32), k.expand(1, 24, 1, 32)
    dots = (apply_rotary(qs, cos, sin) * apply_rotary(ks, cos, sin)).sum(-1)
    assert torch.allclose(dots, dots[0, 0].expand_as(dots), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# FFN, norms, embeddings, cross-attention
# ---------------------------------------------------------------------------------------------------


def test_glumbconv_matches_diffusers_on_non_square_grid():
    torch.manual_seed(0)
    ref = DGLUMBConv(16, 16, 2.5, norm_type=None, residual_connection=False)
    ours = GLUMBConv(GLUMBConvConfig(16, 2.5))
    ours.inverted.load_state_dict(ref.conv_inverted.state_dict())
    ours.depthwise.load_state_dict(ref.conv_depth.state_dict())
    ours.pointwise.load_state_dict(ref.conv_point.state_dict())
    x = torch.randn(2, 16, 6, 10)
    assert rel_err(ours.forward_grid(x), ref(x)) < TOL
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
    assert rel_err(ours(tokens, 6, 10), ref(x).flatten(2).transpose(1, 2)) < TOL


def test_rmsnorm_matches_diffusers():
    torch.manual_seed(0)
    ref, ours = DRMSNorm(48, eps=1e-5), RMSNorm(48, eps=1e-5)
    perturb_(ref)
    ours.weight.data.copy_(ref.weight)
    x = 3 * torch.randn(2, 5, 48)
    assert rel_err(ours(x), ref(x)) < 1e-6
    assert ours(x.bfloat16()).dtype == torch.bfloat16


def test_timestep_embedding_matches_diffusers():
    torch.manual_seed(0)
    proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
    ref = DTimestepEmbedding(256, 64)
    ours = TimestepEmbedding(64)
    ours.fc1.load_state_dict(ref.linear_1.state_dict())
    ours.fc2.load_state_dict(ref.linear_2.state_dict())
    t = torch.tensor([0.0, 0.37, 500.7, 999.0])
    assert rel_err(ours(t), ref(proj(t))) < TOL


def test_caption_projection_matches_diffusers():
    torch.manual_seed(0)
    ref, ref_norm = PixArtAlphaTextProjection(40, 64), DRMSNorm(64, eps=1e-5)
    perturb_(ref_norm)
    ours = CaptionProjection(CaptionProjectionConfig(40, 64))
    ours.fc1.load_state_dict(ref.linear_1.state_dict())
    ours.fc2.load_state_dict(ref.linear_2.state_dict())
    ours.norm.weight.data.copy_(ref_norm.weight)
    y = torch.randn(2, 7, 40)
    assert rel_err(ours(y), ref_norm(ref(y))) < TOL


def test_sincos_pos_embed_matches_diffusers_non_square():
    ref = get_2d_sincos_pos_embed(64, (6, 10), base_size=8, interpolation_scale=2.0)
    assert rel_err(sincos_pos_embed_2d(64, 6, 10, base_size=8, interpolation_scale=2.0), ref) < 1e-6
    embed = PatchEmbed(PatchEmbedConfig(4, 64, patch_size=2, interpolation_scale=2.0, base_size=8))
    assert embed(torch.randn(2, 4, 12, 20)).shape == (2, 60, 64)
    with pytest.raises(ValueError, match="patch_size"):
        embed(torch.randn(1, 4, 5, 20))


@pytest.mark.parametrize("cross_norm", [False, True])
def test_cross_attention_matches_diffusers_with_padding(cross_norm):
    torch.manual_seed(0)
    ref = Attention(
        query_dim=64, cross_attention_dim=48, heads=2, dim_head=24, bias=True,
        qk_norm="rms_norm_across_heads" if cross_norm else None, kv_heads=2 if cross_norm else None,
        processor=SanaAttnProcessor2_0(),
    )  # fmt: skip
    perturb_(ref)
    ours = CrossAttention(CrossAttentionConfig(64, 48, heads=2, head_dim=24, cross_norm=cross_norm))
    with torch.no_grad():
        ours.q.load_state_dict(ref.to_q.state_dict())
        ours.kv.weight.copy_(torch.cat([ref.to_k.weight, ref.to_v.weight]))
        ours.kv.bias.copy_(torch.cat([ref.to_k.bias, ref.to_v.bias]))
        ours.proj.load_state_dict(ref.to_out[0].state_dict())
        if cross_norm:
            ours.qk_norm.q.weight.copy_(ref.norm_q.weight)
            ours.qk_norm.k.weight.copy_(ref.norm_k.weight)
    x, ctx = torch.randn(2, 9, 64), torch.randn(2, 6, 48)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    bias = key_padding_bias(mask, x.dtype)  # (B, 1, 1, L)
    out = ours(x, ctx, bias)
    assert rel_err(out, ref(x, ctx, attention_mask=bias[:, 0])) < TOL
    # Padded keys have no influence; valid ones do.
    ctx2 = ctx.clone()
    ctx2[1, 2:] = 100 * torch.randn(4, 48)
    assert torch.allclose(ours(x, ctx2, bias), out, atol=1e-6)
    ctx2[1, 0] += 1.0
    assert not torch.allclose(ours(x, ctx2, bias)[1], out[1], atol=1e-4)


def test_blocks_trace_without_graph_breaks():
    torch._dynamo.reset()
    attn = LinearAttention(LinearAttentionConfig(64, qk_norm=True))
    ffn = GLUMBConv(GLUMBConvConfig(64))

    def step(x):
        return ffn(attn(x), 3, 5)

    compiled = torch.compile(step, backend="eager", fullgraph=True)
    x = torch.randn(2, 15, 64)
    assert torch.allclose(compiled(x), step(x), atol=1e-6)
