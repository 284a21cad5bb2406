"""Dreaming frames along a camera path: the streaming SANA-WM + autoencoder loop behind the Dream envs.

    dreamer = Dreamer(zoo.load("rooms-128"))                        # the entry's dream defaults
    state = dreamer.start(first_rgb, c2w0, K, captions)           # (B, H, W, 3) uint8 anchors
    rgb, state = dreamer.step(state, c2w, generator=g)            # next frame at poses c2w (B, 4, 4)

One env step is one latent frame (the shipped models use Plücker stride 1). ``start`` encodes the anchor
frame and appends it to an empty stream (a model pass at t = 0). ``step`` samples the next latent frame
from noise with ``num_steps`` Flow-Euler steps at the new camera (poses relative to the stream's first
frame, as in training), decodes it, and appends it (a model pass; optionally re-noised to
``context_sigma``) so the state (constant size: GDN states and a softmax window of sink + recent frames)
carries it. A step returns a new state and never writes into a state's tensors. Everything runs under
``torch.inference_mode``: returned tensors are inference tensors (clone one before writing into it).

With ``defer_append`` (default) a frame's append pass is folded into the next step's first sampler pass
(`WMStreamEngine.advance_and_denoise`: one chunk-causal pass over [that frame; the new noisy frame]), so a
step costs one model pass per sampler step instead of one more; the state carries the frame as
``DreamState.pending`` until then. Reading ``DreamState.stream`` appends it on the spot (a model pass) and
stores the result in that ``DreamState`` (``committed``, ``pending`` None): the same stream, materialised.
Branching several futures from one state: each ``step`` from a state with a pending frame folds the append
again (a two-frame pass per branch); read ``state.stream`` once first to share one append between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sana_world.samplers import FlowEulerSampler
from sana_world.world_model.cameras import WMCameraInputs, prepare_camera_inputs
from sana_world.world_model.causal import ChunkCausalConfig
from sana_world.world_model.streaming import WMStreamConfig, WMStreamEngine, WMStreamState, WMText

__all__ = ["DreamState", "Dreamer", "DreamerConfig", "PendingFrame", "context_entry"]


def context_entry(z: torch.Tensor, eps: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """How a dreamed chunk z (B, C, T, h, w) enters a stream state: re-noised to ``sigma``,
    ``(1 - sigma) z + sigma eps``, at timestep ``1000 sigma`` (B, T) (sigma 0: the clean frame at 0)."""
    t = torch.full((z.shape[0], z.shape[2]), 1000.0 * sigma, device=z.device)  # (B, T)
    return (1.0 - sigma) * z + sigma * eps, t


@dataclass(frozen=True)
class DreamerConfig:
    """Attributes:
    num_steps: Flow-Euler steps per frame (1: the one-step posterior-mean sample, fastest and highest
        PSNR; more: sharper, less faithful).
    shift: flow shift of the sampling schedule (the shipped models trained with 2.0).
    sink_frames / window_frames: softmax attention sink and window (trained with 1 and 10; the shipped
        sigma-1 model dreams as well with a window of 2, its zoo default: a CPU step 118 -> 93 ms).
    context_sigma: noise level at which each dreamed frame enters the state (0: as a clean frame). Diffusion
        forcing trains on noisy context, so a dreamed frame, itself an estimate, may be better read as a
        slightly noisy one: it is re-noised, ``(1 - s) z + s eps``, and appended at timestep ``1000 s``.
        1: the frame enters as its own sampling noise at timestep 1000, so nothing dreamed feeds back (a
        model trained with every frame after the anchor at sigma 1 predicts each frame from the anchor, the
        poses and the earlier passes' features); with ``num_steps`` 1 the sampling pass is then the append
        (`WMStreamEngine.denoise_and_append`): one model pass over one frame per step.
    bf16: run the model passes and the decode under bf16 autocast, on CUDA or the CPU (the camera-ray
        geometry, the GDN scans and the sampler stay fp32). Off by default: fp32 is the reference. On a
        CPU it pays only where the cores have bf16 dot products (AVX512-BF16 or AMX).
    fp8: run the world model's wide linear layers in FP8 (W8A8 e4m3, :func:`~sana_world.nn.fp8.fp8_copy`:
        ``torch._scaled_mm`` on Ada / Hopper GPUs, its bit-exact emulation on the CPU, which is slower, not
        faster), on a copy: the models passed in are untouched. Sol-RL-style cheap exploration: agents may
        roll out in FP8 dreams; the conditioning path, first and last layers and the decode stay as they are.
        Combines with ``bf16`` (then the FP8 layers return bf16).
    defer_append: append each frame to the stream state in the next step's first model pass (one pass per
        step fewer; the same frames up to float round-off). False: append it within its own step.
    compile: run the model's blocks (``WMStreamConfig.compile``) and the decode through ``torch.compile``
        (inductor, CPU or CUDA). A speed option, off by default: the first steps compile (about a minute
        cold on a 2-core CPU, seconds from inductor's on-disk cache); frames equal eager ones up to float
        round-off.
    """

    num_steps: int = 1
    shift: float = 2.0
    sink_frames: int = 1
    window_frames: int = 10
    context_sigma: float = 0.0
    bf16: bool = False
    fp8: bool = False
    defer_append: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("num_steps", "sink_frames", "window_frames"):  # numpy integers count as ints
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name} must be an int, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not self.shift > 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        if self.sink_frames < 0 or self.window_frames < 1:
            raise ValueError("sink_frames must be >= 0 and window_frames >= 1")
        if not 0.0 <= self.context_sigma <= 1.0:
            raise ValueError(f"context_sigma must lie in [0, 1], got {self.context_sigma}")

    @property
    def fused(self) -> bool:
        """Whether a step's sampling pass is also its append (context sigma 1, one step)."""
        return self.context_sigma == 1.0 and self.num_steps == 1

    @classmethod
    def from_zoo(cls, defaults: Mapping[str, Any], **overrides: Any) -> DreamerConfig:
        """The config a zoo entry's ``dream`` defaults name (fields of this class only), then ``overrides``."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in defaults.items() if k in known}, **overrides})


@dataclass(frozen=True)
class PendingFrame:
    """A frame of a dream stream that is not in its stream state yet (``DreamerConfig.defer_append``)."""

    latents: torch.Tensor  # (B, C, 1, h, w), as the frame enters the state (re-noised to context_sigma)
    timesteps: torch.Tensor | None  # (B, 1) model units; None: clean (0)
    camera: WMCameraInputs  # of that frame
    dreamer: Dreamer  # whose engine appends it

    def select(self, idx: torch.Tensor) -> PendingFrame:
        cam = WMCameraInputs(self.camera.camera_conditions[idx], self.camera.chunk_plucker[idx])
        t = None if self.timesteps is None else self.timesteps[idx]
        return PendingFrame(self.latents[idx], t, cam, self.dreamer)

    def put_rows(self, rows: torch.Tensor, new: PendingFrame) -> PendingFrame:
        """A copy with batch rows ``rows`` (n,) replaced by ``new`` (n rows)."""
        def t_of(p: PendingFrame) -> torch.Tensor:  # (B, 1) float32; None means clean (0)
            if p.timesteps is None:
                return p.latents.new_zeros(p.latents.shape[0], 1, dtype=torch.float32)
            return p.timesteps.float()

        t = None if self.timesteps is None and new.timesteps is None else t_of(self).index_copy(0, rows, t_of(new))
        cam = WMCameraInputs(self.camera.camera_conditions.index_copy(0, rows, new.camera.camera_conditions),
                             self.camera.chunk_plucker.index_copy(0, rows, new.camera.chunk_plucker))
        return PendingFrame(self.latents.index_copy(0, rows, new.latents.to(self.latents.dtype)), t, cam,
                            self.dreamer)  # fmt: skip


@dataclass
class DreamState:
    """A batch of dream streams: the stream state without the pending frame (``committed``), the anchor pose
    and intrinsics, the caption embedding, the last latent frame (B, C, h, w), and the frame still to be
    appended to the stream state (None: none; see the module doc). ``stream`` is the full stream state:
    reading it may run the pending append (one model pass), once."""

    committed: WMStreamState
    c2w0: torch.Tensor  # (B, 4, 4) float32, pose of the anchor frame
    K: torch.Tensor  # (B, 3, 3) float32, pixels of the frames
    text: WMText
    last: torch.Tensor  # (B, C, h, w)
    pending: PendingFrame | None = None

    @property
    def stream(self) -> WMStreamState:
        """The stream state with every frame in: a pending frame is appended here, once (a model pass)."""
        if self.pending is not None:
            self.committed = self.pending.dreamer._append(self.committed, self.pending, self.text)
            self.pending = None  # the same state, now materialised
        return self.committed

    @property
    def frame(self) -> int:
        """Latent frames in the stream (1 after start); the furthest stream's when they differ (``frames``)."""
        pending = 0 if self.pending is None else self.pending.latents.shape[2]
        return self.committed.frame + pending

    @property
    def frames(self) -> tuple[int, ...]:
        """Every stream's latent frames (streams restarted at different times sit at different frames)."""
        pending = 0 if self.pending is None else self.pending.latents.shape[2]
        return tuple(f + pending for f in self.committed.frames)

    @property
    def batch_size(self) -> int:
        return self.c2w0.shape[0]

    def select(self, index: torch.Tensor | list[int]) -> DreamState:
        """The streams ``index`` as a new batch (copies)."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.c2w0.device)
        mask = None if self.text.attention_mask is None else self.text.attention_mask[idx]
        pending = None if self.pending is None else self.pending.select(idx.to(self.last.device))
        return DreamState(self.committed.select(idx.tolist()), self.c2w0[idx], self.K[idx],
                          WMText(self.text.hidden_states[idx], mask), self.last[idx], pending)


def _check_captions(captions: list[str], n: int, what: str) -> None:
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"captions must be a list of {n} strings, one per stream, got {captions!r:.80}")
    if len(captions) != n:
        raise ValueError(f"{len(captions)} captions for {n} {what}")


def _poses(c2w: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """``c2w`` as float32 (n, 4, 4); (4, 4) serves n = 1."""
    c2w = torch.as_tensor(c2w, dtype=torch.float32)
    if tuple(c2w.shape) not in ((n, 4, 4),) + (((4, 4),) if n == 1 else ()):
        raise ValueError(f"{name} must be camera-to-world poses ({n}, 4, 4), got {tuple(c2w.shape)}")
    return c2w.reshape(n, 4, 4)


def _intrinsics(K: torch.Tensor, n: int) -> torch.Tensor:
    """``K`` as float32 (n, 3, 3); (3, 3) or (1, 3, 3) serves every stream."""
    K = torch.as_tensor(K, dtype=torch.float32)
    if tuple(K.shape) not in ((3, 3), (1, 3, 3), (n, 3, 3)):
        raise ValueError(f"K must be intrinsics (3, 3) or ({n}, 3, 3), got {tuple(K.shape)}")
    return K.expand(n, 3, 3)


class Dreamer:
    """Streams frames from a zoo bundle (``sana_world.generators.zoo.ZooModels``) or explicit modules.

    ``config`` None: the zoo entry's dream defaults (``DreamerConfig.from_zoo(models.entry.dream_defaults)``,
    what the Dream envs run), or ``DreamerConfig()`` for models without an entry. The world model's weights
    must be fp32 (``DreamerConfig.bf16`` runs it in bf16 under autocast; the stream state stays fp32).
    """

    def __init__(self, models: object, config: DreamerConfig | None = None) -> None:
        if config is None:
            entry = getattr(models, "entry", None)
            config = DreamerConfig() if entry is None else DreamerConfig.from_zoo(entry.dream_defaults)
        dtype = next(models.world_model.parameters()).dtype
        if dtype != torch.float32:
            raise ValueError(f"Dreamer needs the world model in float32, got {dtype}: load it with "
                             "zoo.load(name) (fp32, the default) and pass DreamerConfig(bf16=True) to run in bf16")
        self.models = models
        if config.fp8:
            from sana_world.nn.fp8 import fp8_copy

            self.model = fp8_copy(models.world_model)
        else:
            self.model = models.world_model
        self.codec = models.codec
        self.text_encoder = models.text
        self.config = config
        causal = ChunkCausalConfig(sink_frames=config.sink_frames, window_frames=config.window_frames)
        self.engine = WMStreamEngine(self.model, FlowEulerSampler(config.num_steps, config.shift),
                                     WMStreamConfig(causal=causal, compile=config.compile))
        # (B, C, h, w) latents -> (B, H, W, 3) uint8 frames; compiled, it leaves the codec as it is
        self._decode = torch.compile(self.codec.decode, dynamic=False) if config.compile else self.codec.decode
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        # the streams' softmax KV windows: bf16 under bf16 autocast (what its attention reads, half the bytes)
        self.window_dtype = torch.bfloat16 if config.bf16 else torch.float32
        if config.bf16 and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"DreamerConfig.bf16 needs the models on CUDA or the CPU, not {self.device}")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # 1. Inputs.
    def _camera(self, c2w0: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, size: tuple[int, int],
                latent: tuple[int, int]) -> WMCameraInputs:
        """Camera inputs (one latent frame) of poses c2w (B, 4, 4) relative to the anchors c2w0."""
        path = torch.stack([c2w0, c2w], dim=1).to(self.device, torch.float32)  # (B, 2, 4, 4)
        cam = prepare_camera_inputs(path, K[:, None].to(self.device, torch.float32), size, latent, 1)
        return WMCameraInputs(cam.camera_conditions[:, 1:].to(self.dtype),
                              cam.chunk_plucker[:, :, 1:].to(self.dtype))

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise on the models' device, drawn on ``generator``'s device when one is given."""
        dev = self.device if generator is None else generator.device
        return torch.randn(shape, generator=generator, device=dev).to(self.device)

    def encode_text(self, captions: list[str]) -> WMText:
        emb = self.text_encoder.encode(captions)
        return WMText(emb.hidden.to(self.device, self.dtype), emb.mask.to(self.device))

    # 2. Streams.
    @torch.inference_mode()
    def start(self, rgb: torch.Tensor, c2w0: torch.Tensor, K: torch.Tensor, captions: list[str],
              latents: torch.Tensor | None = None) -> DreamState:
        """Streams anchored at frames ``rgb`` (B, H, W, 3) uint8 (or given ``latents`` (B, C, h, w)) taken at
        poses ``c2w0`` (B, 4, 4) with intrinsics ``K`` (B, 3, 3) or (3, 3)."""
        if rgb.ndim != 4 or rgb.dtype != torch.uint8 or rgb.shape[-1] != 3:
            raise ValueError(f"rgb must be uint8 (B, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
        B, H, W = rgb.shape[:3]
        _check_captions(captions, B, "frames")
        # copies: a caller moving its pose tensor in place must not move the anchor
        c2w0 = _poses(c2w0, B, "c2w0").to(self.device).clone()
        K = _intrinsics(K, B).to(self.device).clone()
        with self._autocast():
            z0 = self.codec.encode(rgb.to(self.device)) if latents is None else latents.to(self.device)
        z0 = z0.to(self.dtype)
        text = self.encode_text(captions)
        lat = tuple(z0.shape[-2:])
        state = self.engine.init_state(B, lat, self.device, torch.float32, self.window_dtype)
        cam = self._camera(c2w0, c2w0, K, (H, W), lat)
        state = self._append(state, PendingFrame(z0[:, :, None], None, cam, self), text)  # the root: now
        return DreamState(state, c2w0, K, text, z0)

    @torch.inference_mode()
    def restart(self, state: DreamState, rows: list[int], rgb: torch.Tensor, c2w0: torch.Tensor,
                K: torch.Tensor, captions: list[str]) -> DreamState:
        """``state`` with streams ``rows`` begun anew, anchored as in ``start`` (rgb (n, H, W, 3) uint8, poses
        c2w0 (n, 4, 4), K (n, 3, 3) or (3, 3)); the other streams go on. The batch keeps its size and order,
        so a vector env steps every stream in one pass whatever frame each has reached (the rows' RoPE
        positions and window slots are their own: ``WMStreamState.row_frames``). With ``defer_append`` the
        anchors enter the state in the next step's pass, as pending frames: no model pass here."""
        n = len(rows)
        if len(set(rows)) != n or any(not 0 <= r < state.batch_size for r in rows):
            raise ValueError(f"rows {rows} must be distinct and within the batch of {state.batch_size}")
        if rgb.ndim != 4 or rgb.dtype != torch.uint8 or rgb.shape[0] != n or rgb.shape[-1] != 3:
            raise ValueError(f"rgb must be uint8 (n={n}, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
        _check_captions(captions, n, "restarted streams")
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        c2w0 = _poses(c2w0, n, "c2w0").to(self.device)
        K = _intrinsics(K, n).to(self.device)
        if state.pending is None:  # appends run at once: the new streams start alone, then join
            fresh = self.start(rgb, c2w0, K, captions)
            committed = state.committed.put_rows(rows, fresh.committed)
            pending = None
        else:
            with self._autocast():
                z0 = self.codec.encode(rgb.to(self.device)).to(self.dtype)  # (n, C, h, w)
            fresh = DreamState(state.committed, c2w0, K, self.encode_text(captions), z0)
            cam = self._camera(c2w0, c2w0, K, tuple(rgb.shape[1:3]), tuple(z0.shape[-2:]))
            committed = state.committed.restart_rows(rows)
            pending = state.pending.put_rows(idx, PendingFrame(z0[:, :, None], None, cam, self))
        return DreamState(committed, state.c2w0.index_copy(0, idx, c2w0), state.K.index_copy(0, idx, K),
                          state.text.put_rows(idx, fresh.text), state.last.index_copy(0, idx, fresh.last),
                          pending)  # fmt: skip

    @torch.inference_mode()
    def step(self, state: DreamState, c2w: torch.Tensor, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None,
             context_noise: torch.Tensor | None = None) -> tuple[torch.Tensor, DreamState]:
        """The dreamed frames (B, H, W, 3) uint8 at poses ``c2w`` (B, 4, 4), and the state after them. The
        sampler's ``noise`` and the ``context_noise`` that re-noises the new frame to the context sigma
        (each (B, C, 1, h, w)) are drawn from ``generator`` unless given. At context sigma 1 the frame
        enters as its sampling noise (``context_noise`` is not used)."""
        B = state.batch_size
        c2w = _poses(c2w, B, "c2w").to(self.device)
        C, h, w = state.last.shape[1:]
        f = self.codec.downsample_factor
        cam = self._camera(state.c2w0, c2w, state.K, (h * f, w * f), (h, w))
        if noise is None:
            noise = self._randn((B, C, 1, h, w), generator)  # (B, C, 1, h, w)
        noise, p = noise.to(self.dtype), state.pending
        if self.config.fused:  # one pass: the frame is sampled and appended as its noise at t = 1000
            with self._autocast():
                z, stream = self.engine.denoise_and_append(
                    state.committed, noise, state.text, cam, context=None if p is None else p.latents,
                    context_timesteps=None if p is None else p.timesteps,
                    context_camera=None if p is None else p.camera)  # fmt: skip
                last = z[:, :, 0].to(self.dtype)  # (B, C, h, w)
                rgb = self._decode(last, as_uint8=True)  # (B, H, W, 3)
            return rgb, DreamState(stream, state.c2w0, state.K, state.text, last)
        with self._autocast():
            if p is None:
                stream = state.committed
                z = self.engine.denoise_chunk(stream, noise, state.text, cam)  # (B, C, 1, h, w)
            else:  # the pending frame goes in with this frame's first sampler pass
                z, stream = self.engine.advance_and_denoise(state.committed, p.latents, noise, state.text,
                                                            p.camera, cam, context_timesteps=p.timesteps)
        z = z.to(self.dtype)
        s = self.config.context_sigma
        if s == 1.0:  # several sampler steps: the frame enters as its initial noise, as in the fused step
            ctx, t = context_entry(z, noise, s)
        elif s > 0:  # the frame enters the state as a noisy observation at sigma s
            eps = (self._randn(tuple(z.shape), generator) if context_noise is None
                   else context_noise.to(self.device)).to(self.dtype)  # (B, C, 1, h, w)
            ctx, t = context_entry(z, eps, s)  # (B, C, 1, h, w), (B, 1)
        else:
            ctx, t = z, None
        new = self._appended(DreamState(stream, state.c2w0, state.K, state.text, z[:, :, 0]), ctx, t, cam)
        with self._autocast():
            rgb = self._decode(z[:, :, 0], as_uint8=True)  # (B, H, W, 3)
        return rgb, new

    @torch.inference_mode()
    def observe(self, state: DreamState, rgb: torch.Tensor, c2w: torch.Tensor) -> DreamState:
        """The state after real frames ``rgb`` (B, H, W, 3) uint8 seen at poses ``c2w`` (B, 4, 4): encoded and
        appended clean (timestep 0), as ``start`` appends the anchor; nothing is dreamed."""
        B = state.batch_size
        if rgb.ndim != 4 or rgb.dtype != torch.uint8 or rgb.shape[0] != B:
            raise ValueError(f"rgb must be uint8 (B={B}, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
        c2w = _poses(c2w, B, "c2w").to(self.device)
        with self._autocast():
            z = self.codec.encode(rgb.to(self.device))
        z = z.to(self.dtype)  # (B, C, h, w)
        cam = self._camera(state.c2w0, c2w, state.K, tuple(rgb.shape[1:3]), tuple(z.shape[-2:]))
        seen = DreamState(state.stream, state.c2w0, state.K, state.text, z)
        return self._appended(seen, z[:, :, None], None, cam)

    def _appended(self, state: DreamState, latents: torch.Tensor, timesteps: torch.Tensor | None,
                  camera: WMCameraInputs) -> DreamState:
        """``state`` (nothing pending) with the frame ``latents`` (B, C, 1, h, w) at ``timesteps`` (B, 1) or
        None appended: now, or left pending for the next step's pass (``defer_append``)."""
        pending = PendingFrame(latents, timesteps, camera, self)
        if self.config.defer_append:
            return dataclasses.replace(state, pending=pending)
        return dataclasses.replace(state, committed=self._append(state.committed, pending, state.text))

    def _append(self, stream: WMStreamState, frame: PendingFrame, text: WMText) -> WMStreamState:
        """The stream state after ``frame`` (one model pass)."""
        with torch.inference_mode(), self._autocast():
            return self.engine.advance(stream, frame.latents, text, frame.camera, timesteps=frame.timesteps)

    @torch.inference_mode()
    def rollout(self, state: DreamState, path: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, DreamState]:
        """Frames (B, T, H, W, 3) along poses ``path`` (B, T, 4, 4), one ``step`` per pose."""
        frames = []
        for t in range(path.shape[1]):  # 1. one latent frame per pose
            rgb, state = self.step(state, path[:, t], generator)
            frames.append(rgb)
        return torch.stack(frames, dim=1), state
