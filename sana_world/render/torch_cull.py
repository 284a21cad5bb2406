"""CPU path of the torch ray caster: test only the (ray tile, primitive) pairs whose bounds overlap.

The image is cut into 8x8 pixel tiles. A primitive is tested against the rays of a tile only when its
bounding box, clipped to the near plane and projected, overlaps the tile. A shadow bundle (the segments
from one light to the hit points of one tile) is tested only when some of its points face the light,
and only against primitives whose world AABB overlaps the bundle's AABB and whose bounding sphere meets
the bundle's cone; a bundle that one wall box blocks entirely (lights in other rooms) skips the per-ray
tests. The surviving pairs go through the same closed-form tests as the brute-force path, so the images
are the same (the tests check bit equality); but the pair lists depend on the data (``nonzero``), which
suits eager CPU work and not a compiled GPU graph.
"""

from __future__ import annotations

import torch

from sana_world.render.shading import SHADOW_OFFSET
from sana_world.render.torch_geometry import (EPS_SHADOW, EPS_T, INF, camera_rays_uv, finish_pixels,
                                              group_test, hit_surface)
from sana_world.render.torch_packing import GROUPS, PackedScenes

Tensor = torch.Tensor

TILE = 8
NEAR = 1e-4  # camera-space z of the near plane the bounding boxes are clipped to
_EDGES = [(i, i | (1 << a)) for a in range(3) for i in range(8) if not (i >> a) & 1]  # 12 box edges
_MISS_KEY = 0x7F800000 << 32  # float bits of +inf, primitive 0
_GROUP_INDEX = {"aabb": "aabb_index", "obox": "obox_index", "ellipsoid": "ell_index", "cylinder": "cyl_index",
                "cone": "cone_index"}
_GROUP_VALID = {g: name.replace("index", "valid") for g, name in _GROUP_INDEX.items()}


