"""The torch ray caster against closed-form geometry; its brute-force and culled paths against each other."""

from __future__ import annotations

import math

import pytest
import torch

from sana_world.camera import euler_to_rotation, intrinsics_from_fov, look_at, make_pose, rotation_x
from sana_world.render.base import ID_MISS, ID_STRUCTURE, Renderer
from sana_world.render.shading import albedo, primitive_table, shadow_rays
from sana_world.render.torch_caster import TorchRenderer, pack_scenes
from sana_world.worlds.palette import TEXTURES
from sana_world.worlds.sampler import sample_scene
from sana_world.worlds.spec import Light, Material, Primitive, Room, SceneObject, SceneSpec

PATHS = [pytest.param(False, id="brute"), pytest.param(True, id="culled")]
WALL_T = 0.1  # wall thickness: the room's inner wall faces sit WALL_T / 2 inside its rectangle


def _room(wall: Material = Material("white"), objects: tuple[SceneObject, ...] = (),
          lights: tuple[Light, ...] = (Light((3.0, -2.6, 3.0)),)) -> SceneSpec:
    room = Room(0.0, 6.0, 0.0, 6.0, 3.0, wall=wall, floor=Material("grey", "tiles", "white", 0.5),
                ceiling=Material("white"))
    return SceneSpec(rooms=(room,), objects=objects, lights=lights, wall_thickness=WALL_T)


def _forward_pose(eye: tuple[float, float, float]) -> torch.Tensor:
    """Camera at ``eye`` looking along world +z (the identity rotation), (1, 4, 4)."""
    return make_pose(torch.eye(3), torch.tensor(eye)).unsqueeze(0)


def _centred_K(size: int, fov: float = 60.0) -> torch.Tensor:
    """Intrinsics of an odd-sized image whose middle pixel looks straight down the optical axis."""
    return intrinsics_from_fov(size, size, fov)


def _random_cameras(spec: SceneSpec, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    poses = []
    for i in range(n):
        r = spec.rooms[i % len(spec.rooms)]
        u = torch.rand(6, generator=g)
        x = r.x0 + 0.3 + u[0] * (r.x1 - r.x0 - 0.6)
        z = r.z0 + 0.3 + u[2] * (r.z1 - r.z0 - 0.6)
        pos = torch.tensor([x, -0.3 - 2.0 * u[1], z])
        R = euler_to_rotation(u[3] * 2 * math.pi, (u[4] - 0.5) * 2.6, (u[5] - 0.5) * 0.6)
        poses.append(make_pose(R, pos))
    return torch.stack(poses)


@pytest.mark.parametrize("cull", PATHS)
def test_wall_depth_id_and_normal(cull: bool) -> None:
    spec = _room()
    out = TorchRenderer(shadows=True, cull=cull).render(spec, _forward_pose((3.0, -1.5, 2.0)), _centred_K(33),
                                                        33, 33)
    # the far wall's inner face is at z = 6 - WALL_T / 2; camera-z = 1 rays give every wall pixel that z-depth
    centre = out.depth[0, 12:21, 12:21]
    assert torch.allclose(centre, torch.full_like(centre, 6.0 - WALL_T / 2 - 2.0), atol=1e-4)
    assert (out.ids[0, 12:21, 12:21] == ID_STRUCTURE).all()
    assert torch.allclose(out.normal[0, 16, 16], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5)
    assert (out.ids[0] != ID_MISS).all(), "a closed room leaves no pixel empty"


@pytest.mark.parametrize("cull", PATHS)
def test_sphere_depth_and_silhouette(cull: bool) -> None:
    ball = SceneObject("ball", (Primitive("sphere", (3.0, -1.5, 4.0), (0.5, 0.5, 0.5), Material("red")),))
    spec = _room(objects=(ball,))
    size = 41
    K = _centred_K(size)
    out = TorchRenderer(shadows=False, cull=cull).render(spec, _forward_pose((3.0, -1.5, 2.0)), K, size, size)
    mid = size // 2
    assert out.depth[0, mid, mid].item() == pytest.approx(4.0 - 0.5 - 2.0, abs=1e-4)
    assert int(out.ids[0, mid, mid]) == 0
    assert torch.allclose(out.normal[0, mid, mid], torch.tensor([0.0, 0.0, -1.0]), atol=1e-4)
    # silhouette: a pixel ray hits the ball iff its angle to the centre is below asin(r / distance)
    f = K[0, 0]
    v, u = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    d = torch.stack([(u - size / 2) / f, (v - size / 2) / f, torch.ones_like(u)], dim=-1)
    angle = torch.acos(d[..., 2] / d.norm(dim=-1))
    edge = math.asin(0.5 / 2.0)
    sure_in, sure_out = angle < edge - 0.01, angle > edge + 0.01
    assert (out.ids[0][sure_in] == 0).all() and (out.ids[0][sure_out] == ID_STRUCTURE).all()
    assert int(sure_in.sum()) > 50


CENTRE = (3.0, -1.0, 4.0)
SHAPE_CASES = [  # (shape, half size, yaw, expected z-depth from z = 1 along +z)
    ("box", (0.4, 0.4, 0.4), 0.0, 3.0 - 0.4),
    ("box", (0.4, 0.4, 0.4), math.pi / 4, 3.0 - 0.4 * math.sqrt(2.0)),
    ("ellipsoid", (0.3, 0.6, 0.5), math.pi / 2, 3.0 - 0.3),  # yaw 90 degrees turns local x onto world z
    ("cylinder", (0.4, 0.5, 0.4), 0.3, 3.0 - 0.4),
    ("cone", (0.4, 0.5, 0.4), 0.0, 3.0 - 0.2),  # mid-height radius of a cone is half its base radius
]


@pytest.mark.parametrize("cull", PATHS)
@pytest.mark.parametrize("shape,size,yaw,expected", SHAPE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SHAPE_CASES)])
def test_primitive_depth(shape: str, size: tuple, yaw: float, expected: float, cull: bool) -> None:
    obj = SceneObject("crate", (Primitive(shape, CENTRE, size, Material("blue"), yaw),))
    r = TorchRenderer(shadows=False, cull=cull)
    out = r.render(_room(objects=(obj,)), _forward_pose((3.0, -1.0, 1.0)), _centred_K(21, 40.0), 21, 21)
    assert int(out.ids[0, 10, 10]) == 0
    assert out.depth[0, 10, 10].item() == pytest.approx(expected, abs=1e-4)
    if shape in ("box", "ellipsoid", "cylinder") and yaw in (0.0, 0.3, math.pi / 2):
        assert torch.allclose(out.normal[0, 10, 10], torch.tensor([0.0, 0.0, -1.0]), atol=1e-4)


