"""The key DSL: parity with diffusers' SANA-WM reference, errors, run-length encoding, keys -> twist replay."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from sana_world.camera import CameraState, integrate_twist
from sana_world.controllers.keys import (
    KEY_ORDER,
    action_string_to_c2w,
    action_string_to_keys,
    dsl_limits,
    keys_to_action_string,
    keys_to_twist,
    keys_to_vector,
    parse_action_string,
)


@pytest.fixture(scope="module")
def reference():
    """diffusers' ``action_string_to_c2w``, loaded from its file (importing diffusers itself takes seconds)."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or spec.origin is None:
        pytest.skip("diffusers is not installed")
    path = Path(spec.origin).parent / "pipelines" / "sana_wm" / "cam_utils.py"
    if not path.exists():
        pytest.skip(f"this diffusers has no {path}")
    mod_spec = importlib.util.spec_from_file_location("_sana_wm_cam_utils", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.action_string_to_c2w


KEY_SETS = ["w", "a", "s", "d", "i", "j", "k", "l", "none", "", "wj", "wl", "dj", "al", "wi", "sk", "ik", "ws",
            "jl", "wdj", "wasdijkl", "lwi", "ijw", "ad", "kl"]


def random_action_string(rng: np.random.Generator, max_frames: int = 40) -> str:
    segments = []
    for _ in range(int(rng.integers(1, 7))):
        keys = str(rng.choice(KEY_SETS))
        keys = "".join(rng.permutation(list(keys))) if keys != "none" else keys
        if rng.random() < 0.15:
            keys = keys.upper()
        segments.append(f"{keys}-{int(rng.integers(1, max_frames))}")
    sep = ["," for _ in segments[1:]]
    if rng.random() < 0.2:  # whitespace and full-width commas are part of the DSL
        sep = [" , " if rng.random() < 0.5 else "\uff0c" for _ in sep]
    return "".join(s + (sep[n] if n < len(sep) else "") for n, s in enumerate(segments))


def test_parity_with_diffusers_on_random_strings(reference):
    rng = np.random.default_rng(0)
    strings = [random_action_string(rng) for _ in range(220)]
    # pitch held long enough to hit the 85° limit (71 steps of 1.2°), also from below and while turning
    strings += ["i-100", "k-90,i-200", "iw-80,jk-30,ik-5", "i-70,i-1,i-1,k-1", "ij-120,none-3"]
    worst = 0.0
    for s in strings:
        ref, ours = reference(s), action_string_to_c2w(s)
        assert ours.shape == ref.shape and ours.dtype == np.float32, s
        worst = max(worst, float(np.abs(ours - ref).max()))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6, err_msg=s)
    assert worst < 1e-6


def test_parity_with_custom_speeds(reference):
    rng = np.random.default_rng(1)
    for _ in range(40):
        s = random_action_string(rng, max_frames=60)
        kw = dict(translation_speed=float(rng.uniform(0.01, 0.2)), rotation_speed_deg=float(rng.uniform(0.5, 5.0)),
                  pitch_limit_deg=float(rng.uniform(10.0, 89.0)))
        np.testing.assert_allclose(action_string_to_c2w(s, **kw), reference(s, **kw), rtol=0, atol=1e-6, err_msg=s)


def test_pitch_limit_drops_the_step():
    poses = action_string_to_c2w("i-100")
    pitch = np.degrees(np.arcsin(-poses[:, 1, 2].astype(np.float64)))  # forward's -y component
    assert pitch.max() == pytest.approx(84.0, abs=1e-3)  # 70 steps; the 71st would pass 85° and is dropped


BAD_STRINGS = ["", "   ", ",", "w", "w-", "w-0", "w-00", "w--3", "w-x", "x-3", "W-3,", ",w-3", "w-3,,a-2", "w-3.5",
               "w-+3", "w-3-4", "-", "nonew-3", "q-5", "w-\u00b2", "w-1e3", "wasd", "w-3;a-2", "w_3"]


@pytest.mark.parametrize("bad", BAD_STRINGS)
def test_same_errors_as_diffusers(reference, bad):
    with pytest.raises(Exception) as theirs:
        reference(bad)
    with pytest.raises(Exception) as ours:
        action_string_to_c2w(bad)
    assert type(ours.value) is type(theirs.value), (bad, theirs.value, ours.value)
    assert str(ours.value)  # a message, naming the segment where there is one


def test_valid_oddities_match(reference):
    for s in ["-5", "NONE-3", "wW-2", "w - 3 ,\tj-2", "w-\u0663", "w-007", "dwa-4"]:
        np.testing.assert_allclose(action_string_to_c2w(s), reference(s), rtol=0, atol=1e-6, err_msg=s)


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        parse_action_string(None)  # type: ignore[arg-type]


def test_parse_and_run_length_round_trip():
    assert parse_action_string("WJ-3, none-2,-1,lw-4") == [("wj", 3), ("", 2), ("", 1), ("wl", 4)]
    rng = np.random.default_rng(2)
    for _ in range(30):
        s = random_action_string(rng)
        frames = action_string_to_keys(s)  # (F, 8)
        encoded = keys_to_action_string(frames)
        np.testing.assert_array_equal(action_string_to_keys(encoded), frames)
        np.testing.assert_array_equal(action_string_to_c2w(encoded), action_string_to_c2w(s))
    assert keys_to_action_string(["w", "w", "", "jw"]) == "w-2,none-1,wj-1"
    with pytest.raises(ValueError, match="no frames"):
        keys_to_action_string([])
    with pytest.raises(ValueError, match="0/1"):
        keys_to_action_string([np.array([2, 0, 0, 0, 0, 0, 0, 0])])


