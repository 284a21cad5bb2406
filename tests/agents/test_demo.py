import numpy as np

from sana_world.agents.demo import DemoConfig, run_demo
from sana_world.video import read_video


def test_demo_writes_video_and_sheet(tmp_path):
    result = run_demo(DemoConfig(out=tmp_path, steps=6, size=32, seed=1, progress=False))
    frames = read_video(tmp_path / "demo.mp4")
    assert len(frames) == 7  # the reset frame + 6 steps
    assert frames[0].shape[0] == 32 and frames[0].shape[1] > 64  # RGB | depth side by side
    assert (tmp_path / "demo_sheet.png").stat().st_size > 0
    assert result["steps"] == 6 and np.isfinite(result["steps_per_s"])