@pytest.mark.parametrize("cull", PATHS)
def test_caps_seen_from_above_and_below(cull: bool) -> None:
    cyl = SceneObject("pillar", (Primitive("cylinder", CENTRE, (0.4, 0.5, 0.4), Material("blue")),))
    cone = SceneObject("cone", (Primitive("cone", (1.5, -1.0, 1.5), (0.4, 0.5, 0.4), Material("red")),))
    spec = _room(objects=(cyl, cone))
    r = TorchRenderer(shadows=False, cull=cull)
    down = make_pose(rotation_x(torch.tensor(-math.pi / 2)), torch.tensor([3.0, -2.8, 4.0])).unsqueeze(0)
    out = r.render(spec, down, _centred_K(11, 20.0), 11, 11)  # looking down (+y) onto the cylinder's top cap
    assert int(out.ids[0, 5, 5]) == 0 and out.depth[0, 5, 5].item() == pytest.approx(2.8 - 1.5, abs=1e-4)
    assert torch.allclose(out.normal[0, 5, 5], torch.tensor([0.0, -1.0, 0.0]), atol=1e-4)
    up = make_pose(rotation_x(torch.tensor(math.pi / 2)), torch.tensor([1.5, -0.2, 1.5])).unsqueeze(0)
    out = r.render(spec, up, _centred_K(11, 20.0), 11, 11)  # looking up (-y) at the cone's base
    assert int(out.ids[0, 5, 5]) == 1 and out.depth[0, 5, 5].item() == pytest.approx(0.3, abs=1e-4)
    assert torch.allclose(out.normal[0, 5, 5], torch.tensor([0.0, 1.0, 0.0]), atol=1e-4)


@pytest.mark.parametrize("cull", PATHS)
def test_normals_unit_and_facing_camera(cull: bool) -> None:
    spec = sample_scene(4)
    c2w = _random_cameras(spec, 3, seed=1)
    K = intrinsics_from_fov(32, 32, 90.0)
    out = TorchRenderer(shadows=False, cull=cull).render(spec, c2w, K, 32, 32)
    hit = out.ids != ID_MISS
    assert hit.float().mean() > 0.99
    assert torch.allclose(out.normal[hit].norm(dim=-1), torch.ones(()), atol=1e-4)
    v, u = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    d_cam = torch.stack([(u - 16) / K[0, 0], (v - 16) / K[1, 1], torch.ones_like(u)], dim=-1)
    d = torch.einsum("bij,hwj->bhwi", c2w[:, :3, :3], d_cam)
    assert ((out.normal * d).sum(-1)[hit] < 0).all()


