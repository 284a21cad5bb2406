"""Video helpers: depth colours, labels, grids, mp4 / gif round trips and contact sheets."""

from __future__ import annotations

from pathlib import Path

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


def test_gif_frame_delay_is_the_closest_representable(tmp_path) -> None:
    """GIF delays are whole 10 ms units: 15 fps (66.7 ms) is stored as 70 ms, not truncated to 60 ms."""
    from PIL import Image

    from sana_world.video import gif_frame_ms

    assert [gif_frame_ms(f) for f in (15, 30, 10, 100, 0.5)] == [70, 30, 100, 10, 2000]
    path = write_video(tmp_path / "clip.gif", _frames(3, 8, 8), fps=15)
    with Image.open(path) as im:
        assert im.info["duration"] == 70
    with pytest.raises(ValueError, match="at most 100 fps"):
        write_video(tmp_path / "fast.gif", _frames(3, 8, 8), fps=1000)
    assert not (tmp_path / "fast.gif").exists()


def test_an_unwritable_path_is_named_in_the_error(tmp_path) -> None:
    target = tmp_path / "v.mp4"
    (target / "inside").mkdir(parents=True)  # a non-empty folder where the video should go
    with pytest.raises(OSError, match=f"cannot write {target}") as e:
        write_video(target, _frames(3, 8, 8), fps=5)
    assert ".tmp" not in str(e.value)
    assert not list(tmp_path.glob(".*tmp*"))
    if Path("/proc/self").is_dir():  # Linux: no file can be created in /proc, even by root
        for suffix in (".mp4", ".gif"):
            with pytest.raises(OSError, match=f"cannot write /proc/x{suffix}") as e:
                write_video(f"/proc/x{suffix}", _frames(3, 8, 8), fps=5)
            assert ".tmp" not in str(e.value)


def test_banners_fit_small_frames_and_long_text() -> None:
    """Labels on 33 px frames cover at most a quarter of the frame; text wider than the frame ends in an
    ellipsis inside the banner instead of running off the edge; rows below the banner are the input's."""
    small = np.full((33, 68, 3), 200, dtype=np.uint8)
    out = label(small, "RGB")
    changed = np.flatnonzero((out != small).any(axis=(1, 2)))
    assert 0 < changed.max() + 1 <= 33 // 4
    assert np.array_equal(out[33 // 4:], small[33 // 4:])
    big = np.full((128, 128, 3), 200, dtype=np.uint8)
    out = label(big, "GT geometry (not the prompt) and more words")
    rows = np.flatnonzero((out != big).any(axis=(1, 2)))
    h = rows.max() + 1
    assert h <= 128 // 4 and np.array_equal(out[h:], big[h:])
    assert len(np.unique(out[:h, -1].reshape(-1, 3), axis=0)) == 1  # the last column is plain banner
    assert out[:h, 100:120].max() > out[:h, -1].max()  # ... and text (the ellipsis) reaches close to it
