"""Terminal teleop with an injected key source, and the raw-mode stdin source on a pseudo-terminal."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sana_world.camera import CameraState, TwistLimits, integrate_twist
from sana_world.controllers.keys import action_string_to_c2w, action_string_to_keys, dsl_limits, keys_to_twist
from sana_world.controllers.teleop import (TeleopConfig, dsl_frames_per_press, key_to_twist, main, run_teleop,
                                           terminal_keys)

ONE_FRAME = TeleopConfig(limits=dsl_limits())  # a camera whose step is one DSL frame: one press, one frame


def drive(keys, config: TeleopConfig = TeleopConfig()):
    seen: list[np.ndarray] = []
    record = run_teleop(seen.append, iter(keys), config)
    return seen, record


def test_keys_map_to_twists_and_stop_at_q():
    # ".", " " are still frames; arrow, Ctrl-arrow, F1 and a lone ESC are skipped; J counts as j
    seen, record = drive("wwjJ\x1b[A\x1b[1;5C\x1bOP. \x1bdq wwww", ONE_FRAME)
    expected = [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]
    np.testing.assert_array_equal(np.stack(seen), np.array(expected, dtype=np.float32))
    assert record.keys == ["w", "w", "j", "j", " ", " ", "d"]
    assert record.quit_key == "q"
    assert record.action_string() == "w-2,j-2,none-2,d-1"
    _, record = drive("wwjJ. d")  # the default limits (0.1 m, 6° per step): 2 frames a move, 5 a turn
    assert record.action_string() == "w-4,j-10,none-2,d-2"


def test_every_motion_key():
    table = {"w": (0, 1), "s": (0, -1), "d": (1, 1), "a": (1, -1), "r": (2, 1), "f": (2, -1),
             "j": (3, 1), "l": (3, -1), "i": (4, 1), "k": (4, -1), "o": (5, 1), "u": (5, -1)}
    for key, (axis, sign) in table.items():
        expected = np.zeros(6, dtype=np.float32)
        expected[axis] = sign
        np.testing.assert_array_equal(key_to_twist(key), expected)
        if key in "wasdijkl":  # the DSL keys mean the same as in keys_to_twist
            np.testing.assert_array_equal(key_to_twist(key), keys_to_twist(key))
    with pytest.raises(ValueError, match="not a teleop key"):
        key_to_twist("x")


def test_recorded_session_replays_with_the_dsl():
    keys = "wwwwjjjjjwwwiiidddlllll"
    _, record = drive(keys, ONE_FRAME)
    s = record.action_string()
    assert s == "w-4,j-5,w-3,i-3,d-3,l-5"
    assert len(action_string_to_keys(s)) == len(keys)
    assert action_string_to_c2w(s).shape == (len(keys) + 1, 4, 4)


def test_keys_the_dsl_lacks():
    _, record = drive("wrfuo")
    with pytest.raises(ValueError, match="cannot express"):
        record.action_string()
    assert record.action_string(strict=False) == "w-2,none-4"  # r/f/u/o: one still frame each


def free_camera_session(keys: str, limits: TwistLimits) -> tuple[list[np.ndarray], str]:
    """Poses (4, 4) after every teleop step of a free camera with ``limits``, and the recorded string."""
    state = [CameraState(np.zeros(3))]
    poses = [state[0].c2w()]

    def step(twist: np.ndarray) -> None:
        state[0] = integrate_twist(state[0], twist, limits)
        poses.append(state[0].c2w())

    record = run_teleop(step, iter(keys), TeleopConfig(limits=limits))
    return poses, record.action_string()


# i * 30 pitches past the DSL's 85° limit, where the DSL drops frames the camera would clamp
SESSIONS = ["wwjjj", "wwwjjjjjwwiiidddllllls", "i" * 30 + "wjk", "k" * 40 + "jjiiiw", "ad..lkjiws"]
LIMITS = [TwistLimits(), TwistLimits(forward=0.25, right=0.12, yaw_deg=10.0, pitch_deg=2.5), dsl_limits()]


@pytest.mark.parametrize("limits", LIMITS, ids=["env-default", "custom", "dsl"])
@pytest.mark.parametrize("keys", SESSIONS)
def test_recorded_string_replays_the_session_poses(keys, limits):
    poses, action = free_camera_session(keys, limits)
    replay = action_string_to_c2w(action)
    np.testing.assert_allclose(replay[-1], poses[-1], rtol=0, atol=1e-5, err_msg=action)
    per_press = dsl_frames_per_press(limits)
    frames = np.cumsum([0] + [per_press.get(k, 1) for k in keys])  # every step's pose is a replayed frame
    np.testing.assert_allclose(replay[frames], np.stack(poses), rtol=0, atol=1e-5, err_msg=action)


def test_a_step_shorter_than_a_dsl_frame_is_an_error():
    assert dsl_frames_per_press(TwistLimits()) == {"w": 2, "s": 2, "d": 2, "a": 2, "j": 5, "l": 5, "i": 3, "k": 3}
    with pytest.raises(ValueError, match="yaw_deg"):
        TeleopConfig(limits=TwistLimits(yaw_deg=1.0))


def test_gt_env_session_replays():
    """The GT env in twist mode (its own limits, 6° and 0.1 m a step): the replay is the session's pose."""
    import gymnasium as gym

    import sana_world  # noqa: F401

    env = gym.make("SanaWorld/Rooms-v0", width=16, height=16)
    _, info = env.reset(seed=0)
    start, seen = info["c2w"].astype(np.float64), []

    def step(twist: np.ndarray) -> None:
        _, _, _, _, info = env.step(twist)
        assert not info["collision"]
        seen.append(info["c2w"].astype(np.float64))

    record = run_teleop(step, iter("wwjjjiikllw"), TeleopConfig(limits=env.unwrapped.cfg.step_limits()))
    env.close()
    relative = np.linalg.inv(start) @ seen[-1]  # the env starts level, the DSL at identity
    np.testing.assert_allclose(action_string_to_c2w(record.action_string())[-1], relative, rtol=0, atol=1e-5)


