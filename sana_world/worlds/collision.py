"""Signed distances to a SceneSpec's solids: keeps cameras out of walls and objects, finds free spawn points.

Distances are exact for boxes, spheres and capped cylinders; ellipsoids and cones use conservative bounds
(never larger than the true distance), so "distance > clearance" always means "really free".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def __init__(self, specs: list[SceneSpec], device: torch.device | str = "cpu",
                 sdfs: list[SceneSDF] | None = None) -> None:
        """``sdfs``: the scenes' :class:`SceneSDF` when the caller keeps them (built here otherwise)."""
        if sdfs is not None and len(sdfs) != len(specs):
            raise ValueError(f"got {len(sdfs)} SceneSDFs for {len(specs)} scenes")
        sdfs = sdfs if sdfs is not None else [SceneSDF(s) for s in specs]
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
            return torch.from_numpy(self.distance_np(points.numpy()))
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

    def distance_np(self, points: np.ndarray) -> np.ndarray:
        """:meth:`distance` of numpy points (S, 3) on a CPU ``PackedSDF``: (S,) float32, the same values."""
        if self._np is None:
            raise RuntimeError(f"distance_np needs a CPU PackedSDF, this one lives on {self.device}")
        return self._distance_np(np.asarray(points).astype(np.float32))

    def in_rooms_np(self, points: np.ndarray) -> np.ndarray:
        """:meth:`in_rooms` of numpy points (S, 3) on a CPU ``PackedSDF``: (S,) bool."""
        if self._np is None:
            raise RuntimeError(f"in_rooms_np needs a CPU PackedSDF, this one lives on {self.device}")
        r = self._np["rooms"]
        x, z = points[:, None, 0], points[:, None, 2]
        return ((x >= r[..., 0]) & (x <= r[..., 1]) & (z >= r[..., 2]) & (z <= r[..., 3])).any(1)

    def _distance_np(self, p: np.ndarray) -> np.ndarray:
        """:meth:`distance` in numpy (float32, the same operations)."""
        a = self._np
        assert a is not None
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
            return torch.from_numpy(self.in_rooms_np(points.numpy()))
        x, z = points[:, None, 0], points[:, None, 2]
        r = self.rooms
        inside = (x >= r[..., 0]) & (x <= r[..., 1]) & (z >= r[..., 2]) & (z <= r[..., 3])
        return inside.any(dim=1)


# ---------------------------------------------------------------------------------------------------------
# Segments that provably touch no triangle: shadow rays the CPU renderer need not trace
# ---------------------------------------------------------------------------------------------------------

CULL_MARGIN = 1e-3  # metres around each primitive's triangle bounds; float32 hit errors are ~1e-5 at most
CULL_LIFT = 2e-4  # a segment this far above its own supporting face cannot touch its own primitive
_SUPPORT_TOL = 1e-5  # vertices may sit this far in front of a face that still counts as supporting


@dataclass(frozen=True)
class SegmentCull:
    """Per-scene tables of :func:`segment_free`: light-centred cube maps of primitive boxes.

    For light ``l``, direction cell ``c`` of a ``grid`` x ``grid`` cube map around it (face-major),
    ``prims[start[l, c]:start[l, c + 1]]`` lists every primitive whose box meets the cell's pyramid (apex at
    the light), tested conservatively with the pyramid's five planes. A segment from a point to the light
    lies in the pyramid of the point's cell, so only those boxes can touch it.
    """

    light_pos: np.ndarray  # (L, 3) float64 segment ends (the float32 light positions, widened)
    grid: int
    start: np.ndarray  # (L, 6 * grid * grid + 1) int64 offsets into prims
    prims: np.ndarray  # (K,) int64 primitive indices
    box_c: np.ndarray  # (P, 3) float64 centre of each primitive's triangle bounds
    box_e: np.ndarray  # (P, 3) float64 half extents of the bounds plus CULL_MARGIN (-1 without triangles)
    face_out: np.ndarray  # (F,) bool: flat triangle whose primitive lies wholly behind its (outward) plane
    face_in: np.ndarray  # (F,) bool: the same for the flipped normal


