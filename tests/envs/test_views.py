"""Task views (``BatchedTask.view`` / ``GTWorld.render_view``): a render of only the pixels a task's score reads
equals those pixels of the full render bit for bit, on every renderer, and scores the same rewards."""

import numpy as np
import pytest
import torch

from sana_world.envs.tasks import POINT_STRIDE, FrameView
from sana_world.envs.world import GTConfig, GTWorld
from sana_world.render.base import RenderOutput
from sana_world.render.torch_caster import TorchRenderer

FIELDS = ("rgb", "depth", "normal", "ids")
W, H = 40, 24  # non-square, and neither side a multiple of 16
VIEWS = [FrameView(0, H, 0, W, 4), FrameView(0, H, 0, W, 2), FrameView(6, 18, 10, 30),
         FrameView(3, 21, 5, 37, 2), FrameView(1, 24, 0, 39, 8)]


def _world(task: str, renderer: str, n: int = 3, seed: int = 2) -> GTWorld:
    if renderer == "open3d":
        pytest.importorskip("open3d")
    world = GTWorld(GTConfig(task=task, width=W, height=H, renderer="torch" if renderer == "brute" else renderer), n)
    if renderer == "brute":  # the path CUDA takes (and compiles): every ray against every primitive
        world.renderer = TorchRenderer(cull=False)
    rngs = [np.random.default_rng(seed + i) for i in range(n)]
    world.reset_slots(list(range(n)), rngs)
    return world


def _moves(world: GTWorld, steps: int, seed: int):
    """Random full-range moves, one batch at a time; yields each step's collisions."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield world.move(torch.from_numpy(rng.uniform(-1, 1, (world.n, 6))).to(world.device), keys_mode=False)


@pytest.mark.parametrize("renderer", ["torch", "brute", "open3d"])
def test_a_view_render_equals_those_pixels_of_the_full_render(renderer):
    world = _world("explore", renderer)
    for _ in _moves(world, 3, seed=0):
        full = world.render(rgb=False)
        hit = torch.isfinite(full.depth)
        assert 0.2 < hit.float().mean() and (full.ids >= 0).any()  # the views below see walls and objects
        for view in VIEWS:
            out = world.render_view(view)
            assert tuple(out.depth.shape) == (world.n, *view.shape)
            for field in ("depth", "normal", "ids"):
                np.testing.assert_array_equal(getattr(out, field).numpy(), view.crop(getattr(full, field)).numpy(),
                                              err_msg=f"{field} of {view}")


@pytest.mark.parametrize("numpy_steps", [True, False])
@pytest.mark.parametrize("task", ["explore", "objectnav", "pointnav"])
def test_viewed_scores_equal_full_frame_scores(task, numpy_steps):
    """Two twin worlds along one path: one scored on full renders, one on its task's view; rewards and successes
    are equal at every step and are not all the step penalty (objectnav: each env's target is set to the category
    most seen in its centre window, so its fill and reward move). Both the CPU's numba bookkeeping and the torch
    operations every other device runs (numpy_steps False)."""
    worlds = [_world(task, "torch", seed=5), _world(task, "torch", seed=5)]
    if not numpy_steps:
        for w in worlds:
            w.numpy_steps = w.task.numpy_steps = False
    view = worlds[0].view
    assert view == worlds[0].task.view(H, W) and (view is None) == (task == "pointnav")
    if task == "objectnav":
        ids = worlds[0].render(rgb=False).ids
        for i in range(worlds[0].n):
            win = view.crop(ids)[i]
            cats = worlds[0].task.obj_category[i, win[win >= 0].long()]
            target = int(cats[cats >= 0].mode().values) if (cats >= 0).any() else int(worlds[0].task.target[i])
            for w in worlds:
                w.task.target[i] = target
    rewards = []
    for c0, c1 in zip(_moves(worlds[0], 6, seed=1), _moves(worlds[1], 6, seed=1)):
        r0, s0 = worlds[0].score(worlds[0].render(rgb=False), c0)
        if view is None:
            r1, s1 = worlds[1].score(worlds[1].render(rgb=False), c1)
        else:
            r1, s1 = worlds[1].score(worlds[1].render_view(view), c1, viewed=True)
        assert torch.equal(r0, r1) and torch.equal(s0, s1)
        rewards.append(r0)
    assert len(torch.cat(rewards).unique()) > 2


def test_task_views():
    world = _world("explore", "torch", n=1)
    assert world.task.view(H, W) == FrameView(0, H, 0, W, POINT_STRIDE)
    assert FrameView(0, H, 0, W, 4).shape == (6, 10) and FrameView(0, 23, 0, 41, 4).shape == (6, 11)
    obj = _world("objectnav", "torch", n=1).task
    assert obj.view(H, W) == FrameView(6, 18, 10, 30)  # the centre window, half of each side
    assert obj.view(128, 128) == FrameView(32, 96, 32, 96)


@pytest.mark.parametrize("kwargs", [dict(stride=3), dict(stride=0), dict(stride=True), dict(y1=0), dict(x0=-1)])
def test_bad_views_raise(kwargs):
    args = dict(y0=0, y1=8, x0=0, x1=8) | kwargs
    with pytest.raises(ValueError, match="FrameView"):
        FrameView(**args)


def test_a_wrong_viewed_frame_raises():
    world = _world("explore", "torch", n=2)
    wrong = world.render_view(FrameView(0, H, 0, W, 2))
    with pytest.raises(ValueError, match="render_view"):
        world.score(wrong, torch.zeros(2, dtype=torch.bool), viewed=True)
    with pytest.raises(ValueError, match="strided depth"):
        world.hit_points(wrong.depth, strided=True)


@pytest.mark.gpu
@pytest.mark.parametrize("compile_renderer", [False, True])
def test_a_view_render_equals_those_pixels_of_the_full_render_on_cuda(compile_renderer):
    """On CUDA, eager (bit for bit) and compiled (each render shape compiles kernels of its own: equal ids on
    all but a few edge pixels, depth to float round-off), for both tasks' views."""
    world = GTWorld(GTConfig(task="explore", width=W, height=H, renderer="torch", device="cuda",
                             compile_renderer=compile_renderer), 4)
    world.reset_slots(list(range(4)), [np.random.default_rng(i) for i in range(4)])
    for _ in _moves(world, 2, seed=3):
        full = world.render(rgb=False)
        for view in (world.task.view(H, W), FrameView(6, 18, 10, 30)):
            out, want = world.render_view(view), RenderOutput(*(view.crop(getattr(full, f)) for f in FIELDS))
            if not compile_renderer:
                for f in ("depth", "normal", "ids"):
                    torch.testing.assert_close(getattr(out, f), getattr(want, f), rtol=0, atol=0, equal_nan=True)
                continue
            assert (out.ids == want.ids).float().mean() > 0.99
            same = out.ids == want.ids
            torch.testing.assert_close(out.depth[same], want.depth[same], rtol=1e-5, atol=1e-6, equal_nan=True)
