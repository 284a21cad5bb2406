"""Signed distances to a SceneSpec's solids: keeps cameras out of walls and objects, finds free spawn points.

Distances are exact for boxes, spheres and capped cylinders; ellipsoids and cones use conservative bounds
(never larger than the true distance), so "distance > clearance" always means "really free".
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sana_world.worlds.spec import SceneSpec


class SceneSDF:
    """Vectorised signed distance (numpy, float64) from points to every primitive of a scene."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        boxes, rounds = [], []  # boxes: (center, half, yaw); rounds: capped vertical cylinders (center, r, hh)
        spheres = []
        for p, _ in spec.primitives():
            if p.shape == "box":
                boxes.append((*p.center, *p.size, p.yaw))
            elif p.shape == "sphere":
                spheres.append((*p.center, p.size[0]))
            elif p.shape == "ellipsoid":
                # the smallest radius sphere bound from inside is not conservative; use the enclosing
                # vertical cylinder instead (its distance never exceeds the ellipsoid's)
                rounds.append((*p.center, max(p.size[0], p.size[2]), p.size[1]))
            else:  # cylinder, cone (bounded by its cylinder)
                rounds.append((*p.center, p.size[0], p.size[1]))
        self._boxes = np.array(boxes, dtype=np.float64).reshape(-1, 7)
        self._spheres = np.array(spheres, dtype=np.float64).reshape(-1, 4)
        self._cyl = np.array(rounds, dtype=np.float64).reshape(-1, 5)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (N,) of points (N, 3) to the nearest solid (negative inside)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full(p.shape[0], np.inf)
        if len(self._boxes):
            b = self._boxes
            d = p[:, None, :] - b[None, :, :3]  # (N, P, 3)
            c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
            # world -> local: Ry(yaw)^T
            lx = c * d[..., 0] - s * d[..., 2]
            lz = s * d[..., 0] + c * d[..., 2]
            q = np.abs(np.stack([lx, d[..., 1], lz], axis=-1)) - b[None, :, 3:6]
            outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
            inside = np.minimum(q.max(axis=-1), 0.0)
            out = np.minimum(out, (outside + inside).min(axis=1))
        if len(self._spheres):
            s_ = self._spheres
            d = np.linalg.norm(p[:, None, :] - s_[None, :, :3], axis=-1) - s_[None, :, 3]
            out = np.minimum(out, d.min(axis=1))
        if len(self._cyl):
            c_ = self._cyl
            dxz = np.hypot(p[:, None, 0] - c_[None, :, 0], p[:, None, 2] - c_[None, :, 2]) - c_[None, :, 3]
            dy = np.abs(p[:, None, 1] - c_[None, :, 1]) - c_[None, :, 4]
            q = np.stack([dxz, dy], axis=-1)
            d = np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)
            out = np.minimum(out, d.min(axis=1))
        return out

    def is_free(self, point: np.ndarray, clearance: float) -> bool:
        """Whether a sphere of radius ``clearance`` at ``point`` touches nothing and lies inside a room."""
        x, _, z = (float(v) for v in np.asarray(point).reshape(3))
        if self.spec.room_at(x, z) is None:
            return False
        return bool(self.distance(np.asarray(point).reshape(1, 3))[0] > clearance)