@pytest.mark.parametrize("cull", PATHS)
def test_shadow_darkens_floor_behind_an_object(cull: bool) -> None:
    # light up and to the -x side of a crate: its shadow falls on the floor at x in (3.3, 3.87), z ~ 4
    crate = SceneObject("crate", (Primitive("box", (3.0, -0.3, 4.0), (0.3, 0.3, 0.3), Material("yellow")),))
    spec = _room(objects=(crate,), lights=(Light((1.5, -2.5, 4.0)),))
    c2w = look_at(torch.tensor([3.6, -2.0, 2.5]), torch.tensor([3.6, 0.0, 4.0])).unsqueeze(0)
    K = _centred_K(9, 10.0)
    lit = TorchRenderer(shadows=False, cull=cull).render(spec, c2w, K, 9, 9)
    shadowed = TorchRenderer(shadows=True, cull=cull).render(spec, c2w, K, 9, 9)
    assert int(shadowed.ids[0, 4, 4]) == ID_STRUCTURE
    assert torch.equal(lit.depth, shadowed.depth)
    a, b = lit.rgb[0, 4, 4].float().mean(), shadowed.rgb[0, 4, 4].float().mean()
    assert b < 0.8 * a, f"shadowed pixel {b:.1f} should be much darker than lit {a:.1f}"
    # a floor point in the open is equally lit with and without shadows
    open_cam = look_at(torch.tensor([1.0, -2.0, 1.0]), torch.tensor([1.0, 0.0, 2.0])).unsqueeze(0)
    lit_o = TorchRenderer(shadows=False, cull=cull).render(spec, open_cam, K, 9, 9)
    sh_o = TorchRenderer(shadows=True, cull=cull).render(spec, open_cam, K, 9, 9)
    assert torch.equal(lit_o.rgb, sh_o.rgb)


def test_output_types_determinism_and_protocol() -> None:
    spec = sample_scene(3)
    r = TorchRenderer()
    assert isinstance(r, Renderer)
    c2w = _random_cameras(spec, 2, seed=2)
    K = intrinsics_from_fov(24, 16, 90.0)
    a, b = r.render(spec, c2w, K, 16, 24), TorchRenderer().render(spec, c2w, K.expand(2, 3, 3), 16, 24)
    assert a.rgb.shape == (2, 16, 24, 3) and a.rgb.dtype == torch.uint8
    assert a.depth.shape == (2, 16, 24) and a.depth.dtype == torch.float32
    assert a.normal.shape == (2, 16, 24, 3) and a.ids.shape == (2, 16, 24) and a.ids.dtype == torch.int32
    for x, y in zip((a.rgb, a.depth, a.normal, a.ids), (b.rgb, b.depth, b.normal, b.ids)):
        assert torch.equal(x, y)
    one = r.render(spec, c2w[0], K, 16, 24)  # a single (4, 4) pose is a batch of one
    assert torch.equal(one.rgb[0], a.rgb[0])


def test_bad_inputs_raise() -> None:
    spec, r = sample_scene(3), TorchRenderer()
    K = intrinsics_from_fov(8, 8)
    with pytest.raises(ValueError, match="c2w"):
        r.render(spec, torch.eye(3), K, 8, 8)
    with pytest.raises(ValueError, match="K must"):
        r.render(spec, torch.eye(4).expand(2, 4, 4), torch.eye(3).expand(3, 3, 3), 8, 8)
    with pytest.raises(ValueError, match="height and width"):
        r.render(spec, torch.eye(4), K, 0, 8)
    with pytest.raises(ValueError, match="scene_index"):
        r.render_packed(pack_scenes([spec]), torch.tensor([1]), torch.eye(4)[None], K, 8, 8)


@pytest.mark.parametrize("cull", PATHS)
def test_packed_batch_equals_single_renders(cull: bool) -> None:
    scenes = [sample_scene(3), sample_scene(4)]
    packed = pack_scenes(scenes)
    cams = [_random_cameras(s, 2, seed=i) for i, s in enumerate(scenes)]
    index = torch.tensor([0, 1, 1, 0])
    c2w = torch.stack([cams[0][0], cams[1][0], cams[1][1], cams[0][1]])
    K = intrinsics_from_fov(24, 24, 90.0)
    r = TorchRenderer(cull=cull)
    out = r.render_packed(packed, index, c2w, K, 24, 24)
    for j, s in enumerate(index.tolist()):
        single = r.render(scenes[s], c2w[j], K, 24, 24)
        assert torch.equal(out.rgb[j], single.rgb[0]) and torch.equal(out.ids[j], single.ids[0])
        assert torch.equal(out.depth[j], single.depth[0])


