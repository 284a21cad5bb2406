"""Caption encoders: one interface, two backends.

* :class:`GemmaTextEncoder` reproduces SANA's caption path (Gemma-2 decoder, complex-human-instruction
  prefix, right padding, last hidden state, BOS + last ``max_length - 1`` tokens).
* :class:`ProceduralTextEncoder` is the offline default: a fixed, seeded featuriser over the closed
  vocabulary of our procedural captions. It has no trainable parameters; the DiT's caption projection
  learns on top of it.

Both return a :class:`TextEmbedding` of fixed length ``max_length``, so a batch and the null caption
always line up (:func:`caption_dropout`, CFG batching).

Example:
    >>> enc = ProceduralTextEncoder()
    >>> emb = enc.encode(["a room with green brick walls and a red ball"])
    >>> tuple(emb.hidden.shape), int(emb.mask.sum())
    ((1, 64, 256), 11)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from sana_world.worlds.palette import CATEGORIES, COLOURS, SHAPES, TEXTURE_ADJECTIVES, TEXTURES


@dataclass(frozen=True)
class TextEmbedding:
    """Encoded captions: ``hidden`` (B, L, D) float, ``mask`` (B, L) bool, True on real tokens."""

    hidden: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.hidden.ndim != 3 or self.mask.shape != self.hidden.shape[:2]:
            raise ValueError(f"hidden (B, L, D) / mask (B, L) mismatch: {self.hidden.shape} vs {self.mask.shape}")
        if self.mask.dtype != torch.bool:
            raise TypeError(f"mask must be bool, got {self.mask.dtype}")

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> TextEmbedding:
        return TextEmbedding(self.hidden.to(device=device, dtype=dtype), self.mask.to(device=device))

    def expand(self, batch_size: int) -> TextEmbedding:
        """Repeat a batch-of-one embedding (e.g. the null caption) ``batch_size`` times."""
        if len(self) != 1:
            raise ValueError(f"expand needs a batch of one, got {len(self)}")
        return TextEmbedding(self.hidden.expand(batch_size, -1, -1), self.mask.expand(batch_size, -1))

    @staticmethod
    def cat(embeddings: Sequence[TextEmbedding]) -> TextEmbedding:
        """Concatenate along the batch (e.g. [conditional, unconditional] for CFG)."""
        return TextEmbedding(
            torch.cat([e.hidden for e in embeddings]), torch.cat([e.mask for e in embeddings])
        )


@runtime_checkable
class TextEncoder(Protocol):
    """What a generator needs from a caption encoder."""

    @property
    def dim(self) -> int: ...

    @property
    def max_length(self) -> int: ...

    def encode(self, prompts: list[str]) -> TextEmbedding: ...

    def null_embedding(self) -> TextEmbedding:
        """The unconditional caption, batch of one."""
        ...


def caption_dropout(
    embedding: TextEmbedding, null: TextEmbedding, p: float, generator: torch.Generator | None = None
) -> TextEmbedding:
    """Replace each caption by ``null`` with probability ``p`` (classifier-free-guidance training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if null.hidden.shape[1:] != embedding.hidden.shape[1:]:
        raise ValueError(f"null embedding {tuple(null.hidden.shape)} does not match {tuple(embedding.hidden.shape)}")
    if len(null) != 1:
        raise ValueError(f"null embedding must be a batch of one, got {len(null)}")
    device = embedding.hidden.device
    null = null.to(device, embedding.hidden.dtype)
    rand_device = generator.device if generator is not None else device
    drop = (torch.rand(len(embedding), generator=generator, device=rand_device) < p).to(device)  # (B,)
    hidden = torch.where(drop[:, None, None], null.hidden, embedding.hidden)  # (B, L, D)
    mask = torch.where(drop[:, None], null.mask, embedding.mask)  # (B, L)
    return TextEmbedding(hidden, mask)


# ---------------------------------------------------------------------------------------------------
# Gemma (SANA) backend
# ---------------------------------------------------------------------------------------------------


def sana_complex_human_instruction() -> tuple[str, ...]:
    """SANA's complex-human-instruction lines, read from the installed diffusers ``SanaPipeline``.

    They are taken from the pipeline's ``__call__`` default rather than copied, so prompts match
    what the published SANA checkpoints were trained with in whatever diffusers version is installed.
    """
    import inspect

    from diffusers import SanaPipeline

    default = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    if not default or not all(isinstance(line, str) for line in default):
        raise RuntimeError(f"diffusers SanaPipeline has no complex_human_instruction default: {default!r}")
    return tuple(default)


class GemmaTextEncoder:
    """SANA's caption encoder over a transformers decoder-only model (Gemma-2-2B-it in SANA).

    Steps, as in the diffusers SANA pipeline: lower-case and strip the prompt; prefix the instruction
    lines joined by newlines; tokenise with right padding to ``len(instruction tokens) + max_length - 2``;
    run the decoder; keep the last hidden state at BOS and the last ``max_length - 1`` positions.
    The null caption is ``""`` without instruction, padded to ``max_length`` (no selection).

    ``model`` must return ``last_hidden_state`` (``AutoModel``/``Gemma2Model``, not a causal-LM head).
    ``dtype`` is the output dtype; ``None`` keeps the model's (bf16 for SANA). The model is put in eval
    mode and frozen; the tokenizer is switched to right padding.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        max_length: int = 300,
        instruction: Sequence[str] | Literal["sana"] | None = "sana",
        dtype: torch.dtype | None = None,
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 (BOS + one token), got {max_length}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self._max_length = max_length
        self.instruction = sana_complex_human_instruction() if instruction == "sana" else instruction
        self.dtype = dtype
        self._null: TextEmbedding | None = None

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        *,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> GemmaTextEncoder:
        """Load model + tokenizer from local files only.

        ``local_dir`` is a folder holding both, or a SANA pipeline folder with ``text_encoder/`` and
        ``tokenizer/`` subfolders. Extra keyword arguments go to the constructor.
        """
        from transformers import AutoModel, AutoTokenizer

        root = Path(local_dir)
        if (root / "text_encoder" / "config.json").is_file():
            model_dir, tok_dir = root / "text_encoder", root / "tokenizer"
        elif (root / "config.json").is_file():
            model_dir, tok_dir = root, root
        else:
            raise FileNotFoundError(
                f"no text encoder at {root}: expected {root / 'config.json'} or "
                f"{root / 'text_encoder' / 'config.json'}"
            )
        if not tok_dir.is_dir():
            raise FileNotFoundError(f"no tokenizer folder at {tok_dir}")
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=dtype).to(device)
        return cls(model, tokenizer, **kwargs)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _run(self, texts: list[str], length: int) -> TextEmbedding:
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self.device)  # (B, T)
        attn = tokens.attention_mask.to(self.device)  # (B, T)
        out = self.model(ids, attention_mask=attn)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise TypeError(
                f"{type(self.model).__name__} returned no last_hidden_state; pass the base decoder "
                "(transformers AutoModel / Gemma2Model), not a causal-LM head"
            )
        if self.dtype is not None:
            hidden = hidden.to(self.dtype)
        return TextEmbedding(hidden, attn.bool())  # (B, T, D), (B, T)

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """(B, max_length, dim) embeddings: BOS + the last ``max_length - 1`` tokens of prefix + prompt."""
        if isinstance(prompts, str):
            raise TypeError("encode expects a list of captions, got a single str")
        texts = [p.lower().strip() for p in prompts]
        length = self.max_length
        if self.instruction:
            prefix = "\n".join(self.instruction)
            texts = [prefix + t for t in texts]
            length = len(self.tokenizer.encode(prefix)) + self.max_length - 2
        full = self._run(texts, length)  # (B, T, D)
        keep = [0, *range(full.hidden.shape[1] - self.max_length + 1, full.hidden.shape[1])]
        keep_t = torch.tensor(keep, device=full.hidden.device)
        return TextEmbedding(full.hidden[:, keep_t], full.mask[:, keep_t])  # (B, max_length, D)

    def null_embedding(self) -> TextEmbedding:
        """Gemma("") without instruction, padded to ``max_length``; cached."""
        if self._null is None:
            self._null = self._run([""], self.max_length)
        return self._null


# ---------------------------------------------------------------------------------------------------
# Procedural (offline) backend
# ---------------------------------------------------------------------------------------------------

_LAYOUT_WORDS = (
    "a", "an", "the", "with", "and", "of", "in", "on", "to", "next", "near", "behind", "front", "left",
    "right", "room", "rooms", "connected", "wall", "walls", "floor", "floors", "ceiling", "door", "more",
    "object", "objects", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", ",",
)


def _plural(word: str) -> str:
    return word[:-1] + "ves" if word.endswith("f") else word + "s"


def procedural_vocabulary() -> tuple[str, ...]:
    """Sorted words of our captions: palette colours, textures and their adjectives, categories
    (singular and plural), primitive shapes, layout words and the numbers 0-20."""
    words: set[str] = set(_LAYOUT_WORDS) | set(COLOURS) | set(TEXTURES) | set(SHAPES)
    words |= {adj for adj in TEXTURE_ADJECTIVES.values() if adj}
    words |= set(CATEGORIES) | {_plural(c) for c in CATEGORIES}
    words |= {str(n) for n in range(21)}
    return tuple(sorted(words))


_TOKEN_RE = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def split_words(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


def _seeded_normal(key: str, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard-normal tensor that depends only on (seed, key, shape): stable across vocabularies."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _bucket(word: str, num_buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little") % num_buckets


@dataclass(frozen=True)
class ProceduralTextEncoderConfig:
    """Sizes and seed of :class:`ProceduralTextEncoder`; JSON-serialisable."""

    dim: int = 256
    max_length: int = 64  # including the leading BOS token
    num_buckets: int = 64  # hashed rows shared by out-of-vocabulary words
    window: int = 2  # neighbours on each side mixed into a token (binds "red" to "ball")
    position_scale: float = 0.5
    seed: int = 0
    vocabulary: tuple[str, ...] = field(default_factory=procedural_vocabulary)

    def __post_init__(self) -> None:
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"dim must be even and >= 2, got {self.dim}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.num_buckets < 1 or self.window < 0:
            raise ValueError(f"need num_buckets >= 1 and window >= 0, got {self.num_buckets}, {self.window}")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("vocabulary has duplicate words")


class ProceduralTextEncoder(nn.Module):
    """Fixed, seeded caption featuriser for our procedural captions; no download, no trainable weights.

    1. Split the caption into lower-case words/numbers/punctuation; prepend BOS, truncate to
       ``max_length``, pad with zeros (mask False). BOS keeps the null caption's mask non-empty.
    2. Look up each token: known words have their own row, unknown words share ``num_buckets`` hashed
       rows. Every row is a normal vector seeded by (seed, word) alone, so adding a word to the
       vocabulary leaves every other row unchanged.
    3. Add sinusoidal positions (times ``position_scale``).
    4. Mix each token with its ``window`` neighbours on each side through fixed random orthogonal
       maps (a 1-D convolution, weight 2^-|offset|): the "ball" token then also encodes "red".
    5. RMS-normalise each real token to unit scale; padded positions stay zero.

    All tables are buffers: ``state_dict()`` ships them with a trained generator, and
    :meth:`save_pretrained` / :meth:`from_pretrained` write config.json + model.safetensors.
    """

    def __init__(self, config: ProceduralTextEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ProceduralTextEncoderConfig()
        self._index = {w: i + 1 for i, w in enumerate(cfg.vocabulary)}  # row 0 is BOS
        self._first_bucket = 1 + len(cfg.vocabulary)
        keys = ["<bos>", *cfg.vocabulary, *(f"<bucket {i}>" for i in range(cfg.num_buckets))]
        table = torch.stack([_seeded_normal(k, cfg.seed, (cfg.dim,)) for k in keys])  # (V, D)
        self.register_buffer("token_table", table.float())
        self.register_buffer("positions", self._sinusoids(cfg.max_length, cfg.dim).float())  # (L, D)
        taps = [torch.eye(cfg.dim, dtype=torch.float64)] * (2 * cfg.window + 1)
        for offset in range(-cfg.window, cfg.window + 1):
            if offset:
                q, _ = torch.linalg.qr(_seeded_normal(f"<mix {offset}>", cfg.seed, (cfg.dim, cfg.dim)))
                taps[offset + cfg.window] = q * 0.5 ** abs(offset)
        self.register_buffer("mixing", torch.stack(taps, dim=-1).float())  # (D, D, 2w+1) conv1d weight

    @staticmethod
    def _sinusoids(length: int, dim: int) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
        freq = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (D/2,)
        angles = pos * freq  # (L, D/2)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (L, D)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def token_ids(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (B, L) long and mask (B, L) bool, on CPU."""
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        for b, prompt in enumerate(prompts):
            rows = [0] + [
                self._index.get(w, self._first_bucket + _bucket(w, self.config.num_buckets))
                for w in split_words(prompt)
            ]
            rows = rows[: self.max_length]
            ids[b, : len(rows)] = torch.tensor(rows)
            mask[b, : len(rows)] = True
        return ids, mask

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextEmbedding:
        """(B, max_length, dim) float32 features and (B, max_length) mask, on the buffers' device."""
        if isinstance(prompts, str):
            raise TypeError("encode expects a list of captions, got a single str")
        device = self.token_table.device
        ids, mask = (t.to(device) for t in self.token_ids(prompts))  # (B, L), (B, L)
        # float64 inside so results do not depend on batch composition or BLAS blocking.
        table, positions, mixing = self.token_table.double(), self.positions.double(), self.mixing.double()
        h = table[ids] + self.config.position_scale * positions  # (B, L, D)
        h = h * mask[..., None]  # padding contributes nothing to its neighbours
        h = F.conv1d(h.transpose(1, 2), mixing, padding=self.config.window).transpose(1, 2)  # (B, L, D)
        h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + 1e-6)  # unit RMS per token
        return TextEmbedding((h * mask[..., None]).float(), mask)

    def null_embedding(self) -> TextEmbedding:
        """The empty caption: BOS only."""
        return self.encode([""])

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=1))
        save_file({k: v.contiguous().cpu() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ProceduralTextEncoder:
        """Rebuild from :meth:`save_pretrained` output; the saved tables win over re-seeding."""
        from safetensors.torch import load_file

        path = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"no procedural text encoder at {path}: missing {path / name}")
        raw = json.loads((path / "config.json").read_text())
        raw["vocabulary"] = tuple(raw["vocabulary"])
        encoder = cls(ProceduralTextEncoderConfig(**raw))
        encoder.load_state_dict(load_file(str(path / "model.safetensors")))
        return encoder
