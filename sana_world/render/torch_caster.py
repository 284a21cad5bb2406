"""Renderer 1: a batched analytic ray caster in plain torch, the same code on CPU and CUDA.

Every ray is tested against every primitive of its scene (:mod:`sana_world.render.torch_geometry`);
memory scales as rays x primitives, so rays are processed in chunks. This brute-force path has no host
syncs and no data-dependent branches, so it runs under ``torch.compile`` and is what the GPU uses. On
CPU the renderer by default takes the culled path of :mod:`sana_world.render.torch_cull`, which tests
only the (ray tile, primitive) pairs whose screen or shadow bounds overlap and gives the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sana_world.camera import pixel_grid
from sana_world.render.base import RenderOutput
from sana_world.render.shading import SHADOW_OFFSET
from sana_world.render.torch_cull import render_culled
from sana_world.render.torch_geometry import any_hit, camera_rays_uv, finish_pixels, hit_surface, nearest_hit
from sana_world.render.torch_packing import PackedScenes, pack_scenes, pad_packed
from sana_world.worlds.spec import SceneSpec

Tensor = torch.Tensor

__all__ = ["PackedScenes", "TorchRenderer", "TorchRendererConfig", "pack_scenes", "render_chunk"]


def render_chunk(p: PackedScenes, scene_index: Tensor, c2w: Tensor, K: Tensor, uv: Tensor,
                 shadows: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Brute-force render of pixels ``uv`` (n, 2) of cameras c2w (b, 4, 4), K (b, 3, 3) in scenes
    ``scene_index`` (b,). Returns rgb (b, n, 3) uint8, depth (b, n), normal (b, n, 3), ids (b, n) int32.

    Under ``torch.compile`` the graph breaks split it into three graphs, so that per-ray directions and
    their reciprocals are stored once instead of recomputed for every (ray, primitive) pair.
    """
    # 1. camera rays (camera-z = 1, so t is z-depth)
    o, d = camera_rays_uv(c2w, K, uv)  # (b, 3), (b, n, 3)
    inv = 1.0 / d
    torch._dynamo.graph_break()
    # 2. nearest primitive and its surface
    t, prim = nearest_hit(p, (scene_index,), o, d, inv)  # (b, n)
    hit, pos, n, cols, base = hit_surface(p, scene_index, o, d, t, prim)
    if not shadows:
        return finish_pixels(p, scene_index, t, hit, pos, n, cols, base, None)
    # 3. shadow segments cast from each light towards the normal-offset surface point
    light_pos = p.table.light_pos[scene_index]  # (b, L, 3)
    seg = (pos + SHADOW_OFFSET * n).unsqueeze(1) - light_pos.unsqueeze(2)  # (b, L, n, 3)
    inv_seg = 1.0 / seg
    torch._dynamo.graph_break()
    blocked = any_hit(p, (scene_index.unsqueeze(1),), light_pos, seg, inv_seg)  # (b, L, n)
    vis = (~blocked).to(pos.dtype).transpose(1, 2)  # (b, n, L)
    return finish_pixels(p, scene_index, t, hit, pos, n, cols, base, vis)


# ---------------------------------------------------------------------------------------------------------
# Renderer
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchRendererConfig:
    """How :class:`TorchRenderer` runs."""

    device: str = "cpu"
    shadows: bool = True
    chunk_rays: int | None = None  # rays per chunk; None: pair_budget // (primitive slots per ray)
    pair_budget: int | None = None  # ray x primitive pairs per chunk; None: 2**18 CPU, 2**26 / 2**28 CUDA
    compile: bool = False  # torch.compile the per-chunk renderer (pads chunks to one shape)
    compile_mode: str = "max-autotune-no-cudagraphs"
    cull: bool | None = None  # tile-culled path (torch_cull); None: on CPU unless compiling
    cull_rays: int = 2**16  # rays per call of the culled path

    def use_cull(self) -> bool:
        if self.cull is None:
            return torch.device(self.device).type == "cpu" and not self.compile
        return self.cull


