"""The batched ground-truth world behind every GT env: N cameras in N scenes, stepped and rendered together.

``GTEnv`` is this with N = 1; ``GTVectorEnv`` is this with N envs on any device. Camera states are
tensors (float64 position and heading angles), collisions are checked against each scene's signed
distance field on the device, and frames come from the torch ray caster's multi-scene path.

On the CPU the per-step bookkeeping (pose step, collision test, camera matrices, hit points) runs in numpy
on the tensors' own memory: a few envs make tiny arrays, where a torch op costs several times a numpy op.
Both paths perform the same float operations in the same order (trigonometry comes from torch in both),
so they give bitwise equal states and frames (``tests/envs/test_fast_env.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from sana_world.envs.spaces import ACTION_MODES
from sana_world.envs.tasks import POINT_STRIDE, BatchedTask, FrameView, TaskConfig
from sana_world.camera import (TwistLimits, euler_to_rotation, euler_to_rotation_np, intrinsics_from_fov,
                               sincos_np, step_pose)
from sana_world.render.base import RenderOutput, downsample_supersampled
from sana_world.render.fast_shading import available as numba_available
from sana_world.render.fast_shading import njit
from sana_world.worlds.collision import PackedSDF, SceneSDF, free_positions
from sana_world.worlds.sampler import HELDOUT_START, WorldConfig, sample_scene
from sana_world.worlds.spec import SceneSpec

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class GTConfig:
    """Everything that defines a GT environment."""

    task: str = "explore"  # "explore" | "pointnav" | "objectnav"
    width: int = 128
    height: int = 128
    fov_deg: float = 90.0
    # "twist": Box(-1, 1, (6,)); "keys": MultiBinary(8) over "wasdijkl"; "nav": Discrete(3) forward / turns
    action_mode: str = "twist"
    limits: TwistLimits = TwistLimits()
    key_translation: float = 0.05  # metres per key step (SANA-WM DSL default)
    key_rotation_deg: float = 1.2  # degrees per key step (SANA-WM DSL default)
    depth: bool = False  # add a "depth" entry (H, W, 1) float32 metres to the observation
    world: WorldConfig = WorldConfig()
    split: str = "train"
    eye_height: float = 1.5
    clearance: float = 0.25  # the camera is a sphere of this radius
    shadows: bool = True
    renderer: str = "auto"  # "auto" | "torch" | "open3d" (CPU); auto: open3d (+numba) on CPU if importable
    compile_renderer: bool = False  # torch.compile the ray caster (CUDA: ~15x faster after a ~2 min warm-up)
    # rays a side per pixel of the RGB frame, box-filtered down (antialiased, as a camera integrating over its
    # pixels sees; s*s times the shading work). Depth, normals and ids stay one ray a pixel (see GTWorld.render)
    supersample: int = 1
    device: str = "cpu"
    max_depth: float = 100.0  # depth observations are clipped here (inf on a miss becomes this)
    task_cfg: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.renderer not in ("auto", "torch", "open3d"):
            raise ValueError(f"renderer must be 'auto', 'torch' or 'open3d', got {self.renderer!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size must be at least 16x16, got {self.width}x{self.height}")
        ss = self.supersample
        if isinstance(ss, bool) or not isinstance(ss, (int, np.integer)) or not 1 <= ss <= 8:
            raise ValueError(f"supersample must be an int in 1..8 (rays a side per pixel), got {ss!r}")
        if not 1.0 <= float(self.fov_deg) < 179.0:
            raise ValueError(f"fov_deg (horizontal field of view) must lie in [1, 179), got {self.fov_deg}")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be a torch device string such as 'cpu' or 'cuda', got {self.device!r}"
                             ) from e  # fmt: skip
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r}, but this torch build sees no CUDA device "
                             "(torch.cuda.is_available() is False); use device='cpu'")  # fmt: skip

    def step_limits(self) -> TwistLimits:
        """Per-step maximum motion: the DSL speeds in key mode, ``limits`` otherwise."""
        if self.action_mode == "keys":
            return TwistLimits(forward=self.key_translation, right=self.key_translation, up=self.key_translation,
                               yaw_deg=self.key_rotation_deg, pitch_deg=self.key_rotation_deg,
                               roll_deg=self.key_rotation_deg, pitch_limit_deg=self.limits.pitch_limit_deg,
                               roll_limit_deg=self.limits.roll_limit_deg)
        return self.limits


def scene_seed(split: str, rng: np.random.Generator) -> int:
    """A scene seed from ``split`` drawn with ``rng``."""
    if split == "train":
        return int(rng.integers(0, HELDOUT_START))
    return HELDOUT_START + int(rng.integers(0, 1_000))


def resolve_renderer(cfg: GTConfig) -> str:
    """The renderer ``cfg`` asks for; "auto" is open3d (Embree + numba shading) on the CPU when it imports,
    else the torch ray caster (always on CUDA). Both agree on depth within 1 % on >= 99.99 % of pixels."""
    if cfg.renderer != "auto":
        return cfg.renderer
    if torch.device(cfg.device).type != "cpu":
        return "torch"
    try:
        from sana_world.render.open3d_import import import_open3d

        import_open3d()
    except ImportError:
        return "torch"
    return "open3d"


def _make_renderer(cfg: GTConfig, num_envs: int):
    """The GT renderer of ``num_envs`` envs. The open3d one keeps a RaycastingScene per scene: room for every
    env's scene and as many again (the scenes autoresets leave behind age out), so a batch never evicts a
    scene it still renders (with the default 4, a batch of 8 rebuilt every scene every frame: 40x slower)."""
    if resolve_renderer(cfg) == "torch":
        from sana_world.render.torch_caster import TorchRenderer

        return TorchRenderer(device=cfg.device, shadows=cfg.shadows, compile=cfg.compile_renderer)
    if cfg.device != "cpu":
        raise ValueError("the open3d renderer runs on the CPU only; use renderer='torch' on other devices")
    from sana_world.render.open3d_backend import Open3DConfig, Open3DRenderer

    return Open3DRenderer(config=Open3DConfig(shadows=cfg.shadows, cache_size=max(4, 2 * num_envs)))


_Z32 = np.float32(0.0)
_INF32 = np.float32(np.inf)


@njit(cache=True, fastmath=False, error_model="numpy")
def _sdf_one(px, py, pz, i, boxes, c, s, spheres, cyl):  # pragma: no cover - compiled
    """float32 signed distance of the float32 point (px, py, pz) in scene ``i`` of a CPU
    :class:`~sana_world.worlds.collision.PackedSDF`: the float32 operations of ``PackedSDF._distance_np`` in
    the same order (numpy's norm of a short last axis sums left to right, ``hypot`` is libm's), so the value
    is bitwise the same."""
    best = _INF32
    for j in range(boxes.shape[1]):  # 1. oriented boxes
        dx, dy, dz = px - boxes[i, j, 0], py - boxes[i, j, 1], pz - boxes[i, j, 2]
        lx = c[i, j] * dx - s[i, j] * dz
        lz = s[i, j] * dx + c[i, j] * dz
        qx, qy, qz = abs(lx) - boxes[i, j, 3], abs(dy) - boxes[i, j, 4], abs(lz) - boxes[i, j, 5]
        mx, my, mz = max(qx, _Z32), max(qy, _Z32), max(qz, _Z32)
        best = min(best, np.sqrt(mx * mx + my * my + mz * mz) + min(max(max(qx, qy), qz), _Z32))
    for j in range(spheres.shape[1]):  # 2. spheres
        dx, dy, dz = px - spheres[i, j, 0], py - spheres[i, j, 1], pz - spheres[i, j, 2]
        best = min(best, np.sqrt(dx * dx + dy * dy + dz * dz) - spheres[i, j, 3])
    for j in range(cyl.shape[1]):  # 3. capped vertical cylinders
        dxz = np.float32(math.hypot(px - cyl[i, j, 0], pz - cyl[i, j, 2])) - cyl[i, j, 3]
        dy = abs(py - cyl[i, j, 1]) - cyl[i, j, 4]
        mx, my = max(dxz, _Z32), max(dy, _Z32)
        best = min(best, np.sqrt(mx * mx + my * my) + min(max(dxz, dy), _Z32))
    return best


@njit(cache=True, fastmath=False, error_model="numpy")
def _in_rooms_one(x, z, i, rooms):  # pragma: no cover - compiled
    """Whether float64 (x, z) lies in some room of scene ``i`` (float32 bounds, compared in float64)."""
    for j in range(rooms.shape[1]):
        if x >= rooms[i, j, 0] and x <= rooms[i, j, 1] and z >= rooms[i, j, 2] and z <= rooms[i, j, 3]:
            return True
    return False


@njit(cache=True, fastmath=False, error_model="numpy")
def _angles_kernel(angles, d, pitch_limit, roll_limit, keys_mode, new_angles, trig):  # pragma: no cover
    """The rotation half of :func:`step_pose` (float64, the same operations): new angles (N, 3) and ``trig``
    (4, N), the angles to take sin / cos of: the translation heading, then the new yaw, pitch and roll."""
    for i in range(angles.shape[0]):
        yaw, pitch, roll = angles[i, 0], angles[i, 1], angles[i, 2]
        new_yaw = (yaw + d[i, 3] + math.pi) % (2 * math.pi) - math.pi  # Python's (= torch's) float remainder
        new_pitch = pitch + d[i, 4]
        if keys_mode:
            new_pitch = pitch if abs(new_pitch) > pitch_limit else new_pitch
        else:
            new_pitch = min(max(new_pitch, -pitch_limit), pitch_limit)
        new_roll = min(max(roll + d[i, 5], -roll_limit), roll_limit)
        new_angles[i, 0], new_angles[i, 1], new_angles[i, 2] = new_yaw, new_pitch, new_roll
        trig[0, i] = new_yaw if keys_mode else yaw
        trig[1, i], trig[2, i], trig[3, i] = new_yaw, new_pitch, new_roll


@njit(cache=True, fastmath=False, error_model="numpy")
def _commit_kernel(position, d, sin, cos, clearance, boxes, c, s, spheres, cyl, rooms, out_pos, c2w, c2w32,
                   collided):  # pragma: no cover - compiled
    """The translation half of :func:`step_pose`, the collision test of :meth:`GTWorld.move` and the camera
    matrices of :func:`euler_to_rotation` (the same float operations in the same order), per env."""
    for i in range(position.shape[0]):
        # 1. translation along the level heading; world up is -y
        sh, ch = sin[0, i], cos[0, i]
        dx = -sh * d[i, 0] + ch * d[i, 1]
        dz = ch * d[i, 0] + sh * d[i, 1]
        px, py, pz = position[i, 0], position[i, 1], position[i, 2]
        nx, ny, nz = px + dx, py + -d[i, 2], pz + dz
        # 2. keep the move if the camera sphere stays free and inside a room
        ex, ey, ez = nx - px, ny - py, nz - pz
        moved = ex * ex + ey * ey + ez * ez > 0.0  # the norm is > 0 exactly when its square is
        dist = _sdf_one(np.float32(nx), np.float32(ny), np.float32(nz), i, boxes, c, s, spheres, cyl)
        ok = dist > clearance and _in_rooms_one(nx, nz, i, rooms)
        if not ok:
            nx, ny, nz = px, py, pz
        collided[i] = moved and not ok
        out_pos[i, 0], out_pos[i, 1], out_pos[i, 2] = nx, ny, nz
        # 3. camera-to-world of the new heading angles
        sy, sp, sr = sin[1, i], sin[2, i], sin[3, i]
        cy, cp, cr = cos[1, i], cos[2, i], cos[3, i]
        c2w[i, 0, 0], c2w[i, 0, 1], c2w[i, 0, 2] = cy * cr - sy * sp * sr, -cy * sr - sy * sp * cr, -sy * cp
        c2w[i, 1, 0], c2w[i, 1, 1], c2w[i, 1, 2] = cp * sr, cp * cr, -sp
        c2w[i, 2, 0], c2w[i, 2, 1], c2w[i, 2, 2] = sy * cr + cy * sp * sr, -sy * sr + cy * sp * cr, cy * cp
        c2w[i, 0, 3], c2w[i, 1, 3], c2w[i, 2, 3] = nx, ny, nz
        c2w[i, 3, 0], c2w[i, 3, 1], c2w[i, 3, 2], c2w[i, 3, 3] = 0.0, 0.0, 0.0, 1.0
        for r in range(4):
            for k in range(4):
                c2w32[i, r, k] = np.float32(c2w[i, r, k])


@njit(cache=True, fastmath=False, error_model="numpy")
def _hit_points_kernel(depth, dirs, c2w, stride, out):  # pragma: no cover - compiled
    """:meth:`GTWorld.hit_points` in float32: ``baddbmm`` sums the three products left to right and then adds
    the translation, with no fused multiply-adds, and so does this (checked bitwise against it)."""
    h, w = depth.shape[1], depth.shape[2]
    for n in range(depth.shape[0]):
        m = 0
        for y in range(0, h, stride):
            for x in range(0, w, stride):
                t = depth[n, y, x]
                a0, a1, a2 = dirs[m, 0] * t, dirs[m, 1] * t, dirs[m, 2] * t
                for j in range(3):
                    out[n, m, j] = c2w[n, j, 3] + (a0 * c2w[n, j, 0] + a1 * c2w[n, j, 1] + a2 * c2w[n, j, 2])
                m += 1
    return out


class GTWorld:
    """N cameras, each in its own scene, with one task; stepped as a batch."""

    def __init__(self, cfg: GTConfig, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.cfg, self.n = cfg, num_envs
        self.device = torch.device(cfg.device)
        self.numpy_steps = self.device.type == "cpu" and numba_available()  # bookkeeping: see the module doc
        self.K = intrinsics_from_fov(cfg.width, cfg.height, cfg.fov_deg).to(self.device)  # (3, 3)
        ss = cfg.supersample  # the RGB render's camera: ss x ss rays per pixel of K's
        self.K_rgb = self.K if ss == 1 else intrinsics_from_fov(cfg.width * ss, cfg.height * ss,
                                                                 cfg.fov_deg).to(self.device)  # (3, 3)
        self.renderer = _make_renderer(cfg, num_envs)
        self.renderer_name = resolve_renderer(cfg)
        self.task = BatchedTask(cfg.task, num_envs, cfg.task_cfg, self.device)
        self.view = self.task.view(cfg.height, cfg.width)  # the pixels the task's score reads (None: none)
        f64 = dict(dtype=torch.float64, device=self.device)
        self.position = torch.zeros(num_envs, 3, **f64)  # (N, 3) world
        self.angles = torch.zeros(num_envs, 3, **f64)  # (N, 3) yaw, pitch, roll
        self.specs: list[SceneSpec | None] = [None] * num_envs
        self._sdf: PackedSDF | None = None
        self._scene_sdfs: list[SceneSDF | None] = [None] * num_envs  # each env's scene's, kept across resets
        self._packed = None
        self._dirs_cam: tuple[int, torch.Tensor] | None = None
        self._c2w: torch.Tensor | None = None
        self._c2w32: torch.Tensor | None = None
        self._bottom_row = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], dtype=torch.float64,
                                        device=self.device).expand(num_envs, 1, 4)
        limits = cfg.step_limits()
        self._scale = torch.as_tensor(limits.scale(), **f64)  # (6,)
        self._scale_np = limits.scale()  # (6,) float64, the same values
        self._pitch_limit = math.radians(limits.pitch_limit_deg)
        self._roll_limit = math.radians(limits.roll_limit_deg)

    # ---------------------------------------------------------------------------------------------------
    def reset_slots(self, slots: list[int], rngs: list[np.random.Generator],
                    scenes: list[SceneSpec | None] | None = None) -> None:
        """New episodes in ``slots``: a scene (given or sampled from the split), a free start, task state."""
        scenes = scenes or [None] * len(slots)
        for i, rng, spec in zip(slots, rngs, scenes):
            # 1. the scene
            if spec is None:
                spec = sample_scene(scene_seed(self.cfg.split, rng), self.cfg.world)
            self.specs[i] = spec
            # 2. a free start, facing into the room (heading towards the room centre ± 60°)
            pos = free_positions(spec, rng, 1, height=self.cfg.eye_height, clearance=self.cfg.clearance + 0.2)[0]
            room = spec.rooms[spec.room_at(pos[0], pos[2]) or 0]
            cx, cz = (room.x0 + room.x1) / 2 - pos[0], (room.z0 + room.z1) / 2 - pos[2]
            yaw = math.atan2(-cx, cz) + float(rng.uniform(-math.pi / 3, math.pi / 3))
            self.position[i] = torch.as_tensor(pos, dtype=torch.float64)
            self.angles[i] = torch.tensor([yaw, 0.0, 0.0], dtype=torch.float64)
            # 3. the task
            self.task.reset_slot(i, spec, pos, rng)
        self._c2w = self._c2w32 = None
        self._rebuild(list(slots))

    def _rebuild(self, slots: list[int]) -> None:
        """Collision and render tables after scenes ``slots`` changed: the torch renderer's pack swaps only
        those scenes when they fit its padded sizes (an autoreset of a few envs in a large batch), else
        every scene is packed anew; the collision tables reuse the other scenes' SDFs."""
        for i in slots:
            self._scene_sdfs[i] = SceneSDF(self.specs[i])
        specs = [s for s in self.specs if s is not None]
        if len(specs) != self.n:
            return
        self._sdf = PackedSDF(specs, self.device, list(self._scene_sdfs))
        if self.renderer_name == "torch":
            from sana_world.render.torch_packing import pack_scenes, repack_slots

            packed = None
            if self._packed is not None and len(slots) < self.n:
                packed = repack_slots(self._packed, slots, [specs[i] for i in slots])
            self._packed = packed or pack_scenes(specs, self.device,
                                                 pad_multiple=8 if self.cfg.compile_renderer else 1)

    # ---------------------------------------------------------------------------------------------------
    def c2w(self) -> torch.Tensor:
        """(N, 4, 4) float64 camera-to-world (cached until the cameras move)."""
        if self._c2w is not None:
            return self._c2w
        if self.numpy_steps:
            ang = self.angles.numpy()
            out_np = np.zeros((self.n, 4, 4), dtype=np.float64)
            out_np[:, :3, :3] = euler_to_rotation_np(ang[:, 0], ang[:, 1], ang[:, 2])  # (N, 3, 3)
            out_np[:, :3, 3] = self.position.numpy()
            out_np[:, 3, 3] = 1.0
            self._c2w = torch.from_numpy(out_np)
            return self._c2w
        R = euler_to_rotation(*self.angles.unbind(-1))  # (N, 3, 3)
        out = torch.cat([torch.cat([R, self.position[:, :, None]], dim=2), self._bottom_row], dim=1)
        self._c2w = out
        return out

    def c2w32(self) -> torch.Tensor:
        """(N, 4, 4) float32 camera-to-world (cached until the cameras move)."""
        if self._c2w32 is None:
            c2w = self.c2w()
            self._c2w32 = torch.from_numpy(c2w.numpy().astype(np.float32)) if self.numpy_steps else c2w.to(
                torch.float32)
        return self._c2w32

    def move(self, twist: torch.Tensor, keys_mode: bool) -> torch.Tensor:
        """Apply normalised twists (N, 6); returns the collision flags (N,).

        Translation follows the level heading; a move that would bring the camera within ``clearance``
        of any solid, or out of every room, is cancelled (rotation still applies). In twist mode the
        heading before the step is used and pitch is clamped at its limit; in key mode the DSL's rules
        hold: rotate first, move along the new heading, and drop a pitch step that would cross the limit.
        """
        if self._sdf is None:
            raise RuntimeError("reset before step")
        if self.numpy_steps:
            return torch.from_numpy(self._move_np(twist.numpy(), keys_mode))
        d = twist.to(torch.float64) * self._scale  # (N, 6)
        new_pos, new_angles = step_pose(self.position, self.angles, d, self._pitch_limit, self._roll_limit,
                                        keys_mode)
        moved = (new_pos - self.position).norm(dim=-1) > 0
        ok = (self._sdf.distance(new_pos) > self.cfg.clearance) & self._sdf.in_rooms(new_pos)
        collided = moved & ~ok
        self.position = torch.where(ok[:, None], new_pos, self.position)
        self.angles = new_angles
        self._c2w = self._c2w32 = None
        return collided

    def _move_np(self, twist: np.ndarray, keys_mode: bool) -> np.ndarray:
        """:meth:`move` with numba kernels and torch's trigonometry: twists (N, 6) -> collisions (N,) bool."""
        sdf = self._sdf
        assert sdf is not None and sdf._np is not None
        n, a = self.n, sdf._np
        d = twist.astype(np.float64) * self._scale_np  # (N, 6)
        # 1. new heading angles and the angles whose sin / cos the step needs: (4, N) heading, yaw, pitch, roll
        new_angles, trig = np.empty((n, 3)), np.empty((4, n))
        _angles_kernel(self.angles.numpy(), d, self._pitch_limit, self._roll_limit, keys_mode, new_angles, trig)
        sin, cos = sincos_np(trig)
        # 2. translate, cancel moves into solids or out of every room, build the camera matrices
        pos, c2w, c2w32 = np.empty((n, 3)), np.empty((n, 4, 4)), np.empty((n, 4, 4), dtype=np.float32)
        collided = np.empty(n, dtype=np.bool_)
        _commit_kernel(self.position.numpy(), d, sin, cos, np.float32(self.cfg.clearance), a["boxes"], a["c"],
                       a["s"], a["spheres"], a["cyl"], a["rooms"], pos, c2w, c2w32, collided)
        # 3. fresh arrays (never written in place: earlier tensors that callers hold stay valid)
        self.position, self.angles = torch.from_numpy(pos), torch.from_numpy(new_angles)
        self._c2w, self._c2w32 = torch.from_numpy(c2w), torch.from_numpy(c2w32)
        return collided

    def render(self, slots: list[int] | None = None, onto: RenderOutput | None = None,
               rgb: bool = True) -> RenderOutput:
        """Frames for every env from its current camera. With ``slots`` and ``onto`` (the last frames of every
        env), only those envs are rendered and the other rows are ``onto``'s (a new output; ``onto`` is left
        as it was): what an autoreset of a few envs needs. ``rgb=False``: the caller reads depth, normals
        and ids only, so the torch renderer casts no shadow rays (4x fewer rays at three lights) and the
        returned rgb is *not* the GT frame (unshadowed); the open3d renderer renders as usual. With
        ``compile_renderer`` the shadowless frames compile a graph of their own (once).
        With ``supersample`` s > 1 (and ``rgb``) the frame is rendered at s x s rays a pixel and brought down
        by :func:`~sana_world.render.base.downsample_supersampled`."""
        rows = list(range(self.n)) if slots is None or onto is None else sorted(slots)
        ss = self.cfg.supersample if rgb else 1
        H, W, K = self.cfg.height * ss, self.cfg.width * ss, self.K_rgb if rgb else self.K
        out = self._cast(rows, K, H, W, shadows=None if rgb else False)
        out = downsample_supersampled(out, ss)
        if len(rows) == self.n:
            return out
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        return RenderOutput(*(getattr(onto, f).index_copy(0, idx.to(getattr(onto, f).device), getattr(out, f))
                              for f in ("rgb", "depth", "normal", "ids")))

    def render_view(self, view: FrameView) -> RenderOutput:
        """Depth, normals and ids (N, h, w) of the pixels of ``view`` only, for every env: the camera of those
        pixels casts, bit for bit, the rays the full frame's camera casts through them (its stride is a power of
        two and K's centre a multiple of 1/2), so they equal ``view.crop`` of :meth:`render`'s. The rgb is not
        the GT frame (rendered as ``render(rgb=False)`` renders it)."""
        s = view.stride
        Kv = self.K.to(torch.float64).clone()  # (3, 3); every operation below is exact
        Kv[0, 2] = (Kv[0, 2] - view.x0 + (s - 1) / 2) / s
        Kv[1, 2] = (Kv[1, 2] - view.y0 + (s - 1) / 2) / s
        Kv[:2, :2] /= s
        h, w = view.shape
        return self._cast(list(range(self.n)), Kv.to(self.K.dtype), h, w, shadows=False)

    def _cast(self, rows: list[int], K: torch.Tensor, H: int, W: int, shadows: bool | None) -> RenderOutput:
        """Frames (len(rows), H, W) of envs ``rows`` through camera ``K``; ``shadows`` as in
        :meth:`TorchRenderer.render_packed` (the open3d renderer renders as usual)."""
        c2w = self.c2w32()
        if self._packed is not None:
            idx = torch.tensor(rows, dtype=torch.long, device=self.device)
            return self.renderer.render_packed(self._packed, idx, c2w[idx] if len(rows) < self.n else c2w, K, H, W,
                                               shadows=shadows)
        outs = [self.renderer.render(self.specs[i], c2w[i:i + 1], K, H, W) for i in rows]
        return outs[0] if len(outs) == 1 else RenderOutput(*(torch.cat([getattr(o, f) for o in outs])
                                                             for f in ("rgb", "depth", "normal", "ids")))

    def score(self, frame: RenderOutput, collided: torch.Tensor,
              viewed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's reward (N,) and success (N,) for this step from ``frame``: a full :meth:`render`, or with
        ``viewed`` a :meth:`render_view` of ``self.view`` (the task's view of this world's frames)."""
        if viewed and (self.view is None or tuple(frame.depth.shape[1:]) != self.view.shape):
            raise ValueError(f"a viewed frame must be render_view({self.view}), got depth {tuple(frame.depth.shape)}")
        points = None
        if self.cfg.task == "explore":
            points = self.hit_points(frame.depth, strided=viewed)
        return self.task.score(self.position, frame.depth, frame.ids, points, collided, viewed=viewed)

    def observe_start(self, slots: list[int], frame: RenderOutput) -> None:
        """The task counts the reset view ``frame`` (every env's render) of ``slots`` as found, unrewarded
        (:meth:`BatchedTask.observe_start`)."""
        points = self.hit_points(frame.depth) if self.cfg.task == "explore" else None
        self.task.observe_start(slots, frame.depth, frame.ids, points)

    def hit_points(self, depth: torch.Tensor, stride: int = POINT_STRIDE, strided: bool = False) -> torch.Tensor:
        """World points (N, M, 3) of every ``stride``-th pixel's hit (non-finite where none). ``strided``:
        ``depth`` (N, ceil(H / stride), ceil(W / stride)) already holds those pixels only."""
        if strided:
            want = (self.n, -(-self.cfg.height // stride), -(-self.cfg.width // stride))
            if tuple(depth.shape) != want:
                raise ValueError(f"strided depth must have shape {want}, got {tuple(depth.shape)}")
        if self._dirs_cam is None or self._dirs_cam[0] != stride:
            from sana_world.camera import camera_rays

            eye = torch.eye(4, device=self.device)
            _, dirs = camera_rays(eye, self.K, self.cfg.height, self.cfg.width)  # (H, W, 3), camera z = 1
            self._dirs_cam = (stride, dirs[::stride, ::stride].reshape(-1, 3))  # (M, 3)
        dirs = self._dirs_cam[1]
        c2w = self.c2w32()
        if self.numpy_steps:
            out = np.empty((self.n, dirs.shape[0], 3), dtype=np.float32)
            step = 1 if strided else stride
            return torch.from_numpy(_hit_points_kernel(depth.numpy(), dirs.numpy(), c2w.numpy(), step, out))
        d = (depth if strided else depth[:, ::stride, ::stride]).reshape(self.n, -1, 1)  # (N, M, 1)
        return torch.baddbmm(c2w[:, None, :3, 3], dirs[None] * d, c2w[:, :3, :3].transpose(1, 2))  # (N, M, 3)
