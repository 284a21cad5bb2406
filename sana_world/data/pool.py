"""A device-resident pool of rendered GT trajectories for training: render once, sample clips every step.

Rendering every training batch afresh costs more than the small models train (the eager torch caster
gives ~1,250 frames/s with shadows on one H100), so the trainers can instead draw from a pool of
``trajectories`` trajectories rendered once at the start of a run, spread over the ranks. Trajectories
are planned on the CPU in parallel worker processes (scene sampling and the controller rollout are
NumPy) and rendered on the device in packed batches by :class:`~sana_world.data.GPUStream`.

The pool is a pure function of ``(seed, rank, world_size, config)``: rank ``r`` holds the stream batches
``r, r + W, r + 2W, ...`` of each policy, so a resumed run rebuilds exactly the pool it trained on, and
the clips of step ``n`` come from a generator seeded by ``(seed, n, rank)``.

Layout on the device (N trajectories of F = steps + 1 frames)::

    rgb      uint8   (N, F, H, W, 3)    c2w  float32 (N, F, 4, 4)    K  float32 (3, 3)
    captions list[str] (N,)             specs list[str] (N,) SceneSpec JSON
"""

from __future__ import annotations

import concurrent.futures as futures
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sana_world.camera import intrinsics_from_fov
from sana_world.data.generate import TrajectoryConfig, TrajectoryPlan, make_policy, plan_trajectory
from sana_world.worlds import WorldConfig

__all__ = ["ClipPool", "PoolConfig", "plan_many"]

POOL_POLICIES = ("explore", "keys")


