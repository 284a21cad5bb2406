"""Generate ground-truth trajectory datasets: sample a world, roll out a camera policy, render, write shards.

Trajectory ``i`` of a run with ``seed`` uses the scene ``sample_scene(seed + i, world)`` and a start /
policy RNG seeded from ``(seed + i, 1)`` only, so it is the same whatever the shard size, the number of
trajectories or the order of generation (and :class:`~sana_world.data.stream.GPUStream` with the same
seed produces the same cameras and actions).

Layering: core ``sana_world`` modules never import ``sana_world.controllers`` at import time. The
policies live there, so :func:`make_policy` and :func:`plan_trajectory` import them lazily, inside
the functions (the CLI is the driver that calls them); a policy object with ``reset(spec, state, rng)``
and ``act(state)`` may be passed instead of a name.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sana_world.camera import CameraState, TwistLimits, intrinsics_from_fov
from sana_world.data.shards import ShardWriter, Trajectory, load_manifest
from sana_world.worlds import SceneSpec, WorldConfig, caption, sample_scene
from sana_world.worlds.sampler import HELDOUT_START
from sana_world.worlds.collision import SceneSDF, free_positions

POLICIES = ("explore", "keys")
_RNG_TAG = 1  # second word of each trajectory's SeedSequence, keeps it apart from the scene sampler's


def heldout_seeds(seed: int, num_trajectories: int) -> range:
    """The held-out scene seeds (>= :data:`HELDOUT_START`) among ``seed .. seed + num_trajectories - 1``."""
    return range(max(seed, HELDOUT_START), max(seed + num_trajectories, HELDOUT_START))


@dataclass(frozen=True)
class TrajectoryConfig:
    """How one trajectory is planned: the camera policy, its limits and the start pose."""

    steps: int = 120
    policy: str = "explore"  # "explore" | "keys" (controllers.RandomExplorer / KeyScriptExplorer)
    # a policy object passed to plan_trajectory / generate overrides this name
    limits: TwistLimits | None = None  # None: the policy's own (TwistLimits() / the key DSL's speeds)
    eye_height: float = 1.5  # metres above the floor at the start
    clearance: float = 0.3  # the rollout keeps the camera this far from any solid
    start_margin: float = 0.2  # the start is at least clearance + this from any solid
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.clearance <= 0 or self.start_margin < 0:
            raise ValueError(f"clearance must be > 0 and start_margin >= 0, "
                             f"got {self.clearance} and {self.start_margin}")


@dataclass
class TrajectoryPlan:
    """Scene, cameras and actions of one trajectory, before rendering."""

    spec: SceneSpec
    c2w: np.ndarray  # (T+1, 4, 4) float32
    actions: np.ndarray  # (T, 6) float32
    caption: str
    seed: int


def make_policy(policy: Any, limits: TwistLimits | None = None) -> Any:
    """A policy for a name in :data:`POLICIES` (with ``limits`` if given); objects are returned unchanged.

    Imports :mod:`sana_world.controllers` here (lazily) to keep core free of it at import time.
    """
    if not isinstance(policy, str):
        if not (hasattr(policy, "reset") and hasattr(policy, "act")):
            raise TypeError("policies need reset(spec, state, rng) and act(state), "
                            f"got {type(policy).__name__}")
        return policy
    from sana_world import controllers

    extra = {} if limits is None else {"limits": limits}
    if policy == "explore":
        return controllers.RandomExplorer(controllers.ExplorerConfig(**extra))
    if policy == "keys":
        return controllers.KeyScriptExplorer(controllers.KeyScriptConfig(**extra))
    raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")


def policy_limits(policy: Any, limits: TwistLimits | None = None) -> TwistLimits:
    """Limits to integrate ``policy``'s twists with: its config's, else ``limits``, else the default."""
    own = getattr(getattr(policy, "config", None), "limits", None)
    if own is not None and limits is not None and own != limits:
        raise ValueError(f"limits {limits} differ from the policy's own {own}; the twist would be misread")
    return own or limits or TwistLimits()


def start_state(spec: SceneSpec, rng: np.random.Generator, eye_height: float,
                clearance: float) -> CameraState:
    """A free start at eye height, heading towards its room's centre ± 60°."""
    pos = free_positions(spec, rng, 1, height=eye_height, clearance=clearance)[0]
    room = spec.rooms[spec.room_at(pos[0], pos[2]) or 0]
    dx, dz = (room.x0 + room.x1) / 2 - pos[0], (room.z0 + room.z1) / 2 - pos[2]
    yaw = math.atan2(-dx, dz) + float(rng.uniform(-math.pi / 3, math.pi / 3))
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return CameraState(position=np.asarray(pos, dtype=np.float64), yaw=yaw)


