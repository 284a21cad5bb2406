"""Text encoders: Gemma backend vs the diffusers SANA pipeline, the procedural featuriser, CFG dropout."""

from __future__ import annotations

import pytest
import torch

from sana_world.generators.text_encoders import (
    GemmaTextEncoder,
    ProceduralTextEncoder,
    ProceduralTextEncoderConfig,
    TextEmbedding,
    TextEncoder,
    caption_dropout,
    procedural_vocabulary,
    sana_complex_human_instruction,
    split_words,
)
from sana_world.worlds import caption, sample_scene

CAPTIONS = [
    "a room with green brick walls, a wooden floor, a red ball and a blue checkered crate",
    "two connected rooms with white tiled walls, a grey marble floor and a yellow lamp",
]

# ---------------------------------------------------------------------------------------------------
# Gemma backend on a tiny random Gemma-2 with a tiny word-level tokenizer
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gemma():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import Gemma2Config, Gemma2Model, PreTrainedTokenizerFast

    corpus = [*sana_complex_human_instruction(), *CAPTIONS]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    config = Gemma2Config(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    torch.manual_seed(0)
    return Gemma2Model(config).eval(), tokenizer


def _sana_pipeline(model, tokenizer):
    from diffusers import SanaPipeline

    return SanaPipeline(tokenizer=tokenizer, text_encoder=model, vae=None, transformer=None, scheduler=None)


@pytest.mark.parametrize(
    ("instruction", "max_length", "prompts"),
    [
        ("sana", 300, CAPTIONS),
        (None, 16, ["  A Red BALL  ", "zebra giraffe walls"]),  # case, whitespace, unknown words
        (("user prompt:", "enhanced"), 8, [CAPTIONS[0] * 3, "ball"]),  # truncation keeps the tail
    ],
)
def test_gemma_matches_diffusers_sana_pipeline(tiny_gemma, instruction, max_length, prompts):
    model, tokenizer = tiny_gemma
    encoder = GemmaTextEncoder(model, tokenizer, max_length=max_length, instruction=instruction)
    chi = list(sana_complex_human_instruction()) if instruction == "sana" else instruction
    ref, ref_mask, neg, neg_mask = _sana_pipeline(model, tokenizer).encode_prompt(
        prompts, do_classifier_free_guidance=True, negative_prompt="", device=torch.device("cpu"),
        max_sequence_length=max_length, complex_human_instruction=chi,
    )
    ours = encoder.encode(prompts)
    assert ours.hidden.shape == ref.shape == (len(prompts), max_length, 32)
    err = (ours.hidden - ref).abs().max().item()
    assert err <= 1e-6, err
    assert torch.equal(ours.mask, ref_mask.bool())
    null = encoder.null_embedding()
    assert null.hidden.shape == (1, max_length, 32)
    assert (null.hidden - neg[:1]).abs().max().item() <= 1e-6
    assert torch.equal(null.mask, neg_mask[:1].bool())
    assert null.mask[0, 0] and not null.mask[0, 1:].any()  # BOS only


def test_gemma_selection_is_bos_plus_tail(tiny_gemma):
    """With the instruction, kept tokens are BOS plus the prompt's end, not the instruction's start."""
    model, tokenizer = tiny_gemma
    encoder = GemmaTextEncoder(model, tokenizer, max_length=300)
    emb = encoder.encode(CAPTIONS)
    n_prompt = [len(tokenizer.encode(c.lower())) - 1 for c in CAPTIONS]  # without BOS
    # BOS + (last instruction token) + prompt tokens are real; the rest is padding.
    assert emb.mask.sum(1).tolist() == [n + 2 for n in n_prompt]
    assert isinstance(encoder, TextEncoder) and encoder.dim == 32 and encoder.max_length == 300


def test_gemma_from_pretrained_local_only(tiny_gemma, tmp_path):
    model, tokenizer = tiny_gemma
    model.save_pretrained(tmp_path / "text_encoder")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded = GemmaTextEncoder.from_pretrained(tmp_path, dtype=torch.float32, max_length=16, instruction=None)
    ref = GemmaTextEncoder(model, tokenizer, max_length=16, instruction=None).encode(CAPTIONS)
    got = loaded.encode(CAPTIONS)
    assert torch.allclose(got.hidden, ref.hidden, atol=1e-6) and torch.equal(got.mask, ref.mask)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        GemmaTextEncoder.from_pretrained(tmp_path / "nowhere")


def test_gemma_rejects_causal_lm_head(tiny_gemma):
    from transformers import Gemma2ForCausalLM

    model, tokenizer = tiny_gemma
    lm = Gemma2ForCausalLM(model.config)
    with pytest.raises(TypeError, match="last_hidden_state"):
        GemmaTextEncoder(lm, tokenizer, max_length=8, instruction=None).encode(["a ball"])


# ---------------------------------------------------------------------------------------------------
# Procedural backend
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proc():
    return ProceduralTextEncoder()


def test_procedural_deterministic_across_instances(proc):
    other = ProceduralTextEncoder()
    a, b, c = proc.encode(CAPTIONS), other.encode(CAPTIONS), proc.encode(CAPTIONS)
    assert torch.equal(a.hidden, b.hidden) and torch.equal(a.hidden, c.hidden)
    assert torch.equal(a.mask, b.mask)
    seeded = ProceduralTextEncoder(ProceduralTextEncoderConfig(seed=1)).encode(CAPTIONS)
    assert not torch.allclose(seeded.hidden, a.hidden)


def test_procedural_shapes_masks_and_padding(proc):
    emb = proc.encode(CAPTIONS)
    assert isinstance(proc, TextEncoder)
    assert emb.hidden.shape == (2, 64, 256) and emb.hidden.dtype == torch.float32
    assert emb.mask.dtype == torch.bool
    lengths = [1 + len(split_words(c)) for c in CAPTIONS]  # BOS + words and commas
    assert emb.mask.sum(1).tolist() == lengths
    for b, n in enumerate(lengths):
        assert emb.mask[b, :n].all() and not emb.mask[b, n:].any()
        assert (emb.hidden[b, n:] == 0).all()
        rms = emb.hidden[b, :n].square().mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones(n), atol=1e-3)
    # Batch padding: a caption encodes the same alone as in a batch.
    alone = proc.encode([CAPTIONS[1]])
    assert torch.equal(alone.hidden[0], emb.hidden[1]) and torch.equal(alone.mask[0], emb.mask[1])