@dataclass(frozen=True)
class PoolConfig:
    """Attributes:
    trajectories: trajectories in the whole pool (all ranks together); each rank renders its share.
    steps: steps per trajectory (F = steps + 1 frames).
    size: frame side in pixels (square frames).
    fov_deg: horizontal field of view.
    keys_fraction: share of trajectories driven by the key-DSL policy; the rest use random exploration
        with revisits.
    workers: CPU processes planning trajectories (0: plan in this process).
    render_batch: trajectories per packed render call.
    shadows: render shadows (the GT envs do).
    supersample: render s·size pixels a side and average each s×s block (SSAA with a box filter: antialiased
        frames, what a camera integrating over its pixels sees; 1: one ray a pixel, the GT envs' frames).
    seed: the pool's seed; trajectory k of policy p uses scene seed ``seed + offset(p) + k``.
    """

    trajectories: int = 1024
    steps: int = 40
    size: int = 128
    fov_deg: float = 90.0
    keys_fraction: float = 0.25
    workers: int = 8
    render_batch: int = 32
    shadows: bool = True
    supersample: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("trajectories", "steps", "size", "render_batch", "supersample"):
            if getattr(self, name) < 1:
                raise ValueError(f"PoolConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.keys_fraction <= 1.0:
            raise ValueError(f"PoolConfig.keys_fraction must lie in [0, 1], got {self.keys_fraction}")
        if self.workers < 0:
            raise ValueError(f"PoolConfig.workers must be >= 0, got {self.workers}")


# Policy p's scene seeds start at seed + _POLICY_OFFSET * p (far apart, all below the held-out range).
_POLICY_OFFSET = 100_000


def _plan(args: tuple[int, int, str]) -> TrajectoryPlan:
    seed, steps, policy = args
    return plan_trajectory(seed, TrajectoryConfig(steps=steps, policy=policy, world=WorldConfig()),
                           make_policy(policy, None))


def plan_many(seeds: list[int], steps: int, policy: str, workers: int) -> list[TrajectoryPlan]:
    """Plans for ``seeds`` (in order), in ``workers`` processes (0: here)."""
    jobs = [(s, steps, policy) for s in seeds]
    if workers == 0 or len(jobs) < 2:
        return [_plan(j) for j in jobs]
    import multiprocessing as mp

    with futures.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        return list(ex.map(_plan, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


class ClipPool:
    """This rank's share of a pool of rendered trajectories (module doc)."""

    def __init__(self, config: PoolConfig, device: str | torch.device = "cpu", rank: int = 0,
                 world_size: int = 1, renderer: Any = None, progress: bool = True) -> None:
        from sana_world.render.base import area_average
        from sana_world.render.torch_caster import TorchRenderer, pack_scenes

        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.config, self.device = config, torch.device(device)
        cfg = config
        # 1. this rank's trajectories: (policy, scene seed), round-robin over ranks
        n_keys = round(cfg.trajectories * cfg.keys_fraction)
        todo = [("explore", cfg.seed + k) for k in range(cfg.trajectories - n_keys)]
        todo += [("keys", cfg.seed + _POLICY_OFFSET + k) for k in range(n_keys)]
        mine = todo[rank::world_size]
        if not mine:
            raise ValueError(f"a pool of {cfg.trajectories} trajectories leaves rank {rank} of {world_size} none")
        # 2. plan on the CPU, in parallel
        plans: list[TrajectoryPlan] = []
        for policy in POOL_POLICIES:
            seeds = [s for p, s in mine if p == policy]
            plans += plan_many(seeds, cfg.steps, policy, cfg.workers) if seeds else []
        # 3. render on the device, render_batch trajectories per packed call
        renderer = renderer or TorchRenderer(device=self.device, shadows=cfg.shadows)
        self.K = intrinsics_from_fov(cfg.size, cfg.size, cfg.fov_deg).to(self.device)  # (3, 3)
        N, F, S, ss = len(plans), cfg.steps + 1, cfg.size, cfg.supersample
        K_render = intrinsics_from_fov(S * ss, S * ss, cfg.fov_deg).to(self.device)  # (3, 3)
        self.rgb = torch.empty(N, F, S, S, 3, dtype=torch.uint8, device=self.device)
        self.c2w = torch.stack([torch.from_numpy(p.c2w) for p in plans]).to(self.device)  # (N, F, 4, 4)
        bar = tqdm(total=N * F, desc=f"render pool (rank {rank})", unit="frame", disable=not progress)
        for a in range(0, N, cfg.render_batch):
            z = min(a + cfg.render_batch, N)
            packed = pack_scenes([p.spec for p in plans[a:z]], self.device)
            index = torch.arange(z - a, device=self.device).repeat_interleave(F)  # ((z - a) F,)
            out = renderer.render_packed(packed, index, self.c2w[a:z].reshape(-1, 4, 4), K_render, S * ss, S * ss)
            rgb = out.rgb if ss == 1 else area_average(out.rgb, S)  # ((z - a) F, S, S, 3)
            self.rgb[a:z] = rgb.view(z - a, F, S, S, 3)
            bar.update((z - a) * F)
        bar.close()
        self.captions = [p.caption for p in plans]
        self.specs = [p.spec.to_json() for p in plans]
        self.seeds = [p.seed for p in plans]

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def frames_per_trajectory(self) -> int:
        return self.rgb.shape[1]

    def clips(self, length: int, count: int, generator: torch.Generator) -> dict[str, Any]:
        """``count`` random windows of ``length`` frames: rgb (B, L, H, W, 3), c2w (B, L, 4, 4), K (B, 3, 3),
        captions, and index (trajectory, frame) (B, L) each, to gather per-frame extras; trajectories and
        start frames drawn with ``generator`` (a CPU generator)."""
        F = self.frames_per_trajectory
        if not 1 <= length <= F:
            raise ValueError(f"clip length {length} outside 1..{F} (frames per pooled trajectory)")
        traj = torch.randint(0, len(self), (count,), generator=generator)  # (B,)
        start = torch.randint(0, F - length + 1, (count,), generator=generator)  # (B,)
        frame = start[:, None] + torch.arange(length)[None]  # (B, L)
        ti, fi = traj[:, None].expand_as(frame).to(self.device), frame.to(self.device)
        return {"rgb": self.rgb[ti, fi], "c2w": self.c2w[ti, fi], "index": (ti, fi),
                "K": self.K.expand(count, 3, 3).clone(), "captions": [self.captions[int(t)] for t in traj]}

    def frames(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """``count`` random single frames (B, H, W, 3) uint8 and their captions."""
        out = self.clips(1, count, generator)
        return out["rgb"][:, 0], out["captions"]


def pool_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of step ``step`` on ``rank`` (clip choice only; noise uses the trainers' own)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, rank, 11]).generate_state(1)[0]))