def plan_trajectory(scene_seed: int, cfg: TrajectoryConfig, policy: Any = None) -> TrajectoryPlan:
    """Sample the scene of ``scene_seed``, a start, and roll out the policy (``cfg.policy`` if None)."""
    from sana_world.controllers import rollout

    spec = sample_scene(scene_seed, cfg.world)
    rng = np.random.default_rng([scene_seed, _RNG_TAG])
    start = start_state(spec, rng, cfg.eye_height, cfg.clearance + cfg.start_margin)
    pol = make_policy(cfg.policy if policy is None else policy, cfg.limits)
    limits = policy_limits(pol, cfg.limits)
    # rollout resets the policy with rng (and shares its SDF) before the first step
    poses, actions = rollout(spec, pol, start, cfg.steps, limits, SceneSDF(spec), clearance=cfg.clearance,
                             rng=rng)
    poses = np.asarray(poses, dtype=np.float32)  # (T+1, 4, 4)
    actions = np.asarray(actions, dtype=np.float32)  # (T, 6)
    if poses.shape != (cfg.steps + 1, 4, 4) or actions.shape != (cfg.steps, 6):
        raise RuntimeError(f"rollout returned poses {poses.shape} and actions {actions.shape} for "
                           f"{cfg.steps} steps (expected ({cfg.steps + 1}, 4, 4) and ({cfg.steps}, 6))")
    return TrajectoryPlan(spec=spec, c2w=poses, actions=actions, caption=caption(spec), seed=scene_seed)


def render_plan(renderer: Any, plan: TrajectoryPlan, K: torch.Tensor, height: int, width: int,
                chunk: int = 16, progress: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB (T+1, H, W, 3) uint8 and depth (T+1, H, W) float32 of every pose, ``chunk`` frames per call.

    ``progress`` (a tqdm bar, say) gets ``update(frames)`` after every call.
    """
    c2w = torch.from_numpy(plan.c2w)  # (T+1, 4, 4)
    rgbs, depths = [], []
    for a in range(0, c2w.shape[0], chunk):  # 1. bounded batches keep renderer memory flat
        out = renderer.render(plan.spec, c2w[a:a + chunk], K, height, width)
        rgbs.append(out.rgb.cpu().numpy())
        depths.append(out.depth.float().cpu().numpy())
        if progress is not None:
            progress.update(out.rgb.shape[0])
    return np.concatenate(rgbs), np.concatenate(depths)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with an explicit index ("cuda" -> "cuda:0"): tensors report indexed devices."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d


def default_renderer(device: str | torch.device = "cpu") -> Any:
    from sana_world.render.torch_caster import TorchRenderer

    return TorchRenderer(device=resolve_device(device))


def generate(out_dir: str | os.PathLike[str], num_trajectories: int, steps: int, height: int = 128,
             width: int = 128, shard_size: int = 32, seed: int = 0, policy: Any = "explore",
             world: WorldConfig = WorldConfig(), renderer: Any = None, device: str | torch.device = "cpu",
             progress: bool = True, fov_deg: float = 90.0, limits: TwistLimits | None = None,
             overwrite: bool = False, allow_heldout: bool = False) -> dict[str, Any]:
    """Render ``num_trajectories`` trajectories of ``steps`` actions into shards under ``out_dir``.

    ``renderer`` defaults to ``TorchRenderer(device)``; ``policy`` is "explore", "keys" or a policy
    object; ``limits`` default to the policy's own (the manifest records the ones used, as actions are
    normalised twists). Returns the manifest (also written to ``out_dir/manifest.json``).
    Deterministic for a seed. Scene seeds ``seed + i`` in the held-out range (:data:`HELDOUT_START` on)
    raise ValueError unless ``allow_heldout`` (a dataset of held-out scenes, for scoring only).
    """
    from tqdm import tqdm

    if num_trajectories < 1:
        raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}")
    held = heldout_seeds(seed, num_trajectories)
    if held and not allow_heldout:
        raise ValueError(f"scene seeds {seed}..{seed + num_trajectories - 1} include {len(held)} held-out "
                         f"scene(s) (seeds >= {HELDOUT_START:,} are kept for scoring models); use seeds "
                         f"below {HELDOUT_START:,}, or pass allow_heldout=True to write held-out scenes on "
                         "purpose")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    cfg = TrajectoryConfig(steps=steps, policy=policy if isinstance(policy, str) else "explore",
                           limits=limits, world=world)
    pol = make_policy(policy, limits)
    cfg = dataclasses.replace(cfg, limits=policy_limits(pol, limits))  # record the limits actually used
    renderer = default_renderer(device) if renderer is None else renderer
    K = intrinsics_from_fov(width, height, fov_deg)  # (3, 3)
    config = {
        "generator": "sana_world.data.generate", "seed": seed, "num_trajectories": num_trajectories,
        "steps": steps, "height": height, "width": width, "fov_deg": fov_deg,
        "policy": policy if isinstance(policy, str) else type(policy).__name__,
        "renderer": type(renderer).__name__, "trajectory": _jsonable(dataclasses.asdict(cfg)),
    }
    with ShardWriter(out_dir, shard_size=shard_size, config=config, overwrite=overwrite) as writer:
        bar = tqdm(total=num_trajectories * (steps + 1), desc="generate", unit="frame", disable=not progress)
        for i in range(num_trajectories):  # 1. plan, 2. render, 3. buffer (the writer flushes full shards)
            bar.set_postfix_str(f"trajectory {i + 1}/{num_trajectories}")
            plan = plan_trajectory(seed + i, cfg, pol)
            rgb, depth = render_plan(renderer, plan, K, height, width, progress=bar)
            writer.add(Trajectory(rgb=rgb, depth=depth, c2w=plan.c2w, K=K.numpy(), actions=plan.actions,
                                  caption=plan.caption, spec_json=plan.spec.to_json(), seed=plan.seed))
        bar.close()
    return load_manifest(Path(out_dir))


def _jsonable(x: Any) -> Any:
    """Tuples to lists, recursively (dataclasses.asdict output to JSON-ready)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
