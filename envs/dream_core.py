"""The batched core of the Dream envs: N cameras moving through N GT worlds, seen through the world model.

The GT world (:class:`~sana_world.envs.world.GTWorld`) still owns the camera: its dynamics, collisions
with the scene's geometry, the task's goal, reward and success are exactly those of the GT twin. What the
agent *sees* is dreamed: each step the world model (streaming SANA-WM of a zoo entry, through
:class:`~sana_world.generators.dreamer.Dreamer`) samples the next frame at the new pose from its carried
stream state. The GT frame is rendered too (rewards need its depth; ``paired`` reports PSNR / SSIM to it).

All N streams live in one batched ``DreamState`` (row i is env i) and step in one batched model pass,
whatever frame each has reached: an env that resets restarts its row (``Dreamer.restart``), and the
streams' rows then sit at different frames with their own RoPE positions and window slots
(``WMStreamState.row_frames``). The batch never changes size, so a compiled dream compiles once.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sana_world.envs.world import GTConfig, GTWorld
from sana_world.render.base import RenderOutput

__all__ = ["DreamConfig", "DreamCore", "load_models"]

_MODEL_CACHE: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class DreamConfig:
    """Attributes:
    model: zoo entry (``sana_world.zoo``) whose world model, autoencoder and image model are used.
    sampler_steps: Flow-Euler steps per frame (1 = the one-step sampler; more: sharper, slower).
    paired: also report ``psnr`` / ``ssim`` of the dream to the GT frame (and the GT frame) in ``info``.
    prompt_steps / prompt_guidance: the image model's sampler for ``reset(options={"prompt": ...})``.
    gt: the GT twin's config (task, actions, limits, split, device, renderer, ...); its frame size must
        be the model's resolution.
    bf16: dream under bf16 autocast (CUDA or CPU; ``DreamerConfig.bf16``).
    fp8: dream with the world model's wide layers in FP8 (``DreamerConfig.fp8``: the kernel on Ada / Hopper,
        an emulation elsewhere), Sol-RL-style low-precision rollouts.
    compile: dream through ``torch.compile`` (``DreamerConfig.compile``): faster steps after the first ones
        compile; frames equal the eager ones up to float round-off.
    context_sigma: the noise level at which dreamed frames re-enter the stream (``DreamerConfig``); None:
        the zoo entry's default, the level its world model was trained for.
    window_frames: recent frames the softmax blocks attend to (``DreamerConfig``); None: the zoo entry's
        default (else the trained 10). Fewer: cheaper steps, less context.
    supersample: rays a side per pixel of the GT frames (start frames, ``paired`` frames); None: the zoo
        entry's (``ZooEntry.supersample``: the frames its models were trained on). Replaces
        ``gt.supersample``.
    """

    model: str = "rooms-128"
    sampler_steps: int = 1
    paired: bool = False
    prompt_steps: int = 20
    prompt_guidance: float = 3.0
    gt: GTConfig = GTConfig(split="heldout")
    bf16: bool = False
    fp8: bool = False
    compile: bool = False
    context_sigma: float | None = None
    window_frames: int | None = None
    supersample: int | None = None

    def __post_init__(self) -> None:
        for name in ("sampler_steps", "prompt_steps"):  # numpy integers count as ints
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))
        g = self.prompt_guidance
        if isinstance(g, bool) or not isinstance(g, numbers.Real) or not 0 <= g < float("inf"):
            raise ValueError(f"prompt_guidance must be a finite number >= 0, got {g!r}")
        object.__setattr__(self, "prompt_guidance", float(g))
        if self.gt.depth:
            raise ValueError("Dream envs have no depth observation (the world model dreams RGB only)")
        c = self.context_sigma
        if c is not None and (isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0.0 <= c <= 1.0):
            raise ValueError(f"context_sigma must be None or a number in [0, 1], got {c!r}")
        w = self.window_frames
        if w is not None and (isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1):
            raise ValueError(f"window_frames must be None or an int >= 1, got {w!r}")
        if self.supersample is not None:  # checked as the GT twin checks it (GTConfig)
            dataclasses.replace(self.gt, supersample=self.supersample)


def load_models(name: str, device: torch.device) -> Any:
    """The zoo models of ``name`` on ``device`` (loaded and verified once per process)."""
    from sana_world.generators import zoo

    key = (name, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = zoo.load(name, device=device)
    return _MODEL_CACHE[key]


def fit_image(image: Any, size: int) -> torch.Tensor:
    """Any (H, W, 3) uint8 image (numpy, torch, or an RGB PIL image) -> (size, size, 3) uint8: centre square
    crop, antialiased resize. Anything else raises ValueError saying how to convert it."""
    want = "options['image'] must be a uint8 (H, W, 3) RGB array with values 0..255"
    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{want}, got {type(image).__name__}")
    if arr.ndim != 3 or arr.shape[-1] != 3:
        hint = " (a PIL image: image.convert('RGB'))" if arr.ndim == 2 or arr.ndim == 3 and arr.shape[-1] in (1, 4) \
            else ""  # fmt: skip
        raise ValueError(f"{want}, got shape {arr.shape}{hint}")
    if arr.dtype != np.uint8:
        hint = " (floats in [0, 1]: (image * 255).round().astype(np.uint8))" if arr.dtype.kind == "f" else ""
        raise ValueError(f"{want}, got {arr.dtype}{hint}")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"{want}, got an empty image of shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    H, W = x.shape[:2]
    s = min(H, W)
    x = x[(H - s) // 2:(H - s) // 2 + s, (W - s) // 2:(W - s) // 2 + s].permute(2, 0, 1)[None].float()
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


class DreamCore:
    """N dream envs: GT world for dynamics and task, world model for frames (module doc)."""

    def __init__(self, config: DreamConfig, num_envs: int) -> None:
        from sana_world.generators.dreamer import Dreamer, DreamerConfig

        self.device = torch.device(config.gt.device)
        self.models = load_models(config.model, self.device)
        ss = self.models.entry.supersample if config.supersample is None else int(config.supersample)
        self.config = config = dataclasses.replace(config, gt=dataclasses.replace(config.gt, supersample=ss))
        self.world = GTWorld(config.gt, num_envs)
        if (config.gt.width, config.gt.height) != (self.models.resolution,) * 2:
            raise ValueError(f"model {config.model!r} dreams {self.models.resolution}x{self.models.resolution} "
                             f"frames; the env asks for {config.gt.width}x{config.gt.height}")
        dream = {} if config.context_sigma is None else {"context_sigma": float(config.context_sigma)}
        if config.window_frames is not None:
            dream["window_frames"] = int(config.window_frames)
        self.dreamer = Dreamer(self.models, DreamerConfig.from_zoo(self.models.entry.dream_defaults,
                                                                   num_steps=config.sampler_steps,
                                                                   bf16=config.bf16, fp8=config.fp8,
                                                                   compile=config.compile,
                                                                   **dream))
        self.num_envs = num_envs
        self.state: Any = None  # the DreamState of all envs (row i: env i), after the first reset
        self.rgb = torch.zeros(num_envs, config.gt.height, config.gt.width, 3, dtype=torch.uint8, device=self.device)
        self.gt: RenderOutput | None = None
        self.starts: list[str] = ["gt"] * num_envs  # what each stream started from: "gt" | "image" | "prompt"
        # the dream's noise: env i's is a function of its key (drawn at its reset) and its stream's frame count
        # alone (sana_world.counter_noise), so it dreams what a single env of the same seed dreams
        from sana_world.counter_noise import counter_normal

        self._counter_normal = torch.compile(counter_normal, dynamic=False) if config.compile else counter_normal
        self.noise_keys = torch.zeros(num_envs, dtype=torch.int64, device=self.device)

    # 1. Resets.
    def reset(self, slots: list[int], rngs: list[np.random.Generator], starts: list[dict[str, Any]],
              specs: list[Any] | None = None) -> None:
        """Restart envs ``slots``: new GT scenes (``specs``, or drawn with ``rngs``), streams anchored at the GT
        frame, or at ``starts[i]["image"]`` / an image generated from ``starts[i]["prompt"]``.

        Every start is checked before anything changes (a bad image raises and the envs go on as they were).
        Each restarted env draws a new noise key from its ``rngs`` entry; the other envs' noise, and so their
        frames, go on as they would have."""
        full = sorted(slots) == list(range(self.num_envs))
        if self.state is None and not full:
            raise RuntimeError(f"the first reset must reset all {self.num_envs} envs, got {sorted(slots)}")
        # 1. the starts, checked before any change
        images = {j: fit_image(s["image"], self.config.gt.width) for j, s in enumerate(starts) if "image" in s}
        if any("prompt" in s for s in starts) and self.models.image is None:
            raise ValueError(f"zoo entry {self.config.model!r} has no image model: prompt starts are unavailable")
        # 2. new scenes and their first frames
        self.world.reset_slots(slots, rngs, specs if specs is not None else [None] * len(slots))
        self.gt = self.world.render() if full or self.gt is None else self.world.render(slots, onto=self.gt)
        self.world.observe_start(slots, self.gt)
        anchors = self.gt.rgb[slots].clone()  # (n, H, W, 3)
        captions = [self._caption(i) for i in slots]
        for j, (slot, start) in enumerate(zip(slots, starts)):
            self.starts[slot] = "gt"
            if j in images:
                anchors[j] = images[j].to(self.device)
                self.starts[slot] = "image"
            elif "prompt" in start:
                anchors[j] = self._from_prompt(str(start["prompt"]), int(rngs[j].integers(2**31)))
                captions[j] = str(start["prompt"])
                self.starts[slot] = "prompt"
        idx = torch.tensor(slots, dtype=torch.long, device=self.device)
        keys = [int(rngs[j].integers(2**62)) for j in range(len(slots))]
        self.noise_keys[idx] = torch.tensor(keys, dtype=torch.int64, device=self.device)
        c2w = self.world.c2w32()[slots]
        # 3. the streams
        if self.state is None or full:  # a reset of every env starts every stream, as the first one did
            order = sorted(range(len(slots)), key=lambda j: slots[j])  # rows in env order
            self.state = self.dreamer.start(anchors[order], c2w[order], self.world.K,
                                            [captions[j] for j in order])  # fmt: skip
        else:  # partial resets (autoresets) restart their rows; the other streams go on (a restarted row
            # dreams as a fresh stream up to float round-off: its ragged pass masks per row)
            self.state = self.dreamer.restart(self.state, list(slots), anchors, c2w, self.world.K, captions)
        self.rgb[slots] = anchors

    def _caption(self, i: int) -> str:
        from sana_world.worlds.captions import caption

        return caption(self.world.specs[i])

    def _from_prompt(self, prompt: str, seed: int) -> torch.Tensor:
        from sana_world.generators.image.pipeline import ImagePipeline, ImagePipelineConfig

        # the flow shift the image model trained with (its export records it; 2.0 for the shipped one)
        meta = json.loads((self.models.entry.folder("image") / "config.json").read_text())
        shift = float(meta.get("training", {}).get("shift", 2.0))
        pipe = ImagePipeline(self.models.image, self.models.text, self.models.codec,
                             ImagePipelineConfig(sampler="euler", num_steps=self.config.prompt_steps, shift=shift,
                                                 guidance_scale=self.config.prompt_guidance))
        gen = torch.Generator(self.device).manual_seed(seed)
        size = self.config.gt.width
        return pipe([prompt], size, size, generator=gen)[0].to(self.device)

    # 2. Steps.
    def step(self, twist: torch.Tensor, keys_mode: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move every camera by ``twist`` (N, 6), dream every env's next frame and score the step on the GT world;
        returns collisions, rewards and successes (N,).

        A paired step renders the GT frames (``self.gt``). An unpaired one renders only the pixels its task's
        score reads (``BatchedTask.view``: explore every 4th pixel's hit, objectnav the centre window, pointnav
        none), shadowless; ``self.gt`` then keeps the last full render's (a reset's or a paired step's)."""
        if self.state is None:
            raise RuntimeError("reset first")
        world = self.world
        collided = world.move(twist, keys_mode=keys_mode)
        if self.config.paired:
            self.gt = world.render()
            reward, success = world.score(self.gt, collided)
        elif world.view is not None:
            reward, success = world.score(world.render_view(world.view), collided, viewed=True)
        else:  # the task reads positions only: self.gt is not read
            reward, success = world.score(self.gt, collided)
        s = self.dreamer.config.context_sigma  # only 0 < s < 1 re-noises a frame with noise of its own
        noise, context_noise = self._noise(0), (self._noise(1) if 0.0 < s < 1.0 else None)
        rgb, self.state = self.dreamer.step(self.state, world.c2w32(), noise=noise,
                                            context_noise=context_noise)  # one pass, every env
        self.rgb.copy_(rgb)
        return collided, reward, success

    def _noise(self, stream: int) -> torch.Tensor:
        """This step's standard normal latents (N, C, 1, h, w) of ``stream`` (0: the sampler's start, 1: the
        context re-noising), row i from env i's key and its stream's frame count (1 at its start, one more
        each step)."""
        C, h, w = self.state.last.shape[1:]
        frames = torch.tensor(self.state.frames, dtype=torch.int64, device=self.device)  # (N,)
        z = self._counter_normal(self.noise_keys, frames, stream, C * h * w)  # (N, C*h*w)
        return z.view(self.num_envs, C, 1, h, w)

    def frame(self) -> RenderOutput:
        """The last full GT render (see :meth:`step`) with (a copy of) the dreamed RGB in place of the rendered
        one: observations handed out never change when later steps write the frame buffer."""
        if self.gt is None:
            raise RuntimeError("reset first")
        return dataclasses.replace(self.gt, rgb=self.rgb.clone())