@pytest.mark.parametrize("cull", PATHS)
def test_per_call_shadows_override(cull: bool) -> None:
    """render_packed(shadows=False) on a shadowing renderer is a shadowless renderer's frame; depth, normals
    and ids (all a task reads) equal the shadowed frame's, and the shadows do change its colours."""
    scenes = [sample_scene(3), sample_scene(4)]
    packed = pack_scenes(scenes)
    c2w = torch.cat([_random_cameras(s, 2, seed=i) for i, s in enumerate(scenes)])
    index, K = torch.tensor([0, 0, 1, 1]), intrinsics_from_fov(24, 24, 90.0)
    full = TorchRenderer(cull=cull).render_packed(packed, index, c2w, K, 24, 24)
    quick = TorchRenderer(cull=cull).render_packed(packed, index, c2w, K, 24, 24, shadows=False)
    plain = TorchRenderer(shadows=False, cull=cull).render_packed(packed, index, c2w, K, 24, 24)
    assert torch.equal(quick.rgb, plain.rgb) and not torch.equal(quick.rgb, full.rgb)
    for f in ("depth", "normal", "ids"):
        assert torch.equal(getattr(quick, f), getattr(full, f)), f


def test_culled_path_matches_brute_force() -> None:
    K = intrinsics_from_fov(40, 32, 80.0)
    for seed in (0, 4, 5):
        spec = sample_scene(seed)
        c2w = _random_cameras(spec, 3, seed=seed)
        a = TorchRenderer(cull=False).render(spec, c2w, K, 32, 40)
        b = TorchRenderer(cull=True).render(spec, c2w, K, 32, 40)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.depth, b.depth) and torch.equal(a.rgb, b.rgb)


def test_every_texture_makes_a_pattern() -> None:
    # points on a wall facing -z, 2 m x 2 m: every patterned texture varies, plain does not
    v, u = torch.meshgrid(torch.linspace(-2.0, 0.0, 64), torch.linspace(1.0, 3.0, 64), indexing="ij")
    pos = torch.stack([u, v, torch.full_like(u, 5.95)], dim=-1).reshape(-1, 3)
    normal = torch.tensor([0.0, 0.0, -1.0]).expand_as(pos)
    for name, code in TEXTURES.items():
        spec = _room(wall=Material("blue", name, "yellow", 0.5))
        table = primitive_table(spec)
        wall = next(i for i, (p, _) in enumerate(spec.primitives()) if p.center[2] > 5.9)
        assert int(table.texture[wall]) == code
        rgb = albedo(pos, normal, torch.full((pos.shape[0],), wall), table)
        assert rgb.shape == pos.shape and bool(((rgb >= 0) & (rgb <= 1)).all())
        assert torch.equal(rgb, albedo(pos, normal, torch.full((pos.shape[0],), wall), table))
        spread = rgb.std(dim=0).max().item()
        if name == "plain":
            assert spread < 1e-6
        else:
            assert spread > 0.05, f"{name} looks flat (std {spread:.3f})"
    # and a rendered wall shows it
    K = intrinsics_from_fov(32, 32, 60.0)
    plain = TorchRenderer().render(_room(), _forward_pose((3.0, -1.5, 3.0)), K, 32, 32)
    brick_room = _room(wall=Material("white", "brick", "black", 0.5))
    brick = TorchRenderer().render(brick_room, _forward_pose((3.0, -1.5, 3.0)), K, 32, 32)
    assert (plain.rgb.float() - brick.rgb.float()).abs().mean() > 5.0


def test_shadow_rays_helper() -> None:
    spec = sample_scene(4)
    table = primitive_table(spec)
    pos = torch.tensor([[1.0, -0.0, 1.0], [2.0, -1.0, 0.5]])
    normal = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    origins, dirs, max_t = shadow_rays(pos, normal, table)
    L = len(spec.lights)
    assert origins.shape == dirs.shape == (2, L, 3) and max_t.shape == (2, L)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert torch.allclose(origins + dirs * max_t.unsqueeze(-1), table.light_pos.expand(2, L, 3), atol=1e-4)
    assert torch.allclose(origins[:, 0], pos + 1e-3 * normal)