def segment_cull(vertices: np.ndarray, triangles: np.ndarray, tri_prim: np.ndarray, flat: np.ndarray,
                 face_normals: np.ndarray, light_pos: np.ndarray, grid: int = 16) -> SegmentCull:
    """Build the :class:`SegmentCull` of a triangle mesh ((V, 3) vertices, (F, 3) triangles, (F,) primitive
    index, (F,) flat-surface flags, (F, 3) unit face normals) lit by lights at ``light_pos`` (L, 3)."""
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(triangles, dtype=np.int64)
    tri_prim = np.asarray(tri_prim, dtype=np.int64)
    n_prims = int(tri_prim.max()) + 1 if len(tri_prim) else 0
    # 1. per-primitive bounds of the triangles (a primitive without triangles keeps an empty box)
    corners = v[f]  # (F, 3, 3)
    lo, hi = np.full((n_prims, 3), np.inf), np.full((n_prims, 3), -np.inf)
    np.minimum.at(lo, tri_prim, corners.min(axis=1))
    np.maximum.at(hi, tri_prim, corners.max(axis=1))
    lo, hi = lo - CULL_MARGIN, hi + CULL_MARGIN
    # 2. flat triangles whose plane supports their primitive's whole mesh (on either side)
    face_out, face_in = np.zeros(len(f), dtype=np.bool_), np.zeros(len(f), dtype=np.bool_)
    for p in range(n_prims):
        tris = np.nonzero((tri_prim == p) & np.asarray(flat, dtype=np.bool_))[0]
        if len(tris) == 0:
            continue
        verts = v[np.unique(f[tri_prim == p])]  # (Vp, 3)
        height = np.einsum("fk,fvk->fv", face_normals[tris], verts[None] - v[f[tris, 0]][:, None])  # (Fp, Vp)
        face_out[tris] = height.max(axis=1) <= _SUPPORT_TOL
        face_in[tris] = height.min(axis=1) >= -_SUPPORT_TOL
    # 3. light-centred cube maps: cells are pyramids t >= 0, u0 t <= w_b <= u1 t, v0 t <= w_c <= v1 t, cut
    #    where t leaves the scene's bounds (every segment end lies on a triangle, lifted off it by far less
    #    than the 1 cm added here)
    lights = np.asarray(light_pos, dtype=np.float32).astype(np.float64).reshape(-1, 3)
    scene_lo, scene_hi = v.min(axis=0) - 0.01, v.max(axis=0) + 0.01
    edges = np.linspace(-1.0, 1.0, grid + 1)
    eps = 1e-3  # cells overlap a little: points on a cell border or a cube edge find every box
    u0, u1 = np.meshgrid(edges[:-1] - eps, edges[1:] + eps, indexing="ij")  # only the diagonal pairs matter
    u0, u1 = np.diag(u0), np.diag(u1)  # (G,)
    box_corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
    starts, members = [], []
    total = 0
    for light in lights:
        w = np.where(box_corners[None].astype(bool), hi[:, None], lo[:, None]) - light  # (P, 8, 3)
        counts = []
        for a in range(3):
            b, c = [k for k in range(3) if k != a]
            for sgn in (1.0, -1.0):
                t = sgn * w[..., a]  # (P, 8)
                front = (t >= 0).any(-1)  # (P,)
                lo_u = (w[None, :, :, b] - u0[:, None, None] * t[None] >= 0).any(-1)  # (G, P)
                hi_u = (u1[:, None, None] * t[None] - w[None, :, :, b] >= 0).any(-1)
                lo_v = (w[None, :, :, c] - u0[:, None, None] * t[None] >= 0).any(-1)
                hi_v = (u1[:, None, None] * t[None] - w[None, :, :, c] >= 0).any(-1)
                ok_u, ok_v = lo_u & hi_u & front, lo_v & hi_v  # (G, P)
                cell = ok_u[:, None, :] & ok_v[None, :, :]  # (Gu, Gv, P) by the pyramid's planes
                # the box axes: the bounds of the cut pyramid (the light and four far corners) must meet the box
                t_max = max(0.0, float(np.max(sgn * (np.stack([scene_lo, scene_hi])[:, a] - light[a]))))
                far_lo, far_hi = np.empty((grid, grid, 3)), np.empty((grid, grid, 3))
                far_lo[..., a] = far_hi[..., a] = light[a] + sgn * t_max
                for k, lo_k, hi_k in ((b, u0[:, None], u1[:, None]), (c, u0[None, :], u1[None, :])):
                    far_lo[..., k] = light[k] + t_max * np.broadcast_to(lo_k, (grid, grid))
                    far_hi[..., k] = light[k] + t_max * np.broadcast_to(hi_k, (grid, grid))
                cut_lo, cut_hi = np.minimum(far_lo, light), np.maximum(far_hi, light)  # (Gu, Gv, 3)
                cell &= ((lo[None, None] <= cut_hi[:, :, None]) & (hi[None, None] >= cut_lo[:, :, None])).all(-1)
                for row in cell.reshape(grid * grid, -1):
                    idx = np.nonzero(row)[0]
                    members.append(idx)
                    counts.append(len(idx))
        starts.append(total + np.concatenate([[0], np.cumsum(counts)]))
        total += int(np.sum(counts))
    prims = np.concatenate(members).astype(np.int64) if members else np.zeros(0, dtype=np.int64)
    start = np.stack(starts).astype(np.int64) if starts else np.zeros((0, 6 * grid * grid + 1), dtype=np.int64)
    empty = ~np.isfinite(lo).all(axis=1)  # (P,) primitives without triangles: listed nowhere, never met
    centre = np.where(empty[:, None], 0.0, 0.5 * (lo + hi))
    return SegmentCull(lights, grid, start, prims, centre, np.where(empty[:, None], -1.0, 0.5 * (hi - lo)),
                       face_out, face_in)