class TorchRenderer:
    """Analytic ray caster implementing :class:`sana_world.render.base.Renderer`."""

    def __init__(self, device: torch.device | str = "cpu", shadows: bool = True,
                 chunk_rays: int | None = None, compile: bool = False,
                 compile_mode: str = "max-autotune-no-cudagraphs", pair_budget: int | None = None,
                 cull: bool | None = None) -> None:
        self.config = TorchRendererConfig(str(device), shadows, chunk_rays, pair_budget, compile,
                                          compile_mode, cull)
        self.device = torch.device(device)
        if chunk_rays is not None and chunk_rays <= 0:
            raise ValueError(f"chunk_rays must be positive, got {chunk_rays}")
        if compile and self.config.use_cull():
            raise ValueError("the culled path cannot be compiled: pass cull=False with compile=True")
        self._chunk_fn = (torch.compile(render_chunk, mode=compile_mode, dynamic=False) if compile
                          else render_chunk)
        self._last: tuple[SceneSpec, PackedScenes] | None = None
        self._last_padded: tuple[PackedScenes, PackedScenes] | None = None

    # --- public API --------------------------------------------------------------------------------------
    def pack(self, scene: SceneSpec) -> PackedScenes:
        """The packed form of one scene (the last one is cached by identity)."""
        if self._last is None or self._last[0] is not scene:
            self._last = (scene, pack_scenes([scene], self.device))
        return self._last[1]

    def render(self, scene: SceneSpec, c2w: Tensor, K: Tensor, height: int, width: int) -> RenderOutput:
        """Render ``scene`` from cameras c2w (B, 4, 4) (or one (4, 4)) with K (3, 3) or (B, 3, 3)."""
        c2w = self._as_f32(c2w)
        if c2w.shape == (4, 4):
            c2w = c2w.unsqueeze(0)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must have shape (B, 4, 4) or (4, 4), got {tuple(c2w.shape)}")
        index = torch.zeros(c2w.shape[0], dtype=torch.int64, device=self.device)
        return self.render_packed(self.pack(scene), index, c2w, K, height, width)

    def render_packed(self, packed: PackedScenes, scene_index: Tensor, c2w: Tensor, K: Tensor, height: int,
                      width: int, shadows: bool | None = None) -> RenderOutput:
        """Render camera b of scene ``scene_index[b]`` of ``packed`` for every b; c2w (B, 4, 4). ``shadows``
        overrides the config's for this call (False: no shadow rays, which only the colours need)."""
        shadows = self.config.shadows if shadows is None else bool(shadows)
        c2w, K = self._as_f32(c2w), self._as_f32(K)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must have shape (B, 4, 4), got {tuple(c2w.shape)}")
        B = c2w.shape[0]
        if K.shape == (3, 3):
            K = K.expand(B, 3, 3)
        if K.shape != (B, 3, 3):
            raise ValueError(f"K must have shape (3, 3) or (B, 3, 3) with B = {B}, got {tuple(K.shape)}")
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            raise ValueError(f"height and width must be positive ints, got {height!r} x {width!r}")
        scene_index = torch.as_tensor(scene_index)
        if scene_index.shape != (B,):
            raise ValueError(f"scene_index must have shape ({B},), got {tuple(scene_index.shape)}")
        if scene_index.device.type == "cpu":  # (a device tensor is not checked: that would cost a sync)
            if bool(((scene_index < 0) | (scene_index >= packed.num_scenes)).any()):
                raise ValueError(f"scene_index must lie in [0, {packed.num_scenes}), "
                                 f"got {scene_index.tolist()}")
        scene_index = scene_index.to(self.device, torch.int64)
        if packed.device.type != self.device.type or self.device.index not in (None, packed.device.index):
            raise ValueError(f"packed scenes live on {packed.device}, the renderer on {self.device}")
        if self.config.use_cull():
            return self._render_culled(packed, scene_index, c2w, K, height, width, shadows)
        if self.config.compile:  # a few fixed shapes, so new scene batches rarely recompile
            packed = self._padded(packed)
        uv = pixel_grid(height, width, self.device).reshape(-1, 2)  # (HW, 2)
        HW = height * width
        cams, pix = self._chunk_shape(packed, B, HW)
        pad_b = (-B) % cams if self.config.compile else 0
        pad_n = (-HW) % pix if self.config.compile else 0
        if pad_b:  # repeat the last camera so that every compiled chunk has one shape
            c2w = torch.cat([c2w, c2w[-1:].expand(pad_b, 4, 4)])
            K = torch.cat([K, K[-1:].expand(pad_b, 3, 3)])
            scene_index = torch.cat([scene_index, scene_index[-1:].expand(pad_b)])
        if pad_n:
            uv = torch.cat([uv, uv[-1:].expand(pad_n, 2)])
        Bp, Np = B + pad_b, HW + pad_n
        rgb = torch.empty((Bp, Np, 3), dtype=torch.uint8, device=self.device)
        depth = torch.empty((Bp, Np), dtype=torch.float32, device=self.device)
        normal = torch.empty((Bp, Np, 3), dtype=torch.float32, device=self.device)
        ids = torch.empty((Bp, Np), dtype=torch.int32, device=self.device)
        for b0 in range(0, Bp, cams):  # 1. camera chunks, 2. pixel chunks inside a camera chunk
            b1 = min(b0 + cams, Bp)
            for n0 in range(0, Np, pix):
                n1 = min(n0 + pix, Np)
                out = self._chunk_fn(packed, scene_index[b0:b1], c2w[b0:b1], K[b0:b1], uv[n0:n1], shadows)
                rgb[b0:b1, n0:n1], depth[b0:b1, n0:n1], normal[b0:b1, n0:n1], ids[b0:b1, n0:n1] = out
        return RenderOutput(
            rgb=rgb[:B, :HW].reshape(B, height, width, 3),
            depth=depth[:B, :HW].reshape(B, height, width),
            normal=normal[:B, :HW].reshape(B, height, width, 3),
            ids=ids[:B, :HW].reshape(B, height, width),
        )

    # --- helpers -----------------------------------------------------------------------------------------
    def _padded(self, packed: PackedScenes) -> PackedScenes:
        if self._last_padded is None or self._last_padded[0] is not packed:
            self._last_padded = (packed, pad_packed(packed))
        return self._last_padded[1]

    def _render_culled(self, packed: PackedScenes, scene_index: Tensor, c2w: Tensor, K: Tensor, height: int,
                       width: int, shadows: bool) -> RenderOutput:
        cams = max(1, self.config.cull_rays // (height * width))
        outs = [render_culled(packed, scene_index[b:b + cams], c2w[b:b + cams], K[b:b + cams], height, width,
                              shadows) for b in range(0, c2w.shape[0], cams)]
        rgb, depth, normal, ids = (torch.cat(x) if len(x) > 1 else x[0] for x in zip(*outs))
        return RenderOutput(rgb=rgb, depth=depth, normal=normal, ids=ids)

    def _as_f32(self, x: Tensor) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    def _chunk_shape(self, packed: PackedScenes, B: int, HW: int) -> tuple[int, int]:
        """(cameras, pixels) per chunk so that rays x primitive slots stays within the budget."""
        rays = self.config.chunk_rays
        if rays is None:
            # compiled kernels keep (ray, primitive) terms in registers, so they take far bigger chunks
            default = (2**28 if self.config.compile else 2**26) if self.device.type == "cuda" else 2**18
            budget = self.config.pair_budget or default
            slots = sum(int(t.shape[1]) for t in (packed.aabb_lo, packed.obox_center, packed.ell_center,
                                                  packed.cyl_center, packed.cone_center))
            rays = max(256, budget // max(slots, 1))
        if HW <= rays:
            cams = max(1, min(B, rays // HW))
            if self.config.compile:  # a power of two divides typical batch sizes: little padding
                cams = 1 << (cams.bit_length() - 1)
            return cams, HW
        return 1, rays
