"""Waypoint and spline followers reach their waypoints in an empty room."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sana_world.camera import CameraState, TwistLimits, integrate_twist
from sana_world.controllers.explore import rollout
from sana_world.controllers.followers import (
    FollowerConfig,
    SplineConfig,
    SplineFollower,
    Waypoint,
    WaypointFollower,
    catmull_rom,
)
from sana_world.worlds.spec import Material, Room, SceneSpec

LIMITS = TwistLimits()


def empty_room() -> SceneSpec:
    m = Material("white")
    return SceneSpec(rooms=(Room(0.0, 8.0, 0.0, 6.0, 3.0, m, m, m),))


def drive(follower: WaypointFollower, state: CameraState, max_steps: int = 1500) -> list[CameraState]:
    states = [state]
    for _ in range(max_steps):
        twist = follower.act(state)
        assert twist.shape == (6,) and twist.dtype == np.float32 and np.all(np.abs(twist) <= 1.0)
        if follower.done:
            break
        state = integrate_twist(state, twist, LIMITS)
        states.append(state)
    return states


WAYPOINTS = [(6.0, -1.5, 1.0), (6.5, -1.2, 5.0), (2.0, -1.5, 4.5), Waypoint((1.5, -1.6, 1.5), yaw=2.0, pitch=0.2)]


@pytest.mark.parametrize("cls", [WaypointFollower, SplineFollower])
def test_reaches_every_waypoint_and_the_final_pose(cls):
    cfg = FollowerConfig(limits=LIMITS)
    follower = cls(WAYPOINTS, cfg)
    states = drive(follower, CameraState(np.array([1.0, -1.5, 1.0]), yaw=0.5))
    assert follower.done, f"not done after {len(states)} steps (at waypoint {follower.index})"
    positions = np.stack([s.position for s in states])  # (T, 3)
    for wp in WAYPOINTS[:-1]:
        p = wp.position if isinstance(wp, Waypoint) else wp
        assert np.linalg.norm(positions - np.asarray(p), axis=1).min() < 0.5, p
    final, goal = states[-1], WAYPOINTS[-1]
    assert np.linalg.norm(final.position - np.asarray(goal.position)) <= cfg.reach_radius
    assert abs((final.yaw - goal.yaw + math.pi) % (2 * math.pi) - math.pi) <= math.radians(cfg.yaw_tolerance_deg)
    assert abs(final.pitch - goal.pitch) <= math.radians(cfg.pitch_tolerance_deg)
    assert len(states) < 400  # ~16 m of path at 0.1 m/step, plus turns
    np.testing.assert_array_equal(follower.act(final), np.zeros(6, dtype=np.float32))


def test_turns_on_the_spot_before_driving_to_a_point_behind():
    follower = WaypointFollower([(0.0, -1.5, -3.0)], FollowerConfig(limits=LIMITS))
    state = CameraState(np.array([0.0, -1.5, 0.0]), yaw=0.0)  # facing +z, target at -z
    first = follower.act(state)
    assert first[0] == 0.0 and abs(first[3]) == 1.0  # full turn, no forward motion
    assert follower.done is False


def test_follower_in_a_room_with_rollout():
    spec = empty_room()
    follower = SplineFollower([(2.0, -1.5, 1.0), (6.0, -1.5, 2.0), (6.0, -1.5, 5.0)], FollowerConfig(limits=LIMITS),
                              SplineConfig(spacing=0.1, lookahead=0.4))
    poses, actions = rollout(spec, follower, CameraState(np.array([1.0, -1.5, 1.0]), yaw=-1.2), 300, LIMITS)
    assert follower.done
    assert np.linalg.norm(poses[-1, :3, 3] - np.array([6.0, -1.5, 5.0])) <= 0.15
    assert actions.shape == (300, 6) and poses.shape == (301, 4, 4)


def test_catmull_rom_passes_through_the_points():
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [3.0, 0.0, 1.0], [3.0, 0.0, 1.0]])
    samples = catmull_rom(pts, spacing=0.05)
    for p in pts:
        assert np.linalg.norm(samples - p, axis=1).min() < 1e-9
    gaps = np.linalg.norm(np.diff(samples, axis=0), axis=1)
    assert gaps.max() < 0.1 and gaps.min() > 0.0
    np.testing.assert_array_equal(catmull_rom(pts[:1]), pts[:1])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least one"):
        WaypointFollower([])
    with pytest.raises(ValueError, match="waypoint"):
        WaypointFollower([(1.0, 2.0)])
    with pytest.raises(ValueError, match="reach_radius"):
        FollowerConfig(reach_radius=0.5, pass_radius=0.2)
