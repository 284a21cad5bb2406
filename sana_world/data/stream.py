"""On-the-fly trajectory batches rendered straight on the device: no disk, same layout as the dataset.

:class:`GPUStream` plans ``batch_size`` trajectories on the CPU (scene sampling and the policy rollout,
exactly as :func:`~sana_world.data.generate.generate` does for the same seed), packs their scenes into
the torch renderer's multi-scene tensors and renders every frame of the batch in a few packed calls.
Batch ``b`` holds trajectories ``b * batch_size + k`` of the seed, so a stream and a dataset generated
with the same seed show the same scenes, cameras and actions.

Each batch is the collated form of :class:`~sana_world.data.shards.TrajectoryDataset` items, tensors on
``device``::

    rgb      uint8   (B, T+1, H, W, 3)     depth    float32 (B, T+1, H, W)   c2w  float32 (B, T+1, 4, 4)
    K        float32 (B, 3, 3)             actions  float32 (B, T, 6)        seed int64 (B,)
    index    int64   (B,)                  start    int64 (B,) zeros
    caption  list[str]                     spec     list[str] (SceneSpec JSON)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from sana_world.camera import TwistLimits, intrinsics_from_fov
from sana_world.data.generate import (
    TrajectoryConfig,
    make_policy,
    plan_trajectory,
    policy_limits,
    resolve_device,
)
from sana_world.worlds import WorldConfig


@dataclass(frozen=True)
class StreamConfig:
    """What :class:`GPUStream` renders."""

    batch_size: int
    steps: int
    height: int = 128
    width: int = 128
    seed: int = 0
    policy: str = "explore"  # "explore" | "keys"
    fov_deg: float = 90.0
    world: WorldConfig = field(default_factory=WorldConfig)
    limits: TwistLimits | None = None  # None: the policy's own
    num_batches: int | None = None  # None: endless
    render_chunk: int = 1024  # frames per packed render call (bounds the renderer's output buffers)
    shadows: bool = True  # for the default renderer; a renderer passed in keeps its own setting

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, got {self.height}x{self.width}")
        if self.num_batches is not None and self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1 or None, got {self.num_batches}")
        if self.render_chunk < 1:
            raise ValueError(f"render_chunk must be >= 1, got {self.render_chunk}")
        TrajectoryConfig(steps=self.steps, policy=self.policy)  # validates steps and policy


class GPUStream:
    """Endless (or ``num_batches`` long) iterator of rendered trajectory batches on ``device``.

    Works on any torch device, CPU included. ``policy`` may be a name or a policy object (see
    :func:`~sana_world.data.generate.make_policy`).
    """

    def __init__(self, batch_size: int, steps: int, height: int = 128, width: int = 128,
                 device: str | torch.device = "cpu", world: WorldConfig = WorldConfig(), seed: int = 0,
                 policy: Any = "explore", *, fov_deg: float = 90.0, limits: TwistLimits | None = None,
                 num_batches: int | None = None, render_chunk: int = 1024, shadows: bool = True,
                 renderer: Any = None) -> None:
        self.cfg = StreamConfig(batch_size=batch_size, steps=steps, height=height, width=width, seed=seed,
                                policy=policy if isinstance(policy, str) else "explore", fov_deg=fov_deg,
                                world=world, limits=limits, num_batches=num_batches,
                                render_chunk=render_chunk, shadows=shadows)
        self.device = resolve_device(device)
        self._policy = make_policy(policy, limits)
        self._traj_cfg = TrajectoryConfig(steps=steps, policy=self.cfg.policy, world=world,
                                          limits=policy_limits(self._policy, limits))
        self.K = intrinsics_from_fov(width, height, fov_deg).to(self.device)  # (3, 3)
        if renderer is None:
            from sana_world.render.torch_caster import TorchRenderer

            renderer = TorchRenderer(device=self.device, shadows=shadows)
        if not hasattr(renderer, "render_packed"):
            raise TypeError("GPUStream needs a renderer with render_packed (a TorchRenderer), "
                            f"got {type(renderer).__name__}")
        self.renderer = renderer

    def __len__(self) -> int:
        if self.cfg.num_batches is None:
            raise TypeError("an endless GPUStream has no length (pass num_batches)")
        return self.cfg.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = itertools.count() if self.cfg.num_batches is None else range(self.cfg.num_batches)
        for b in batches:
            yield self.batch(b)

    def batch(self, b: int) -> dict[str, Any]:
        """Batch number ``b`` (deterministic: trajectories ``seed + b * batch_size + k``)."""
        from sana_world.render.torch_caster import pack_scenes

        cfg, dev = self.cfg, self.device
        B, F, H, W = cfg.batch_size, cfg.steps + 1, cfg.height, cfg.width
        first = b * B
        # 1. plan on the CPU: scenes, starts, policy rollouts
        plans = [plan_trajectory(cfg.seed + first + k, self._traj_cfg, self._policy) for k in range(B)]
        # 2. pack the scenes and render every frame of the batch, render_chunk frames per call
        packed = pack_scenes([p.spec for p in plans], getattr(self.renderer, "device", dev))
        c2w = torch.stack([torch.from_numpy(p.c2w) for p in plans]).to(dev)  # (B, F, 4, 4)
        flat_c2w = c2w.reshape(B * F, 4, 4)
        scene_index = torch.arange(B, device=dev).repeat_interleave(F)  # (B * F,)
        rgb = torch.empty(B * F, H, W, 3, dtype=torch.uint8, device=dev)
        depth = torch.empty(B * F, H, W, dtype=torch.float32, device=dev)
        for a in range(0, B * F, cfg.render_chunk):
            z = min(a + cfg.render_chunk, B * F)
            out = self.renderer.render_packed(packed, scene_index[a:z], flat_c2w[a:z], self.K, H, W)
            rgb[a:z] = out.rgb
            depth[a:z] = out.depth
        # 3. the dataset's dict layout, batched
        return {
            "rgb": rgb.reshape(B, F, H, W, 3),
            "depth": depth.reshape(B, F, H, W),
            "c2w": c2w,
            "K": self.K.expand(B, 3, 3).clone(),
            "actions": torch.stack([torch.from_numpy(p.actions) for p in plans]).to(dev),  # (B, T, 6)
            "seed": torch.tensor([p.seed for p in plans], dtype=torch.int64, device=dev),
            "index": torch.arange(first, first + B, dtype=torch.int64, device=dev),
            "start": torch.zeros(B, dtype=torch.int64, device=dev),
            "caption": [p.caption for p in plans],
            "spec": [p.spec.to_json() for p in plans],
        }