def test_procedural_distinguishes_captions(proc):
    red, blue, swapped = proc.encode(
        ["a red ball and a blue crate", "a blue ball and a blue crate", "a blue ball and a red crate"]
    ).hidden
    assert not torch.allclose(red, blue, atol=1e-3)
    # Same bag of words, different binding: the pooled features must still differ.
    assert (red.sum(0) - swapped.sum(0)).abs().max() > 1e-2


def test_procedural_unknown_words_and_truncation(proc):
    ids, mask = proc.token_ids(["a zebra and a giraffe"])
    first_bucket = 1 + len(proc.config.vocabulary)
    assert ids[0, 2] >= first_bucket and ids[0, 5] >= first_bucket  # zebra, giraffe
    assert ids[0, 1] < first_bucket  # "a" is known
    emb = proc.encode(["a zebra and a giraffe"])
    assert torch.isfinite(emb.hidden).all() and emb.mask.sum() == 6
    long = proc.encode([" ".join(["red ball"] * 100)])
    assert long.mask.all() and long.hidden.shape == (1, 64, 256)
    with pytest.raises(TypeError):
        proc.encode("a red ball")  # type: ignore[arg-type]


def test_procedural_vocabulary_covers_generated_captions(proc):
    vocab = set(procedural_vocabulary())
    words = {w for seed in range(40) for w in split_words(caption(sample_scene(seed)))}
    assert words <= vocab, sorted(words - vocab)


def test_procedural_rows_do_not_depend_on_vocabulary(proc):
    small = ProceduralTextEncoder(ProceduralTextEncoderConfig(vocabulary=("red",)))
    assert torch.equal(small.token_table[1], proc.token_table[proc._index["red"]])


def test_procedural_null_embedding(proc):
    null = proc.null_embedding()
    assert null.hidden.shape == (1, 64, 256)
    assert null.mask[0, 0] and not null.mask[0, 1:].any()


def test_procedural_save_load_round_trip(proc, tmp_path):
    proc.save_pretrained(tmp_path / "enc")
    loaded = ProceduralTextEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config == proc.config
    assert torch.equal(loaded.encode(CAPTIONS).hidden, proc.encode(CAPTIONS).hidden)
    assert set(proc.state_dict()) == {"token_table", "positions", "mixing"}
    with pytest.raises(FileNotFoundError, match="missing"):
        ProceduralTextEncoder.from_pretrained(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------------
# Caption dropout
# ---------------------------------------------------------------------------------------------------


def test_caption_dropout(proc):
    emb = proc.encode(CAPTIONS * 8)  # B = 16
    null = proc.null_embedding()
    kept = caption_dropout(emb, null, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(kept.hidden, emb.hidden) and torch.equal(kept.mask, emb.mask)
    dropped = caption_dropout(emb, null, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(dropped.hidden, null.hidden.expand(16, -1, -1))
    assert torch.equal(dropped.mask, null.mask.expand(16, -1))
    a = caption_dropout(emb, null, 0.5, torch.Generator().manual_seed(3))
    b = caption_dropout(emb, null, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a.hidden, b.hidden)
    is_null = (a.mask.sum(1) == 1).tolist()
    assert 0 < sum(is_null) < 16
    with pytest.raises(ValueError):
        caption_dropout(emb, null, 1.5)
    with pytest.raises(ValueError):
        caption_dropout(emb, TextEmbedding(null.hidden[:, :10], null.mask[:, :10]), 0.1)
