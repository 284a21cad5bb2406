"""Terminal teleop with an injected key source, and the raw-mode stdin source on a pseudo-terminal."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sana_world.controllers.keys import action_string_to_c2w, action_string_to_keys, keys_to_twist
from sana_world.controllers.teleop import TeleopConfig, key_to_twist, run_teleop, terminal_keys


def drive(keys, config: TeleopConfig = TeleopConfig()):
    seen: list[np.ndarray] = []
    record = run_teleop(seen.append, iter(keys), config)
    return seen, record


def test_keys_map_to_twists_and_stop_at_q():
    # ".", " " are still frames; arrow, Ctrl-arrow, F1 and a lone ESC are skipped; J counts as j
    seen, record = drive("wwjJ\x1b[A\x1b[1;5C\x1bOP. \x1bdq wwww")
    expected = [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]
    np.testing.assert_array_equal(np.stack(seen), np.array(expected, dtype=np.float32))
    assert record.keys == ["w", "w", "j", "j", " ", " ", "d"]
    assert record.quit_key == "q"
    assert record.action_string() == "w-2,j-2,none-2,d-1"


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
    _, record = drive(keys)
    s = record.action_string()
    assert s == "w-4,j-5,w-3,i-3,d-3,l-5"
    assert len(action_string_to_keys(s)) == len(keys)
    assert action_string_to_c2w(s).shape == (len(keys) + 1, 4, 4)


def test_keys_the_dsl_lacks():
    _, record = drive("wrfuo")
    with pytest.raises(ValueError, match="cannot express"):
        record.action_string()
    assert record.action_string(strict=False) == "w-1,none-4"


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
