"""The state a streaming SANA-WM carries between passes (`WMStreamState`) and a stream's caption (`WMText`).

A state holds B streams (rows). Every row has its own frame count: rows may sit at different frames
(`row_frames`; e.g. the envs of a vector env after autoresets at different times) and still step in one
batched pass. The pass then gives each row its own RoPE positions and masks the window slots that row has
not filled yet (`CausalContext.ragged`), so a row's numbers are those it would get alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .causal import BlockState, map_block_state

__all__ = ["WMStreamState", "WMText"]

_FRAME_KEY = "frame"


class WMText(NamedTuple):
    """Caption embeddings (B, L, caption_channels) and their mask (B, L) or None."""

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor | None = None

    def repeat_for_cfg(self, negative: WMText) -> WMText:
        """[negative; self] along the batch (unconditional first, the SANA pipelines' layout)."""
        mask = None
        if self.attention_mask is not None or negative.attention_mask is not None:
            ones = [torch.ones(t.hidden_states.shape[:2], dtype=torch.long, device=t.hidden_states.device)
                    for t in (negative, self)]  # fmt: skip
            pairs = zip((negative, self), ones)
            m = [t.attention_mask if t.attention_mask is not None else o for t, o in pairs]
            mask = torch.cat(m)
        return WMText(torch.cat([negative.hidden_states, self.hidden_states]), mask)

    @staticmethod
    def stack(texts: Sequence[WMText]) -> WMText:
        """Concatenate along the batch, shorter captions padded (and masked) to the longest."""
        L = max(t.hidden_states.shape[1] for t in texts)
        hidden = torch.cat([torch.nn.functional.pad(t.hidden_states, (0, 0, 0, L - t.hidden_states.shape[1]))
                            for t in texts])  # fmt: skip
        if all(t.attention_mask is None and t.hidden_states.shape[1] == L for t in texts):
            return WMText(hidden, None)
        masks = []
        for t in texts:
            m = t.attention_mask
            if m is None:
                m = torch.ones(t.hidden_states.shape[:2], dtype=torch.long, device=t.hidden_states.device)
            masks.append(torch.nn.functional.pad(m, (0, L - m.shape[1])))
        return WMText(hidden, torch.cat(masks))

    def put_rows(self, rows: torch.Tensor, new: WMText) -> WMText:
        """A copy with batch rows `rows` (n,) replaced by `new` (n rows), both padded to the longer caption."""
        both = WMText.stack([self, new])
        B = self.hidden_states.shape[0]
        hidden = both.hidden_states[:B].index_copy(0, rows, both.hidden_states[B:])
        mask = None if both.attention_mask is None else both.attention_mask[:B].index_copy(
            0, rows, both.attention_mask[B:])  # fmt: skip
        return WMText(hidden, mask)


@dataclass
class WMStreamState:
    """Stream state of B rows: one `GDNBlockState` / `SoftmaxBlockState` per block, all tensors with leading
    batch dim B and fixed shapes; `has_camera` (None before the first advance).

    frame: latent frames in the stream, all rows (row_frames None), or the furthest row's when the rows sit
    at different frames; row_frames: every row's frame count then (B ints). `frames` reads either way.
    """

    blocks: list[BlockState]
    frame: int = 0
    has_camera: bool | None = None
    row_frames: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.row_frames is not None:
            rows = tuple(int(f) for f in self.row_frames)
            if len(set(rows)) <= 1:  # one frame for all rows: the plain form
                self.frame, self.row_frames = (rows[0] if rows else self.frame), None
            else:
                self.frame, self.row_frames = max(rows), rows

    @property
    def frames(self) -> tuple[int, ...]:
        """Every row's frame count (B ints)."""
        return self.row_frames if self.row_frames is not None else (self.frame,) * self.batch_size

    @property
    def ragged(self) -> bool:
        """Whether the rows sit at different frames."""
        return self.row_frames is not None

    # 1. Generic tensor plumbing.
    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor], rows: Sequence[int] | None = None) -> WMStreamState:
        """fn applied to every tensor; `rows`: the batch rows fn keeps, in order (None: all)."""
        frames = self.row_frames
        if rows is not None and frames is not None:
            frames = tuple(frames[i] for i in rows)
        return WMStreamState([map_block_state(b, fn) for b in self.blocks], self.frame, self.has_camera, frames)

    def clone(self) -> WMStreamState:
        """An independent copy (branching futures)."""
        return self._map(torch.clone)

    def index(self, i: int) -> WMStreamState:
        """Env i as a batch-1 state."""
        return self.select([i])

    def select(self, rows: Sequence[int]) -> WMStreamState:
        """Rows `rows` (in that order) as a new batch (copies)."""
        rows = [int(r) for r in rows]
        idx = self._rows_index(rows)
        return self._map(lambda t: t[idx], rows)

    def _rows_index(self, rows: Sequence[int]) -> torch.Tensor:
        """Row indices (n,) on the state's device (every tensor of a state lives on one)."""
        return torch.tensor(rows, dtype=torch.long).to(self.blocks[0].ffn.device)

    def repeat(self, n: int) -> WMStreamState:
        """The batch repeated n times as [s; s; ...] (CFG shares one history between branches)."""
        frames = None if self.row_frames is None else self.row_frames * n
        return WMStreamState([map_block_state(b, lambda t: torch.cat([t] * n)) for b in self.blocks],
                             self.frame, self.has_camera, frames)  # fmt: skip

    @staticmethod
    def stack(states: list[WMStreamState]) -> WMStreamState:
        """Concatenate states along the batch (rows may sit at different frames); camera use must agree."""
        if not states:
            raise ValueError("stack() needs at least one state")
        cams = {s.has_camera for s in states} - {None}
        if len(cams) > 1:
            raise ValueError(f"cannot stack states with camera use {cams}")
        blocks = []
        for parts in zip(*(s.blocks for s in states)):
            names = [f.name for f in dataclasses.fields(parts[0])]
            blocks.append(type(parts[0])(**{n: torch.cat([getattr(p, n) for p in parts]) for n in names}))
        frames = tuple(f for s in states for f in s.frames)
        return WMStreamState(blocks, max(frames), next(iter(cams), None), frames)

    def put_rows(self, rows: Sequence[int], other: WMStreamState) -> WMStreamState:
        """A copy whose rows `rows` are `other`'s rows (in order), the others unchanged."""
        rows = [int(r) for r in rows]
        B = self.batch_size
        if other.batch_size != len(rows) or len(set(rows)) != len(rows) or any(not 0 <= r < B for r in rows):
            raise ValueError(f"rows {rows} repeated or out of range for a batch of {B}, or not one per row of "
                             f"the other state ({other.batch_size})")  # fmt: skip
        if None not in (self.has_camera, other.has_camera) and self.has_camera != other.has_camera:
            raise ValueError("cannot mix states with and without camera inputs")
        idx = self._rows_index(rows)
        blocks = [type(mine)(**{f.name: getattr(mine, f.name).index_copy(0, idx, getattr(theirs, f.name).to(
                  getattr(mine, f.name))) for f in dataclasses.fields(mine)})
                  for mine, theirs in zip(self.blocks, other.blocks)]  # fmt: skip
        frames = list(self.frames)
        for r, f in zip(rows, other.frames):
            frames[r] = f
        cam = self.has_camera if self.has_camera is not None else other.has_camera
        return WMStreamState(blocks, max(frames), cam, tuple(frames))

    def restart_rows(self, rows: Sequence[int]) -> WMStreamState:
        """A copy whose rows `rows` are empty streams (frame 0, zero state), the others unchanged."""
        n = len(rows)
        empty = WMStreamState([map_block_state(b, lambda t: t.new_zeros((n, *t.shape[1:]))) for b in self.blocks],
                              0, self.has_camera)  # fmt: skip
        return self.put_rows(rows, empty)

    @property
    def batch_size(self) -> int:
        return int(self.blocks[0].ffn.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat `blocks.{i}.{field}` -> tensor (views, not copies)."""
        out = {}
        for i, b in enumerate(self.blocks):
            for f in dataclasses.fields(b):
                out[f"blocks.{i}.{f.name}"] = getattr(b, f.name)
        return out

    def nbytes(self) -> int:
        """Total bytes of the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    # 2. Save / restore: flat contiguous tensors, safetensors-compatible.
    def state_dict(self) -> dict[str, torch.Tensor]:
        sd = {k: v.detach().contiguous().clone() for k, v in self.tensors().items()}
        frames = self.frame if self.row_frames is None else list(self.row_frames)  # scalar, or one per row
        sd[_FRAME_KEY] = torch.tensor(frames, dtype=torch.int64)
        cam = -1 if self.has_camera is None else int(self.has_camera)
        sd["has_camera"] = torch.tensor(cam, dtype=torch.int64)
        return sd

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Restore in place from `state_dict()` output; keys and shapes must match this state's layout
        (e.g. a fresh `engine.init_state` of the same batch and latent size)."""
        mine = self.tensors()
        expected = set(mine) | {_FRAME_KEY, "has_camera"}
        if set(sd) != expected:
            raise ValueError(f"state_dict keys differ: missing {sorted(expected - set(sd))}, "
                             f"unexpected {sorted(set(sd) - expected)}")  # fmt: skip
        for k, t in mine.items():
            if sd[k].shape != t.shape:
                got, want = tuple(sd[k].shape), tuple(t.shape)
                raise ValueError(f"state_dict[{k!r}] has shape {got}, expected {want}")
        frames = sd[_FRAME_KEY]
        if frames.ndim not in (0, 1) or (frames.ndim == 1 and frames.shape[0] != self.batch_size):
            raise ValueError(f"state_dict['frame'] must be a scalar or one count per row ({self.batch_size}), "
                             f"got shape {tuple(frames.shape)}")
        blocks = []
        for i, b in enumerate(self.blocks):
            blocks.append(dataclasses.replace(b, **{
                f.name: sd[f"blocks.{i}.{f.name}"].to(getattr(b, f.name)) for f in dataclasses.fields(b)
            }))  # fmt: skip
        self.blocks = blocks
        if frames.ndim == 0:
            self.frame, self.row_frames = int(frames), None
        else:
            self.row_frames = tuple(int(f) for f in frames.tolist())
            self.__post_init__()
        cam = int(sd["has_camera"])
        self.has_camera = None if cam < 0 else bool(cam)
