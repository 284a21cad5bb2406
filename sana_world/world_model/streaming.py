"""Streaming SANA-WM: chunk-by-chunk generation on an explicit, constant-size stream state.

One chunk of latent frames at a time (SANA-WM `_streaming`: 3 latent frames per block):

    state = engine.init_state(batch, latent_size)
    clean = engine.denoise_chunk(state, noise, text, camera, first_frame=img)   # state is only read
    state = engine.advance(state, clean, text, camera)                          # one pass at t = 0

Every pass is `causal.causal_block_forward` over the chunk from the state (see `causal.py` for the
semantics), so running a sequence chunk by chunk equals one chunk-causal pass over the whole sequence.
The state (`WMStreamState`) is a list of per-block states of fixed shapes (GDN forward-scan states, conv
left contexts, a softmax KV window of sink + recent frames) plus the absolute index of the next frame
(a Python int: it sets RoPE positions and window slots without touching the device). Passes never write
into a state; `advance` returns a new one, so states can be kept, cloned and branched freely. The rows of
a state may sit at different frames (`WMStreamState.row_frames`, see `stream_state.py`): one pass then
gives every row its own RoPE positions and window slots, the numbers each row gets alone.

Camera inputs per chunk are the chunk's slice of `WMCameraInputs` (poses relative to the stream's first
frame, see `cameras.prepare_camera_inputs`); a stream must give them for every chunk or for none.

`advance_and_denoise(state, context, noise, ...)` does `advance` then `denoise_chunk` with one pass fewer:
the first sampler pass runs over [context; x_t] as two chunks and takes the state after the context. Passes
that only sample build no new state, `advance` skips the output head, and the caption's projections
(`SanaWM.caption_context`) are computed once per caption (`WMStreamEngine.caption`).

`denoise_and_append(state, noise, ...)` is the one-step sample whose own pass is the append: the chunk enters
the state as its noise at sigma 1 (for models trained with every frame after the anchor at sigma 1), so a
step costs one pass over the chunk alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sana_world.sampler_schedules import model_timestep
from sana_world.samplers import FlowEulerSampler, Sampler, TrigFlowSampler, cfg_denoiser, flow_to_trigflow

from .causal import (
    BlockState,
    CausalContext,
    ChunkCausalConfig,
    GDNBlockState,
    SoftmaxBlockState,
    causal_block_forward,
    map_block_state,
)
from .cameras import WMCameraInputs
from .model import CaptionContext, SanaWM, image_conditioned_timesteps
from .stream_state import WMStreamState, WMText

__all__ = ["WMStreamConfig", "WMStreamEngine", "WMStreamState", "WMText"]


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place version counter (-1 for inference tensors, which have none)."""
    return -1 if t.is_inference() else t._version


@dataclass(frozen=True)
class WMStreamConfig:
    """Attributes:
    causal: softmax attention sink and window (SANA-WM streaming: 1 sink + 10 recent frames).
    guidance_scale: CFG weight; != 1 needs `negative` text in `denoise_chunk`. Both branches read the same
        stream state (built by `advance` from the conditional text).
    compile: run every block's chunk-causal forward through `torch.compile` (regional, inductor: the blocks
        of one kind share a graph; one graph per pass layout, a few per stream). A speed option, off by
        default: the first passes of each layout compile (tens of seconds cold on a 2-core CPU, seconds
        from inductor's on-disk cache), and the outputs equal eager ones up to float round-off.
    """

    causal: ChunkCausalConfig = ChunkCausalConfig()
    guidance_scale: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        if self.causal.window_frames is None:
            raise ValueError(
                "WMStreamConfig.causal.window_frames must be set: a stream needs a bounded window"
            )


def _block_pass(
    block: torch.nn.Module, x: torch.Tensor, inp: object, ctx: CausalContext, state: BlockState | None,
    cross_kv: tuple[torch.Tensor, torch.Tensor] | None, output: bool,
) -> tuple[torch.Tensor | None, BlockState | None]:  # fmt: skip
    """`causal_block_forward` with the new state's tensors contiguous, so a compiled block sees the same
    strides from every state it is handed (a stride change recompiles)."""
    x, new = causal_block_forward(block, x, inp, ctx, state, cross_kv, output)
    return x, None if new is None else map_block_state(new, torch.Tensor.contiguous)