def tile_pixels(height: int, width: int, device: torch.device) -> Tensor:
    """Pixel centres (Ty * Tx, 64, 2) of the 8x8 tiles covering the image (padded to whole tiles)."""
    ty, tx = -(-height // TILE), -(-width // TILE)
    k = torch.arange(TILE, device=device, dtype=torch.float32) + 0.5
    u = (torch.arange(tx, device=device, dtype=torch.float32) * TILE)[:, None] + k  # (Tx, 8)
    v = (torch.arange(ty, device=device, dtype=torch.float32) * TILE)[:, None] + k  # (Ty, 8)
    uu = u[None, :, None, :].expand(ty, tx, TILE, TILE)
    vv = v[:, None, :, None].expand(ty, tx, TILE, TILE)
    return torch.stack([uu, vv], dim=-1).reshape(ty * tx, TILE * TILE, 2)


def screen_rects(corners: Tensor, c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixel bounds u0, u1, v0, v1 (B, P) of bounding boxes ``corners`` (B, P, 8, 3) clipped to z >= NEAR.

    Boxes entirely behind the near plane get an empty rect (u0 = inf).
    """
    R, o = c2w[:, :3, :3], c2w[:, :3, 3]
    cam = torch.einsum("bji,bpkj->bpki", R, corners - o[:, None, None, :])  # (B, P, 8, 3) = R^T (X - o)
    z = cam[..., 2]
    ia = torch.tensor([a for a, _ in _EDGES], device=cam.device)
    ib = torch.tensor([b for _, b in _EDGES], device=cam.device)
    za, zb = z[..., ia], z[..., ib]  # (B, P, 12)
    cross = (za - NEAR) * (zb - NEAR) < 0.0
    s = torch.where(cross, (NEAR - za) / torch.where(cross, zb - za, 1.0), 0.0)
    edge_pts = cam[..., ia, :] + s.unsqueeze(-1) * (cam[..., ib, :] - cam[..., ia, :])  # (B, P, 12, 3)
    pts = torch.cat([cam, edge_pts], dim=-2)  # (B, P, 20, 3)
    ok = torch.cat([z >= NEAR, cross], dim=-1)  # (B, P, 20)
    zz = pts[..., 2].clamp_min(NEAR)
    view = (-1, 1, 1)
    u = K[:, 0, 0].view(view) * pts[..., 0] / zz + K[:, 0, 2].view(view)
    v = K[:, 1, 1].view(view) * pts[..., 1] / zz + K[:, 1, 2].view(view)
    return (torch.where(ok, u, INF).amin(-1), torch.where(ok, u, -INF).amax(-1),
            torch.where(ok, v, INF).amin(-1), torch.where(ok, v, -INF).amax(-1))


def _group_pairs(p: PackedScenes, group: str, scene_index: Tensor, mask: Tensor,
                 shadow: bool = False) -> tuple[Tensor, ...]:
    """Nonzero entries of ``mask`` (B, ..., Pmax) restricted to one group's slots: (b, ..., slot) indices.

    ``shadow`` drops the slabs that cast no shadow."""
    if p.group_sizes[GROUPS.index(group)] == 0:  # no scene has this shape: no pairs
        return tuple(torch.zeros(0, dtype=torch.int64, device=mask.device) for _ in range(mask.ndim))
    idx = getattr(p, _GROUP_INDEX[group])[scene_index]  # (B, Pg)
    valid = getattr(p, _GROUP_VALID[group])[scene_index]
    if shadow and group == "aabb":
        valid = valid & p.aabb_caster[scene_index]
    view = (idx.shape[0],) + (1,) * (mask.ndim - 2) + (idx.shape[1],)
    m = torch.gather(mask, -1, idx.view(view).expand(*mask.shape[:-1], idx.shape[1])) & valid.view(view)
    return m.nonzero(as_tuple=True)


def render_culled(p: PackedScenes, scene_index: Tensor, c2w: Tensor, K: Tensor, height: int, width: int,
                  shadows: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Render B cameras: rgb (B, H, W, 3) uint8, depth (B, H, W), normal (B, H, W, 3), ids (B, H, W)."""
    B, dev = c2w.shape[0], c2w.device
    ty, tx = -(-height // TILE), -(-width // TILE)
    T, R = ty * tx, TILE * TILE
    uv = tile_pixels(height, width, dev)  # (T, 64, 2)
    o, d = camera_rays_uv(c2w, K, uv)  # (B, 3), (B, T, 64, 3)
    # 1. which primitives may cover each tile
    u0, u1, v0, v1 = screen_rects(p.prim_corners[scene_index], c2w, K)  # (B, P)
    lo_u = torch.arange(tx, device=dev, dtype=torch.float32) * TILE + 0.5 - 0.01  # tile pixel-centre bounds
    lo_v = torch.arange(ty, device=dev, dtype=torch.float32) * TILE + 0.5 - 0.01
    hi_u, hi_v = lo_u + (TILE - 1) + 0.02, lo_v + (TILE - 1) + 0.02
    ok_u = (u0[:, None, :] <= hi_u[None, :, None]) & (u1[:, None, :] >= lo_u[None, :, None])  # (B, Tx, P)
    ok_v = (v0[:, None, :] <= hi_v[None, :, None]) & (v1[:, None, :] >= lo_v[None, :, None])  # (B, Ty, P)
    mask = (ok_v[:, :, None, :] & ok_u[:, None, :, :]).reshape(B, T, -1)  # (B, T, P)
    # 2. nearest hit per ray: min over (t bits << 32 | primitive index) keys of the surviving pairs
    keys = torch.full((B * T * R,), _MISS_KEY, dtype=torch.int64, device=dev)
    lane = torch.arange(R, device=dev)
    for group in GROUPS:
        b, t, slot = _group_pairs(p, group, scene_index, mask)
        if b.numel() == 0:
            continue
        sel = (scene_index[b].unsqueeze(1), slot.unsqueeze(1))
        dd = d[b, t]  # (M, 64, 3)
        near, far, ok, index = group_test(group, p, sel, o[b], dd, 1.0 / dd)  # (M, 64, 1), (M, 1)
        tt = torch.where(near > EPS_T, near, far)
        tt = torch.where(ok & (tt > EPS_T), tt, INF)[..., 0]  # (M, 64), positive or inf
        key = (tt.view(torch.int32).to(torch.int64) << 32) | index
        ray = (b * T + t).unsqueeze(1) * R + lane  # (M, 64)
        keys.scatter_reduce_(0, ray.reshape(-1), key.reshape(-1), "amin")
    t_hit = (keys >> 32).to(torch.int32).view(torch.float32).view(B, T * R)  # inf on misses
    prim = (keys & 0xFFFFFFFF).view(B, T * R)
    d = d.reshape(B, T * R, 3)
    hit, pos, n, cols, base = hit_surface(p, scene_index, o, d, t_hit, prim, only_used_textures=True)
    vis = _shadow_visibility(p, scene_index, (pos + SHADOW_OFFSET * n).view(B, T, R, 3), n.view(B, T, R, 3),
                             hit.view(B, T, R)) if shadows else None
    rgb, depth, normal, ids = finish_pixels(p, scene_index, t_hit, hit, pos, n, cols, base, vis)

    # 3. tiles back to image rows, cropped to H x W
    def untile(x: Tensor) -> Tensor:
        x = x.view(B, ty, tx, TILE, TILE, *x.shape[2:]).transpose(2, 3)
        return x.reshape(B, ty * TILE, tx * TILE, *x.shape[5:])[:, :height, :width]

    return untile(rgb), untile(depth), untile(normal), untile(ids)


def _shadow_visibility(p: PackedScenes, scene_index: Tensor, target: Tensor, normal: Tensor,
                       hit: Tensor) -> Tensor:
    """Light visibility (B, T * 64, L) of normal-offset points ``target`` (B, T, 64, 3) where ``hit``.

    Only bundles with a point that faces the light are tested: the others get no light from it anyway.
    """
    B, T, R, _ = target.shape
    dev, f = target.device, target.dtype
    light = p.table.light_pos[scene_index]  # (B, L, 3)
    L = light.shape[1]
    light_ok = (p.table.light_rgb[scene_index] > 0).any(-1)  # (B, L) padded lights stay dark anyway
    to_light = light[:, None, None] - target.unsqueeze(3)  # (B, T, 64, L, 3)
    facing = ((to_light * normal.unsqueeze(3)).sum(-1) > 0.0) & hit.unsqueeze(-1)  # (B, T, 64, L)
    light_ok = facing.any(2) & light_ok[:, None]  # (B, T, L)
    # 1. per (tile, light) bundle: AABB of the light and the tile's hit points, and the cone from the light
    #    around the ball that holds the tile's points
    miss = (1.0 - hit.to(f)).unsqueeze(-1) * 1e30  # (B, T, 64, 1)
    tmin, tmax = (target + miss).amin(2), (target - miss).amax(2)  # (B, T, 3)
    tile_hit = hit.any(2)  # (B, T)
    bmin = torch.minimum(tmin[:, :, None], light[:, None])  # (B, T, L, 3)
    bmax = torch.maximum(tmax[:, :, None], light[:, None])
    plo, phi = p.prim_lo[scene_index], p.prim_hi[scene_index]  # (B, P, 3)
    box_ok = ((bmin.unsqueeze(3) <= phi[:, None, None]) & (bmax.unsqueeze(3) >= plo[:, None, None])).all(-1)
    ball_c = torch.where(tile_hit.unsqueeze(-1), 0.5 * (tmin + tmax), 0.0)  # (B, T, 3)
    ball_r = torch.where(tile_hit, 0.5 * (tmax - tmin).norm(dim=-1), 0.0)  # (B, T)
    axis = ball_c[:, :, None] - light[:, None]  # (B, T, L, 3)
    reach = axis.norm(dim=-1).clamp_min(1e-9)  # (B, T, L) distance to the ball's centre
    axis = axis / reach.unsqueeze(-1)
    half = torch.asin((ball_r.unsqueeze(-1) / reach).clamp(max=1.0))  # (B, T, L); pi/2 = no cull
    half = torch.where(ball_r.unsqueeze(-1) < reach, half, torch.pi)
    centre = p.table.center.view(p.num_scenes, p.prims_max, 3)[scene_index]  # (B, P, 3)
    radius = p.prim_radius[scene_index]  # (B, P)
    w = centre[:, None] - light[:, :, None]  # (B, L, P, 3)
    dist = w.norm(dim=-1).clamp_min(1e-9)  # (B, L, P)
    cos_w = torch.einsum("btlk,blpk->btlp", axis, w) / dist[:, None]  # (B, T, L, P)
    spread = torch.asin((radius[:, None] / dist).clamp(max=1.0))  # (B, L, P)
    cone_ok = (dist <= radius[:, None])[:, None] | (
        (torch.acos(cos_w.clamp(-1.0, 1.0)) <= half.unsqueeze(-1) + spread[:, None] + 1e-4)
        & ((dist - radius[:, None])[:, None] <= (reach + ball_r.unsqueeze(-1)).unsqueeze(-1)))
    mask = box_ok & cone_ok & light_ok.unsqueeze(-1)  # (B, T, L, P)
    # 2. bundles that one axis-aligned box blocks entirely need no per-ray test
    full = _full_occluders(p, scene_index, mask, light, tmin, tmax)  # (B, T, L)
    mask = mask & ~full.unsqueeze(-1)
    occluded = full.unsqueeze(2).expand(B, T, R, L).clone()
    # 3. any-hit of the surviving (bundle, primitive) pairs; structure first, then only bundles that are
    #    not blocked all over
    lane = torch.arange(R, device=dev)
    for group in GROUPS:
        if group != "aabb":
            mask = mask & ~(occluded | ~facing).all(2).unsqueeze(-1)  # (B, T, L, P)
        b, t, l, slot = _group_pairs(p, group, scene_index, mask, shadow=True)
        if b.numel() == 0:
            continue
        sel = (scene_index[b].unsqueeze(1), slot.unsqueeze(1))
        lo = light[b, l]  # (M, 3)
        seg = target[b, t] - lo.unsqueeze(1)  # (M, 64, 3)
        near, far, ok, _ = group_test(group, p, sel, lo, seg, 1.0 / seg)
        blocked = (ok & (far > EPS_SHADOW) & (near < 1.0))[..., 0]  # (M, 64)
        flat = ((b * T + t).unsqueeze(1) * R + lane) * L + l.unsqueeze(1)  # (M, 64)
        occluded.view(-1)[flat[blocked]] = True
    return (~occluded).view(B, T * R, L).to(f)


def _full_occluders(p: PackedScenes, scene_index: Tensor, mask: Tensor, light: Tensor, tmin: Tensor,
                    tmax: Tensor) -> Tensor:
    """(B, T, L) bool: some axis-aligned box blocks every segment from the light to the tile's AABB.

    Box X blocks them all when, along some axis, the light lies before X's near face, the whole tile AABB
    lies past that face, and the central projection of the tile AABB from the light onto the face plane
    (spanned by the projections of its corners) falls inside the face.
    """
    B, T, L, _ = mask.shape
    full = torch.zeros((B, T, L), dtype=torch.bool, device=mask.device)
    b, t, l, slot = _group_pairs(p, "aabb", scene_index, mask, shadow=True)
    if b.numel() == 0:
        return full
    s = scene_index[b]
    lo, hi = p.aabb_lo[s, slot], p.aabb_hi[s, slot]  # (M, 3)
    src, pmin, pmax = light[b, l], tmin[b, t], tmax[b, t]  # (M, 3)
    blocked = torch.zeros_like(b, dtype=torch.bool)
    for a in range(3):  # 1. the face nearest the light along axis a, 2. project the tile AABB onto it
        before = src[:, a] < lo[:, a]
        plane = torch.where(before, lo[:, a], hi[:, a])
        ok = torch.where(before, pmin[:, a] > plane, (src[:, a] > hi[:, a]) & (pmax[:, a] < plane))
        for c in range(3):
            if c == a:
                continue
            vals = [src[:, c] + (plane - src[:, a]) * (qc[:, c] - src[:, c]) / (qa[:, a] - src[:, a])
                    for qa in (pmin, pmax) for qc in (pmin, pmax)]
            v = torch.stack(vals, dim=-1)  # (M, 4)
            ok = ok & (v.amin(-1) > lo[:, c]) & (v.amax(-1) < hi[:, c])
        blocked = blocked | ok
    full[b[blocked], t[blocked], l[blocked]] = True
    return full
