import numpy as np

from sana_world.agents.demo import DemoConfig, run_demo
from sana_world.video import read_video


def test_demo_writes_video_and_sheet(tmp_path):
    result = run_demo(DemoConfig(out=tmp_path, steps=4, prompt_steps=2, ppo_steps=2, seed=1, progress=False))
    frames = read_video(tmp_path / "demo.mp4")
    assert len(frames) == 5 + 3 + 3  # GT-start episode (reset + 4 steps), the prompt episode, the PPO agent's
    assert frames[0].shape[0] >= 128 and frames[0].shape[1] >= 3 * 128  # GT | dream | depth side by side
    assert (tmp_path / "demo_sheet.png").stat().st_size > 0
    assert result["steps"] == 4 and np.isfinite(result["steps_per_s"])
    assert 5.0 < result["psnr_h1"] < 100.0 and 5.0 < result["hold_psnr_h1"] < 100.0
    assert result["ppo_steps"] == 2