def _gdn_block_pass(*args: object) -> tuple[torch.Tensor | None, BlockState | None]:
    return _block_pass(*args)


def _softmax_block_pass(*args: object) -> tuple[torch.Tensor | None, BlockState | None]:
    return _block_pass(*args)


def _compiled_block_passes() -> tuple[Callable, Callable]:
    """(GDN, softmax) block passes through `torch.compile`, created once per process (compiled graphs are
    shared by every engine). Two entry functions: dynamo's recompile limit counts per function, and each
    kind has a few pass layouts (start, sampling only, append + sample, append only)."""
    global _COMPILED_BLOCK_PASSES
    if _COMPILED_BLOCK_PASSES is None:
        # Each batch size has a dozen pass layouts while a stream's window fills (dynamic=False): dynamo's
        # default limit of 8 per function would drop a second batch size to eager, silently.
        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
        _COMPILED_BLOCK_PASSES = (torch.compile(_gdn_block_pass, dynamic=False),
                                  torch.compile(_softmax_block_pass, dynamic=False))  # fmt: skip
    return _COMPILED_BLOCK_PASSES


_COMPILED_BLOCK_PASSES: tuple[Callable, Callable] | None = None
RECOMPILE_LIMIT = 64  # compiled variants per block-pass function: about 5 batch sizes x 12 layouts


