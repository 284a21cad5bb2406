"""Trajectory data: checksummed shards on disk, torch datasets over them, generation and on-device streams.

- :mod:`~sana_world.data.shards`: ``ShardWriter``, ``verify``, ``TrajectoryDataset``, ``ShardIterable``.
- :mod:`~sana_world.data.generate`: ``generate`` (scene -> policy rollout -> render -> shards).
- :mod:`~sana_world.data.stream`: ``GPUStream``, the same trajectories rendered on the fly on a device.

Policies come from ``sana_world.controllers``, imported lazily inside the functions that roll them out.
"""

from sana_world.data.generate import (
    POLICIES,
    TrajectoryConfig,
    TrajectoryPlan,
    generate,
    make_policy,
    plan_trajectory,
    render_plan,
)
from sana_world.data.shards import (
    FORMAT_VERSION,
    ShardError,
    ShardFile,
    ShardIterable,
    ShardWriter,
    Trajectory,
    TrajectoryDataset,
    load_manifest,
    read_shard,
    verify,
    write_shard,
)
from sana_world.data.stream import GPUStream, StreamConfig

__all__ = [
    "FORMAT_VERSION", "GPUStream", "POLICIES", "ShardError", "ShardFile", "ShardIterable", "ShardWriter",
    "StreamConfig", "Trajectory", "TrajectoryConfig", "TrajectoryDataset", "TrajectoryPlan", "generate",
    "load_manifest", "make_policy", "plan_trajectory", "read_shard", "render_plan", "verify", "write_shard",
]
