"""Video helpers: depth colours, labels, grids, mp4 / gif round trips and contact sheets."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from sana_world.video import colorize_depth, contact_sheet, grid, label, read_video, write_video


def _frames(T: int = 6, H: int = 24, W: int = 32) -> np.ndarray:
    """Distinct frames (a moving gradient) so no codec merges duplicates."""
    t = np.arange(T)[:, None, None]
    y, x = np.mgrid[0:H, 0:W]
    r = (x[None] * 8 + t * 30) % 256
    g = (y[None] * 10 + t * 15) % 256
    b = np.broadcast_to((t * 40) % 256, (T, H, W))
    return np.stack([r, g, b], axis=-1).astype(np.uint8)  # (T, H, W, 3)


def test_colorize_depth_maps_inf_to_black_and_scales_by_max() -> None:
    d = np.full((2, 4, 5), 2.0, dtype=np.float32)
    d[0, 0, 0] = np.inf
    d[1, 1, 1] = np.nan
    d[1, 2, 2] = 4.0
    c = colorize_depth(d)
    assert c.shape == (2, 4, 5, 3) and c.dtype == np.uint8
    assert (c[0, 0, 0] == 0).all() and (c[1, 1, 1] == 0).all()
    assert c[0, 1, 1].sum() > 0  # finite depth is coloured
    assert not np.array_equal(c[1, 2, 2], c[0, 1, 1])  # far (max) differs from mid
    # an explicit max_depth saturates beyond it; torch input works too
    c2 = colorize_depth(torch.from_numpy(d), max_depth=1.0)
    assert np.array_equal(c2[0, 1, 1], c2[1, 2, 2])
    with pytest.raises(ValueError, match="max_depth"):
        colorize_depth(d, max_depth=0.0)
    with pytest.raises(ValueError, match="shape"):
        colorize_depth(np.zeros((1, 2, 3, 4)))


def test_label_draws_a_banner_without_touching_the_rest() -> None:
    f = np.full((32, 64, 3), 200, dtype=np.uint8)
    out = label(f, "RGB")
    assert out.shape == f.shape and out.dtype == np.uint8
    assert not np.array_equal(out[:8], f[:8])  # banner at the top
    assert np.array_equal(out[-8:], f[-8:])
    assert np.array_equal(f, np.full((32, 64, 3), 200, dtype=np.uint8))  # input untouched
    assert label(_frames(), "x").shape == _frames().shape  # batched


def test_grid_places_labelled_columns_side_by_side() -> None:
    rgb = _frames(4, 32, 20)
    depth = np.random.default_rng(0).uniform(1, 5, (4, 32, 20)).astype(np.float32)
    g = grid({"RGB": rgb, "depth": depth, "dream": rgb}, gap=2)
    assert g.shape == (4, 32, 20 * 3 + 2 * 2, 3) and g.dtype == np.uint8
    assert np.array_equal(g[:, -4:, :20], rgb[:, -4:])  # below the banner the first column is the input
    assert (g[:, :, 20:22] == 0).all()  # the gap
    with pytest.raises(ValueError, match="'b'"):
        grid({"a": rgb, "b": rgb[:3]})
    with pytest.raises(ValueError):
        grid({})


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_round_trip(tmp_path, suffix: str) -> None:
    frames = _frames(7, 24, 32)
    path = write_video(tmp_path / "sub" / f"clip{suffix}", frames, fps=10)
    assert path.is_file() and path.stat().st_size > 0
    back = read_video(path)
    assert back.shape == frames.shape
    # lossy codecs: close on average, not exact
    assert np.abs(back.astype(np.float32) - frames.astype(np.float32)).mean() < 25
    assert not list(tmp_path.glob("sub/.*tmp*"))  # no temporary file left behind
    if suffix == ".mp4":
        assert iio.imread(path, plugin="FFMPEG", index=None).shape == frames.shape


def test_write_video_odd_size_and_bad_inputs(tmp_path) -> None:
    back = read_video(write_video(tmp_path / "odd.mp4", _frames(3, 15, 17), fps=5))
    assert back.shape == (3, 16, 18, 3)  # padded to even sides for yuv420p
    with pytest.raises(ValueError, match="unsupported video format '.avi'"):
        write_video(tmp_path / "x.avi", _frames(), fps=5)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", _frames().astype(np.float32), fps=5)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", _frames(), fps=0)


def test_contact_sheet_png(tmp_path) -> None:
    frames = _frames(10, 32, 20)
    sheet = contact_sheet(frames, 4, tmp_path / "sheet.png", gap=2)
    strip = sheet.shape[0] // 2 - 1 - 32  # caption strip height above each tile
    assert strip > 0 and sheet.shape == (2 * (strip + 32) + 2, 2 * 20 + 2, 3)
    assert np.array_equal(iio.imread(tmp_path / "sheet.png"), sheet)
    assert np.array_equal(sheet[strip:strip + 32, :20], frames[0])  # first tile: frame 0, untouched
    assert np.array_equal(sheet[-32:, 22:], frames[9])  # last tile: the last frame
    assert sheet[:strip, :20].max() > 0  # its caption
    with pytest.raises(ValueError, match="PNG"):
        contact_sheet(frames, 4, tmp_path / "sheet.jpg")