class WMStreamEngine:
    """Chunk-by-chunk sampling of a `SanaWM` on a `WMStreamState` with a pluggable sampler.

    Flow samplers (Euler, DPM) get the velocity model directly; a `TrigFlowSampler` gets it through
    `flow_to_trigflow`. Schedules may be per frame (diffusion forcing): (N + 1, B, T) in the sampler's
    time units.
    """

    def __init__(self, model: SanaWM, sampler: Sampler, config: WMStreamConfig = WMStreamConfig()) -> None:
        self.model = model
        self.sampler = sampler
        self.config = config
        self._compiled = _compiled_block_passes() if config.compile else None
        # id(hidden_states) -> (its weak reference, the mask's, versions, CaptionContext): see `caption`
        self._captions: dict[int, tuple[Callable, Callable, tuple, CaptionContext]] = {}

    # 1. State.
    def init_state(
        self, batch: int, latent_size: tuple[int, int], device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32, window_dtype: torch.dtype | None = None,
    ) -> WMStreamState:  # fmt: skip
        """An empty stream (frame 0) for `batch` envs on a latent grid (H, W). window_dtype: the softmax KV
        windows' (default `dtype`); bf16 under bf16 autocast holds exactly what the attention reads (it
        runs in bf16 there), in half the memory. The GDN states stay in `dtype` (their scans accumulate)."""
        cfg = self.model.cfg
        H, W = latent_size
        S = (H // cfg.patch_size[1]) * (W // cfg.patch_size[2])
        B, C, h, d = batch, cfg.dim, cfg.heads, cfg.head_dim
        slots = self.config.causal.sink_frames + self.config.causal.window_frames
        p = cfg.t_kernel_size // 2

        def z(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device, dtype=dtype)

        blocks: list[BlockState] = []
        for block in self.model.blocks:
            ffn = z(B, C, p, S)  # (B, C, p, S)
            if block.is_softmax:
                win = [torch.zeros(B, slots, S, h, d, device=device, dtype=window_dtype or dtype) for _ in range(4)]
                blocks.append(SoftmaxBlockState(*win, ffn=ffn))
            else:
                K = cfg.conv_kernel_size
                blocks.append(GDNBlockState(
                    kv=z(B, h, d, d), z=z(B, h, d), cam_kv=z(B, h, d, d),
                    conv_k=z(B, K - 1, S, C), conv_k_cam=z(B, K - 1, S, C), ffn=ffn,
                ))  # fmt: skip
        return WMStreamState(blocks)

    # 2. One pass over a chunk.
    def caption(self, text: WMText, dtype: torch.dtype) -> CaptionContext:
        """`SanaWM.caption_context` of `text`, cached while the text tensors live and they, the weights that
        read them and the autocast state are unchanged (a stream reads one caption at every pass). Only
        without autograd: with grad enabled it is computed afresh (a cached graph could be stale, or an
        inference tensor that autograd cannot save). Inference tensors have no version counter: one edited
        in place keeps its cached projections."""
        hidden, mask = text.hidden_states, text.attention_mask
        if torch.is_grad_enabled():
            return self.model.caption_context(hidden, mask, dtype)
        dev = hidden.device.type
        weights = tuple((p.data_ptr(), _version(p)) for p in self._caption_params())
        key = (_version(hidden), None if mask is None else _version(mask), dtype,
               torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev), weights)  # fmt: skip
        hit = self._captions.get(id(hidden))
        if hit is not None and hit[0]() is hidden and hit[1]() is mask and hit[2] == key:
            return hit[3]
        ctx = self.model.caption_context(hidden, mask, dtype)
        if len(self._captions) >= 8:  # a few streams' captions; the oldest goes first
            self._captions.pop(next(iter(self._captions)))
        # Weak references: an entry leaves with its caption tensor (so its id is never another tensor's).
        captions, k = self._captions, id(hidden)
        gone = lambda _: captions.pop(k, None)  # noqa: E731
        self._captions[k] = (weakref.ref(hidden, gone), (lambda: None) if mask is None else weakref.ref(mask),
                             key, ctx)  # fmt: skip
        return ctx

    def _caption_params(self) -> list[torch.Tensor]:
        model = self.model
        blocks = [b.cross_attn for b in model.blocks]
        norms = [a.qk_norm.k for a in blocks if a.qk_norm is not None]
        return [p for m in (model.caption_proj, *(a.kv for a in blocks), *norms) for p in m.parameters()]

    def _token_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype of the patch embedding's output (the tokens) under the current autocast state."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.model.patch_embed.weight.dtype

    def _check_chunk(self, state: WMStreamState, latents: torch.Tensor, text: WMText) -> None:
        """A clear error for a chunk the model or the stream cannot take (before any kernel fails on it)."""
        cfg = self.model.cfg
        if latents.ndim != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(f"latents must be (B, C={cfg.in_channels}, T, H, W), got {tuple(latents.shape)}")
        H, W = latents.shape[-2:]
        ph, pw = cfg.patch_size[1:]
        tokens = int(state.blocks[0].ffn.shape[-1])  # tokens a frame of this stream's grid
        if H % ph or W % pw or (H // ph) * (W // pw) != tokens:
            raise ValueError(f"latent frames of {H}x{W} do not fit this stream ({tokens} tokens a frame at patch "
                             f"{ph}x{pw}: the latent_size it was started with)")
        hidden = text.hidden_states
        if hidden.ndim != 3 or hidden.shape[-1] != cfg.caption_channels:
            raise ValueError(f"text hidden states must be (B, L, {cfg.caption_channels}), got {tuple(hidden.shape)}")

    def _pass(
        self, state: WMStreamState, latents: torch.Tensor, timesteps: torch.Tensor, text: WMText,
        camera: WMCameraInputs | None, commit: int | None = None, output: bool = True,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor | None, WMStreamState | None]:  # fmt: skip
        """Model output (B, C, T, H, W) for the frames appended to `state` (None without `output`), and the
        state after the first `commit` of them (default all; 0: None, no state is built). The frames form
        chunks of `chunk_size` (default T: one chunk)."""
        self._check_chunk(state, latents, text)
        B, T = latents.shape[0], latents.shape[2]
        if B != state.batch_size:
            raise ValueError(f"chunk batch {B} != state batch {state.batch_size}")
        has_cam = camera is not None
        if state.has_camera is not None and state.has_camera != has_cam:
            raise ValueError(
                f"camera inputs given={has_cam} but the stream was built with {state.has_camera}"
            )
        if camera is not None and camera.num_latent_frames != T:
            raise ValueError(f"camera inputs cover {camera.num_latent_frames} frames, chunk has {T}")
        caption = self.caption(text, self._token_dtype(latents.device))
        inp = self.model.prepare_inputs(
            latents, timesteps, text.hidden_states, text.attention_mask,
            None if camera is None else camera.camera_conditions,
            None if camera is None else camera.chunk_plucker,
            frame_offset=state.row_frames if state.ragged else state.frame, caption=caption,
        )  # fmt: skip
        commit = T if commit is None else commit
        if state.ragged:  # rows at different frames: per-row RoPE (above) and key slots
            ctx = CausalContext.ragged(T, chunk_size or T, state.row_frames, self.config.causal, latents.device,
                                       commit)  # fmt: skip
        else:
            ctx = CausalContext.build(T, chunk_size or T, state.frame, self.config.causal, True, latents.device,
                                      commit)  # fmt: skip
        # The residual stream in the weights' dtype: under autocast the patch embedding gives bf16 tokens and
        # every block's residual add makes them fp32 again, so this only spares a compiled first block its
        # own dtype variant (same numbers: bf16 -> fp32 is exact).
        x, blocks, last = inp.x.to(self.model.patch_embed.weight.dtype), [], len(self.model.blocks) - 1
        if self.config.compile:  # passes past the sink look alike to a compiled block (no recompiles)
            ctx = ctx.past_sink()
        for i, (block, bs) in enumerate(zip(self.model.blocks, state.blocks)):
            fwd = causal_block_forward if self._compiled is None else self._compiled[int(block.is_softmax)]
            x, new = fwd(block, x, inp, ctx, bs, caption.kv[i], output or i < last)
            blocks.append(new)
        out = self.model.output_head(x, inp) if output else None
        if not commit:
            return out, None
        frames = None if state.row_frames is None else tuple(f + commit for f in state.row_frames)
        return out, WMStreamState(blocks, state.frame + commit, has_cam, frames)

    def forward_chunk(
        self, state: WMStreamState, latents: torch.Tensor, timesteps: torch.Tensor, text: WMText,
        camera: WMCameraInputs | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """The model's prediction for a chunk (B, C, T, H, W) at per-frame timesteps (B, T) (model units,
        0..1000), appended to `state`, which is not changed."""
        return self._pass(state, latents, timesteps, text, camera, commit=0)[0]

    def advance(
        self, state: WMStreamState, clean: torch.Tensor, text: WMText, camera: WMCameraInputs | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> WMStreamState:  # fmt: skip
        """The state after appending the chunk `clean` (B, C, T, H, W): one pass at `timesteps` (default 0,
        i.e. clean context)."""
        if timesteps is None:
            timesteps = clean.new_zeros(clean.shape[0], clean.shape[2])
        return self._pass(state, clean, timesteps, text, camera, output=False)[1]

    # 3. Sampling a chunk.
    def denoise_chunk(
        self,
        state: WMStreamState,
        noise: torch.Tensor,
        text: WMText,
        camera: WMCameraInputs | None = None,
        *,
        first_frame: torch.Tensor | None = None,
        negative: WMText | None = None,
        schedule: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample the next chunk (B, C, T, H, W) from standard normal `noise` without changing `state`.

        first_frame (B, C, H, W): the stream's anchor image latent; only at frame 0, where the chunk's first
        frame is pinned to it (timestep min(t, 1000·(1 − mask)) = 0, so every sampler step keeps it).
        schedule: (N + 1, B, T) per-frame times in the sampler's units (None: the built-in schedule for
        all frames). No host syncs: the schedule is not validated here.
        """
        if first_frame is not None and (state.ragged or state.frame != 0):
            raise ValueError(f"first_frame anchors frame 0, the stream is at frame {state.frame}")
        guided = self.config.guidance_scale != 1.0
        if guided and negative is None:
            raise ValueError("guidance_scale != 1 needs negative text")
        run_state = state.repeat(2) if guided else state
        run_text = text.repeat_for_cfg(negative) if guided else text
        run_cam = camera.repeat_for_cfg() if guided and camera is not None else camera

        def forward(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.forward_chunk(run_state, xt, t, run_text, run_cam)

        return self._sample(forward, noise, first_frame, schedule, generator)

    def advance_and_denoise(
        self,
        state: WMStreamState,
        context: torch.Tensor,
        noise: torch.Tensor,
        text: WMText,
        context_camera: WMCameraInputs | None = None,
        camera: WMCameraInputs | None = None,
        *,
        context_timesteps: torch.Tensor | None = None,
        schedule: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, WMStreamState]:
        """`denoise_chunk(advance(state, context, ...), noise, ...)` and the advanced state, with the append
        folded into the first sampler pass: one chunk-causal pass over [context; x_t] (chunks of T frames,
        so the sample sees the context exactly as from the advanced state) whose state is taken after the
        context. Same numbers up to float round-off; one model pass fewer per chunk.

        context (B, C, T, H, W) at context_timesteps (B, T) (default 0); noise (B, C, T, H, W), the same T.
        Unguided only (the guided branches must not build the state from the negative text).
        """
        if self.config.guidance_scale != 1.0:
            raise ValueError("advance_and_denoise is unguided; use advance, then denoise_chunk")
        T = context.shape[2]
        context_timesteps, cams = _joined_inputs(context, noise, context_timesteps, context_camera, camera)
        advanced: list[WMStreamState] = []

        def forward(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if advanced:  # later sampler steps: from the state the first one built
                return self.forward_chunk(advanced[0], xt, t, text, camera)
            x = torch.cat([context.to(xt.dtype), xt], dim=2)  # (B, C, 2T, H, W)
            times = torch.cat([context_timesteps.to(t.dtype), t], dim=1)  # (B, 2T)
            out, new = self._pass(state, x, times, text, cams, commit=T, chunk_size=T)
            advanced.append(new)
            return out[:, :, T:]

        sample = self._sample(forward, noise, None, schedule, generator)
        if not advanced:  # a schedule without steps
            advanced.append(self.advance(state, context, text, context_camera, context_timesteps))
        return sample, advanced[0]

    def denoise_and_append(
        self,
        state: WMStreamState,
        noise: torch.Tensor,
        text: WMText,
        camera: WMCameraInputs | None = None,
        *,
        context: torch.Tensor | None = None,
        context_timesteps: torch.Tensor | None = None,
        context_camera: WMCameraInputs | None = None,
    ) -> tuple[torch.Tensor, WMStreamState]:
        """One-step sample of the next chunk from `noise` (B, C, T, H, W), and the state with that chunk
        appended *as its noise* at timestep 1000 (sigma 1): the sampling pass is the append, so a step costs
        one model pass over T frames. This is `advance(state', noise, timesteps=1000)` after
        `denoise_chunk(state', noise)`, with state' the state after the optional `context` chunk (pending
        frames at `context_timesteps`, default 0), folded into the same pass as in `advance_and_denoise`.
        A model trained with every frame after the anchor at sigma 1 (`sigma_one_prob` 1) sees exactly this
        at inference: no dreamed frame feeds back into the state, only its pass's features.

        Needs a one-step Flow-Euler sampler (the step from sigma 1 to 0: x0 = noise - v) and no guidance.
        """
        if self.config.guidance_scale != 1.0:
            raise ValueError("denoise_and_append is unguided")
        if not isinstance(self.sampler, FlowEulerSampler) or self.sampler.num_steps != 1:
            raise ValueError(f"denoise_and_append needs a one-step FlowEulerSampler, got {self.sampler!r}")
        T = noise.shape[2]
        cams = camera
        if context is not None:
            context_timesteps, cams = _joined_inputs(context, noise, context_timesteps, context_camera, camera)
        appended: list[WMStreamState] = []

        def forward(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # once: the one step
            if context is None:
                run_x, run_t = xt, t
            else:
                run_x = torch.cat([context.to(xt.dtype), xt], dim=2)  # (B, C, 2T, H, W)
                run_t = torch.cat([context_timesteps.to(t.dtype), t], dim=1)  # (B, 2T)
            out, new = self._pass(state, run_x, run_t, text, cams, chunk_size=T)  # every frame committed
            appended.append(new)
            return out[:, :, -T:]

        sample = self._sample(forward, noise, None, None, None)  # xt = noise at t = 1000 in the one pass
        return sample, appended[0]

    def _sample(
        self, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
        first_frame: torch.Tensor | None, schedule: torch.Tensor | None, generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        """The sampler loop over `forward(x_t (B, C, T, H, W), timesteps (B, T)) -> velocity` (doubled batch
        when guided: the CFG combination happens here)."""
        B, C, T, H, W = noise.shape
        dtype = torch.promote_types(noise.dtype, torch.float32)
        x = noise.to(dtype)
        sched = self.sampler.schedule(x.device, dtype)[:, None, None].expand(-1, B, T) if schedule is None \
            else schedule.to(device=x.device, dtype=dtype)  # (N + 1, B, T)  # fmt: skip
        # 1. Anchor: the first frame of the stream is given and stays clean (time 0 in every row).
        clean_mask = torch.zeros(B, T, device=x.device, dtype=dtype)  # (B, T), 1 = given frame
        if first_frame is not None:
            clean_mask[:, 0] = 1.0
            sched = sched * (1.0 - clean_mask)
            x = torch.cat([first_frame.to(dtype)[:, :, None], x[:, :, 1:]], dim=2)
        sched = sched[:, :, None, :, None, None]  # (N + 1, B, 1, T, 1, 1) against (B, C, T, H, W)
        # 2. The flow denoiser: sigma (B, 1, T, 1, 1) -> velocity, from the (possibly doubled) state.
        guided = self.config.guidance_scale != 1.0
        run_mask = torch.cat([clean_mask, clean_mask]) if guided else clean_mask  # (B', T)

        def velocity(xt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            t = model_timestep(sigma.expand(xt.shape[0], 1, T, 1, 1).reshape(xt.shape[0], T))  # (B', T)
            t = image_conditioned_timesteps(t, run_mask)  # min(t, 1000·(1 − mask))
            return forward(xt, t)

        denoise = cfg_denoiser(velocity, self.config.guidance_scale) if guided else velocity
        if isinstance(self.sampler, TrigFlowSampler):
            denoise = flow_to_trigflow(denoise)
        # 3. The sampler loop (Sampler._run: `sample` would validate a custom schedule with a host sync).
        steps = range(sched.shape[0] - 1)
        return self.sampler._run(denoise, x, sched, generator, steps)


def _joined_inputs(
    context: torch.Tensor, noise: torch.Tensor, context_timesteps: torch.Tensor | None,
    context_camera: WMCameraInputs | None, camera: WMCameraInputs | None,
) -> tuple[torch.Tensor, WMCameraInputs | None]:  # fmt: skip
    """The context chunk's timesteps (B, T) (default 0: clean) and the camera inputs of [context; noise] for
    one pass over both chunks, after checking that they match (same T, cameras for both or neither)."""
    T = context.shape[2]
    if noise.shape[2] != T:
        raise ValueError(f"the context has {T} frames, the noise {noise.shape[2]}: chunks must match")
    if (context_camera is None) != (camera is None):
        raise ValueError("camera inputs must be given for both chunks or for neither")
    if context_timesteps is None:
        context_timesteps = context.new_zeros(context.shape[0], T)
    cams = None if camera is None else WMCameraInputs(
        torch.cat([context_camera.camera_conditions, camera.camera_conditions], dim=1),
        torch.cat([context_camera.chunk_plucker, camera.chunk_plucker], dim=2))  # fmt: skip
    return context_timesteps, cams