def free_positions(spec: SceneSpec, rng: np.random.Generator, n: int, height: float = 1.5,
                   clearance: float = 0.3, max_tries: int = 10_000) -> np.ndarray:
    """``n`` random free camera positions (n, 3) at eye ``height`` above the floor (y = -height)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sdf = SceneSDF(spec)
    (x0, _, z0), (x1, _, z1) = spec.bounds()
    found: list[np.ndarray] = []
    for _ in range(math.ceil(max_tries / 64)):
        cand = np.stack([rng.uniform(x0, x1, 64), np.full(64, -height), rng.uniform(z0, z1, 64)], axis=1)
        ok = sdf.distance(cand) > clearance
        ok &= np.array([spec.room_at(c[0], c[2]) is not None for c in cand])
        found.extend(cand[ok])
        if len(found) >= n:
            return np.stack(found[:n])
    raise RuntimeError(f"could not find {n} free positions with clearance {clearance} in {max_tries} tries")


class PackedSDF:
    """Torch twin of :class:`SceneSDF` for a batch of scenes: point i is tested against scene i.

    Used by the batched environments so collision checks stay on the device (no host sync per step).
    Padding primitives sit far away and never win the minimum.
    """

    FAR = 1.0e6

    def __init__(self, specs: list[SceneSpec], device: torch.device | str = "cpu") -> None:
        sdfs = [SceneSDF(s) for s in specs]
        self.device = torch.device(device)

        def pad(arrays: list[np.ndarray], width: int, fill_row: list[float]) -> torch.Tensor:
            n = max(1, max(a.shape[0] for a in arrays))
            out = np.tile(np.asarray(fill_row, dtype=np.float64), (len(arrays), n, 1))
            for i, a in enumerate(arrays):
                out[i, : a.shape[0]] = a
            return torch.as_tensor(out, dtype=torch.float32, device=self.device)

        far = self.FAR
        self.boxes = pad([s._boxes for s in sdfs], 7, [far, far, far, 0.1, 0.1, 0.1, 0.0])  # (S, Pb, 7)
        self.spheres = pad([s._spheres for s in sdfs], 4, [far, far, far, 0.1])  # (S, Ps, 4)
        self.cyl = pad([s._cyl for s in sdfs], 5, [far, far, far, 0.1, 0.1])  # (S, Pc, 5)
        rooms = [np.array([[r.x0, r.x1, r.z0, r.z1] for r in s.rooms], dtype=np.float64) for s in specs]
        self.rooms = pad(rooms, 4, [far, far, far, far])  # (S, R, 4)
        self._box_cs = (torch.cos(self.boxes[..., 6]), torch.sin(self.boxes[..., 6]))  # (S, Pb) each
        # on the CPU the same maths runs in numpy: a handful of envs makes tiny arrays, where numpy's
        # per-call cost is a fraction of torch's
        self._np = None
        if self.device.type == "cpu":
            self._np = {k: v.numpy() for k, v in (("boxes", self.boxes), ("spheres", self.spheres),
                                                   ("cyl", self.cyl), ("rooms", self.rooms),
                                                   ("c", self._box_cs[0]), ("s", self._box_cs[1]))}

    def distance(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (S,) of points (S, 3), one per scene."""
        if self._np is not None:
            return torch.from_numpy(self._distance_np(points.numpy().astype(np.float32)))
        p = points.to(torch.float32)
        # 1. oriented boxes
        b = self.boxes
        d = p[:, None, :] - b[..., :3]  # (S, Pb, 3)
        c, s = self._box_cs
        lx = c * d[..., 0] - s * d[..., 2]
        lz = s * d[..., 0] + c * d[..., 2]
        q = torch.stack([lx, d[..., 1], lz], dim=-1).abs() - b[..., 3:6]
        box = q.clamp_min(0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0)
        # 2. spheres
        sp = (p[:, None, :] - self.spheres[..., :3]).norm(dim=-1) - self.spheres[..., 3]
        # 3. capped vertical cylinders (cones and ellipsoids by their bounding cylinder)
        cy = self.cyl
        dxz = torch.hypot(p[:, None, 0] - cy[..., 0], p[:, None, 2] - cy[..., 2]) - cy[..., 3]
        dy = (p[:, None, 1] - cy[..., 1]).abs() - cy[..., 4]
        q2 = torch.stack([dxz, dy], dim=-1)
        cyl = q2.clamp_min(0).norm(dim=-1) + q2.amax(dim=-1).clamp_max(0)
        return torch.minimum(torch.minimum(box.amin(1), sp.amin(1)), cyl.amin(1))

    def _distance_np(self, p: np.ndarray) -> np.ndarray:
        """:meth:`distance` in numpy (float32, the same operations)."""
        a = self._np
        b = a["boxes"]
        d = p[:, None, :] - b[..., :3]  # (S, Pb, 3)
        lx = a["c"] * d[..., 0] - a["s"] * d[..., 2]
        lz = a["s"] * d[..., 0] + a["c"] * d[..., 2]
        q = np.abs(np.stack([lx, d[..., 1], lz], axis=-1)) - b[..., 3:6]
        box = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)
        sp = np.linalg.norm(p[:, None, :] - a["spheres"][..., :3], axis=-1) - a["spheres"][..., 3]
        cy = a["cyl"]
        dxz = np.hypot(p[:, None, 0] - cy[..., 0], p[:, None, 2] - cy[..., 2]) - cy[..., 3]
        dy = np.abs(p[:, None, 1] - cy[..., 1]) - cy[..., 4]
        q2 = np.stack([dxz, dy], axis=-1)
        cyl = np.linalg.norm(np.maximum(q2, 0), axis=-1) + np.minimum(q2.max(axis=-1), 0)
        return np.minimum(np.minimum(box.min(1), sp.min(1)), cyl.min(1))

    def in_rooms(self, points: torch.Tensor) -> torch.Tensor:
        """Whether each point's (x, z) lies inside some room of its scene, (S,) bool."""
        if self._np is not None:
            p = points.numpy()
            r = self._np["rooms"]
            x, z = p[:, None, 0], p[:, None, 2]
            return torch.from_numpy(((x >= r[..., 0]) & (x <= r[..., 1]) & (z >= r[..., 2]) & (z <= r[..., 3])).any(1))
        x, z = points[:, None, 0], points[:, None, 2]
        r = self.rooms
        inside = (x >= r[..., 0]) & (x <= r[..., 1]) & (z >= r[..., 2]) & (z <= r[..., 3])
        return inside.any(dim=1)