def test_plain_key_table():
    assert KEY_ORDER == "wasdijkl"
    expected = {"w": [1, 0, 0, 0, 0, 0], "a": [0, -1, 0, 0, 0, 0], "s": [-1, 0, 0, 0, 0, 0], "d": [0, 1, 0, 0, 0, 0],
                "i": [0, 0, 0, 0, 1, 0], "j": [0, 0, 0, 1, 0, 0], "k": [0, 0, 0, 0, -1, 0], "l": [0, 0, 0, -1, 0, 0]}
    for key, twist in expected.items():
        np.testing.assert_array_equal(keys_to_twist(np.array([k == key for k in KEY_ORDER], dtype=np.int8)), twist)
    with pytest.raises(ValueError, match="shape"):
        keys_to_twist(np.zeros(6))
    with pytest.raises(ValueError, match="both"):
        keys_to_twist("w", state=CameraState(np.zeros(3)))


@pytest.mark.parametrize("keys", KEY_SETS + ["W", "NONE", "None", "jW", "w j", "wwj", "LwI"])
def test_key_helpers_take_what_a_dsl_segment_takes(keys):
    """One frame's keys as a string: the same vocabulary and case rules as a DSL segment ``<keys>-1``."""
    frame = action_string_to_keys(f"{keys}-1")[0]
    np.testing.assert_array_equal(keys_to_vector(keys), frame)
    np.testing.assert_array_equal(keys_to_twist(keys), keys_to_twist(frame))
    assert keys_to_action_string([keys]) == keys_to_action_string([frame])


def test_key_helper_strings_are_one_frame_and_errors_say_what_to_pass():
    np.testing.assert_array_equal(keys_to_twist("W"), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(keys_to_twist("none"), np.zeros(6))
    assert keys_to_action_string(["none"]) == "none-1"
    assert keys_to_action_string(["W", "w", "NONE", ""]) == "w-2,none-2"
    with pytest.raises(TypeError, match=r"\['none'\]"):  # a bare string: one frame or one per character?
        keys_to_action_string("none")
    for bad in ["x", "nonew", "w-1", "q"]:  # what the DSL rejects in a segment, the helpers reject too
        with pytest.raises(ValueError, match="unknown keys"):
            keys_to_twist(bad)
        with pytest.raises(ValueError):
            parse_action_string(f"{bad}-1")
    with pytest.raises(TypeError, match="str"):
        keys_to_vector(None)  # type: ignore[arg-type]


def replay(action: str, exact: bool) -> np.ndarray:
    """Poses (F + 1, 4, 4) from stepping integrate_twist with keys_to_twist at the DSL's speeds."""
    limits = dsl_limits()
    state = CameraState(np.zeros(3))
    poses = [state.c2w()]
    for keys in action_string_to_keys(action):
        twist = keys_to_twist(keys, state, limits) if exact else keys_to_twist(keys)
        state = integrate_twist(state, twist, limits)
        poses.append(state.c2w())
    return np.stack(poses)


PLAIN_EXACT = ["w-30", "a-30", "s-30", "d-30", "i-30", "k-30", "j-30", "l-30", "j-40,w-40,l-90,d-20", "wi-40,k-20",
               "wd-30,as-10", "none-5,ik-10,ws-4", "jl-20,wasd-3", "i-40,j-200,w-10,k-60"]
COMBINED = ["wj-60", "dl-40,wl-20", "i-100", "wasdijkl-50", "ij-90,wk-30,al-60", "k-120,lw-40", "sj-100,none-3"]


@pytest.mark.parametrize("action", PLAIN_EXACT)
def test_plain_keys_replay_the_dsl(action):
    np.testing.assert_allclose(replay(action, exact=False), action_string_to_c2w(action), rtol=0, atol=1e-6)


@pytest.mark.parametrize("action", PLAIN_EXACT + COMBINED)
def test_state_aware_keys_replay_the_dsl(reference, action):
    np.testing.assert_allclose(replay(action, exact=True), reference(action), rtol=0, atol=1e-6)


def test_plain_keys_lag_one_turn_step_when_moving_and_turning():
    """The documented difference: integrate_twist moves along the pre-turn heading (drift <= 2v per run)."""
    plain, dsl = replay("wj-60", exact=False), action_string_to_c2w("wj-60")
    gap = float(np.linalg.norm(plain[-1, :3, 3] - dsl[-1, :3, 3]))
    v, step = 0.05, math.radians(1.2)
    assert gap == pytest.approx(v * 2 * math.sin(60 * step / 2), rel=1e-4)  # |dir(60 r) - dir(0)| * v
    np.testing.assert_allclose(plain[:, :3, :3], dsl[:, :3, :3], atol=1e-6)  # rotations agree
    # and past the pitch limit the plain mapping clamps to 85° where the DSL stops at 84°
    assert not np.allclose(replay("i-100", exact=False), action_string_to_c2w("i-100"), atol=1e-3)
