"""The frame layout of a chunk-causal pass: which frames a softmax query sees, where chunks end, and which
frames enter the stream state (see `causal.py` for the semantics)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

__all__ = ["CausalContext", "ChunkCausalConfig"]


@dataclass(frozen=True)
class ChunkCausalConfig:
    """Attributes:
    sink_frames: attention-sink frames (the stream's first frames), always visible to softmax blocks.
    window_frames: recent frames before a chunk that its softmax queries see; None = all (full-sequence
        mode only: a stream needs a bounded window).
    """

    sink_frames: int = 1
    window_frames: int | None = 10

    def __post_init__(self) -> None:
        if self.sink_frames < 0:
            raise ValueError(f"ChunkCausalConfig.sink_frames must be >= 0, got {self.sink_frames}")
        if self.window_frames is not None and self.window_frames < 0:
            raise ValueError(
                f"ChunkCausalConfig.window_frames must be None or >= 0, got {self.window_frames}"
            )


@dataclass(frozen=True)
class CausalContext:
    """How the T frames of a pass relate: chunk_size (chunks aligned to the pass' first frame),
    frame_offset (absolute index of that frame), whether a stream state (past) precedes them, and the
    frame-level softmax mask (T, F_past + T), F_past = sink + window slots when there is a past.
    attend_all: every entry of the mask is True (softmax blocks then run unmasked: same numbers, faster).
    commit_frames: how many leading frames of the pass enter the returned stream state (default all; 0: no
    new state is built, e.g. a sampler pass whose state is thrown away).
    key_valid: rows at different frames (`ragged`): (B, F_keys) bool, the key frames each row has (its
        mask is `frame_mask`, the full-window layout, and this); None: every row's mask is `frame_mask`.
    row_f0: (B,) int64 frame of each row clamped to sink_frames, when some row still fills its sink slots
        (`causal.push_window` writes each row's own slots); None: no row does.
    Both are tensors, never Python ints, so a compiled block sees the same guards for any rows."""

    num_frames: int
    chunk_size: int
    frame_offset: int
    cfg: ChunkCausalConfig
    has_past: bool
    frame_mask: torch.Tensor
    attend_all: bool = False
    commit_frames: int | None = None
    key_valid: torch.Tensor | None = None
    row_f0: torch.Tensor | None = None

    @staticmethod
    def build(
        num_frames: int, chunk_size: int, frame_offset: int, cfg: ChunkCausalConfig, has_past: bool,
        device: torch.device | str | None, commit_frames: int | None = None,
    ) -> CausalContext:  # fmt: skip
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if has_past and cfg.window_frames is None:
            raise ValueError("a stream state needs a bounded softmax window (window_frames is None)")
        if commit_frames is not None and not 0 <= commit_frames <= num_frames:
            raise ValueError(f"commit_frames must lie in [0, {num_frames}], got {commit_frames}")
        if not has_past:
            mask = _frame_mask(num_frames, chunk_size, frame_offset, cfg, False, device)
            return CausalContext(num_frames, chunk_size, frame_offset, cfg, False, mask, False, commit_frames)
        # A stream's mask depends on frame_offset only until sink + window frames are in: cached per layout,
        # built on the host once (its all-True test is then free of device syncs), never as an inference
        # tensor (a cached mask may later serve a pass that autograd records).
        W, sink = cfg.window_frames, cfg.sink_frames
        key = (num_frames, chunk_size, min(frame_offset, sink + W), sink, W, str(device))
        hit = _STREAM_MASKS.get(key)
        if hit is None:
            with torch.inference_mode(False):
                mask = _frame_mask(num_frames, chunk_size, frame_offset, cfg, True, "cpu")
                hit = (mask if device is None else mask.to(device), bool(mask.all()))
            if len(_STREAM_MASKS) >= 256:
                _STREAM_MASKS.clear()
            _STREAM_MASKS[key] = hit
        return CausalContext(num_frames, chunk_size, frame_offset, cfg, True, *hit, commit_frames)

    @staticmethod
    def ragged(
        num_frames: int, chunk_size: int, row_frames: tuple[int, ...], cfg: ChunkCausalConfig,
        device: torch.device | str | None, commit_frames: int | None = None,
    ) -> CausalContext:  # fmt: skip
        """A stream pass whose B rows sit at frames `row_frames` (B ints). A row's mask depends on its frame
        only through the key slots it has filled (the rest is relative), so every row gets the full-window
        layout (`frame_mask`, the layout at frame sink + window) and its own `key_valid`."""
        if cfg.window_frames is None:
            raise ValueError("a stream state needs a bounded softmax window (window_frames is None)")
        sink, W = cfg.sink_frames, cfg.window_frames
        full = CausalContext.build(num_frames, chunk_size, sink + W, cfg, True, device, commit_frames)
        clamped = tuple(min(int(f), sink + W) for f in row_frames)
        key = (clamped, num_frames, sink, W, str(device))
        hit = _RAGGED.get(key)
        if hit is None:
            with torch.inference_mode(False):
                f = torch.tensor(clamped)[:, None]  # (B, 1)
                sinks = torch.arange(sink)[None] < f  # (B, sink): slot j holds frame j once f > j
                recent = f - W + torch.arange(W)[None] >= sink  # (B, W): slot i holds frame f - W + i
                valid = torch.cat([sinks, recent, torch.ones(len(clamped), num_frames, dtype=torch.bool)], 1)
                f0 = torch.tensor([min(c, sink) for c in clamped]) if min(clamped) < sink else None
                hit = (host_to_device(valid, device), None if f0 is None else host_to_device(f0, device),
                       bool(valid.all()))  # fmt: skip
            if len(_RAGGED) >= 64:
                _RAGGED.clear()
            _RAGGED[key] = hit
        valid, f0, everything = hit
        return dataclasses.replace(full, attend_all=full.attend_all and everything,
                                   key_valid=None if everything else valid, row_f0=f0)

    @staticmethod
    def full_sequence(num_frames: int, chunk_size: int, cfg: ChunkCausalConfig, device) -> CausalContext:
        return CausalContext.build(num_frames, chunk_size, 0, cfg, False, device)

    def past_sink(self) -> CausalContext:
        """This context with `frame_offset` clamped to `sink_frames`. Blocks read the offset only to fill sink
        slots (`causal.push_window`), which no frame at or past the sink does, so a block pass is the same
        under both; every pass past the sink then hands a compiled block the same Python ints."""
        sink = self.cfg.sink_frames
        if self.frame_offset <= sink:
            return self
        return dataclasses.replace(self, frame_offset=sink)

    @property
    def committed(self) -> int:
        """Frames of the pass that enter the returned state."""
        return self.num_frames if self.commit_frames is None else self.commit_frames

    def token_mask(self, tokens_per_frame: int) -> torch.Tensor:
        """Boolean SDPA mask (True = attend): (T·S, F_keys·S), or (B, 1, T·S, F_keys·S) per row (`key_valid`)."""
        S = tokens_per_frame
        T, Fk = self.frame_mask.shape
        if self.key_valid is None:
            return self.frame_mask[:, None, :, None].expand(T, S, Fk, S).reshape(T * S, Fk * S)
        B = self.key_valid.shape[0]
        rows = self.frame_mask[None] & self.key_valid[:, None, :]  # (B, T, F_keys)
        return rows[:, None, :, None, :, None].expand(B, 1, T, S, Fk, S).reshape(B, 1, T * S, Fk * S)

    def future_rows(self, d: int) -> tuple[bool, ...]:
        """Per frame t of the pass: whether frame t + d exists in this pass and lies in t's chunk (on the
        host: a tap no frame has is skipped, one every frame has needs no mask)."""
        T, k = self.num_frames, self.chunk_size
        return tuple(t + d < T and (t + d) // k == t // k for t in range(T))

    def future_mask(self, d: int, device) -> torch.Tensor:
        """(T,) float: 1 where frame t + d exists in this pass and lies in t's chunk."""
        t = torch.arange(self.num_frames, device=device)
        k = self.chunk_size
        return ((t + d < self.num_frames) & ((t + d) // k == t // k)).float()


_STREAM_MASKS: dict[tuple, tuple[torch.Tensor, bool]] = {}


def host_to_device(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """A small host tensor on `device` without a host sync: through pinned memory, asynchronously, on CUDA."""
    if device is None or torch.device(device).type != "cuda":
        return t if device is None else t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
_RAGGED: dict[tuple, tuple[torch.Tensor, torch.Tensor | None, bool]] = {}


def _frame_mask(
    T: int, k: int, f0: int, cfg: ChunkCausalConfig, has_past: bool, device: torch.device | str | None
) -> torch.Tensor:
    """The (T, F_keys) frame-level softmax mask of `CausalContext` (True = attend)."""
    sink, W = cfg.sink_frames, cfg.window_frames
    q = torch.arange(T, device=device)  # (T,)
    q_start = f0 + (q // k) * k  # first frame of each query's chunk
    keys, valid = f0 + q, torch.ones(T, dtype=torch.bool, device=device)
    if has_past:
        sink_ids = torch.arange(sink, device=device)
        recent_ids = torch.arange(f0 - W, f0, device=device)
        keys = torch.cat([sink_ids, recent_ids, keys])
        valid = torch.cat([sink_ids < f0, recent_ids >= max(sink, 0), valid])
    # 1. Own or earlier chunk; 2. sink or within W frames before the query's chunk.
    mask = valid[None, :] & (keys[None, :] < q_start[:, None] + k)  # (T, F_keys)
    if W is not None:
        mask = mask & ((keys[None, :] < sink) | (keys[None, :] >= q_start[:, None] - W))
    return mask