def test_cli_prints_a_replayable_string(monkeypatch, capsys):
    """``echo wwjjjq | python -m sana_world.controllers.teleop``: 3 j presses turn 18° and are recorded as
    15 DSL frames (18°), 2 w presses move 0.2 m and are recorded as 4 frames."""
    import sana_world.controllers.teleop as teleop

    monkeypatch.setattr(teleop, "terminal_keys", lambda: iter("wwjjjq"))
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    first, last = (dict(zip(line.split()[2::2], map(float, line.split()[3::2])))
                   for line in (lines[0], [ln for ln in lines if ln.startswith("step")][-1]))
    action = lines[-1].split(": ")[-1]
    assert action == "w-4,j-15"
    replay = action_string_to_c2w(action)[-1]
    turned = np.degrees(np.arctan2(replay[0, 2], replay[2, 2]))  # the DSL's yaw is > 0 to the right
    assert last["yaw"] - first["yaw"] == pytest.approx(-turned, abs=0.11)
    moved = np.hypot(last["x"] - first["x"], last["z"] - first["z"])
    assert moved == pytest.approx(np.linalg.norm(replay[:3, 3]), abs=0.011)


def test_end_of_input_ctrl_c_and_max_steps():
    assert drive("ww")[1].quit_key is None
    seen, record = drive("w\x03w")
    assert len(seen) == 1 and record.quit_key == "\x03"
    seen, _ = drive("wwwwww", TeleopConfig(max_steps=3))
    assert len(seen) == 3
    with pytest.raises(ValueError, match="clash"):
        TeleopConfig(quit_keys="w")


def test_terminal_keys_in_raw_mode_on_a_pty():
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        os.write(master, b"wj")  # raw mode: no Enter needed, no line buffering
        seen: list[np.ndarray] = []
        source = terminal_keys(slave)
        record = run_teleop(seen.append, _then(source, master, b"lq"), TeleopConfig())
        assert record.keys == ["w", "j", "l"] and record.quit_key == "q"
        source.close()  # leaves raw mode
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def _then(source, master: int, more: bytes):
    """Yield from ``source``; after its second key type ``more`` (so the pty is never read while empty)."""
    for n, ch in enumerate(source):
        yield ch
        if n == 1:
            os.write(master, more)
