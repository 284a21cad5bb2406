"""Frames to files: depth colouring, labelled side-by-side grids, mp4 / gif writing and PNG contact sheets.

Every function takes uint8 frames (T, H, W, 3) as numpy arrays or torch tensors (moved to the CPU) and
returns numpy arrays. Videos are written with imageio: ``.mp4`` through imageio-ffmpeg (libx264, yuv420p,
``macro_block_size=1`` so frames are never rescaled; odd sizes are padded by one edge pixel because
yuv420p needs even sides, :func:`encoded_size`) and ``.gif`` through Pillow (frame delays in whole
10 ms units, :func:`gif_frame_ms`: at most 100 fps).

Reading an mp4 back: an imageio reader reports a length of 2**63 - 1, so ``list(reader)`` raises
MemoryError. Use :func:`read_video`, which iterates the frames. Pillow merges identical consecutive GIF
frames into one (adding their durations), so a GIF of a clip with repeated frames plays correctly but
reads back with fewer frames.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_FORMATS = (".mp4", ".gif")
GIF_MAX_FPS = 100.0  # GIF frame delays are whole centiseconds: 10 ms is the shortest
_BANNER_PAD = 2  # pixels of banner above and below the text (1 on frames under _SMALL_FRAME pixels)
_SMALL_FRAME = 64
_FONT_SIZES = (11, 10, 9, 8, 7)  # the largest whose banner fits in _BANNER_SHARE of the frame height is used
_BANNER_SHARE = 0.25
_REFERENCE = "Agy"  # cap and descender extents: one banner height for every text of a font
_ELLIPSIS = "\u2026"


def _numpy(x: Any) -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _frames_u8(frames: Any, name: str = "frames") -> np.ndarray:
    """Validate uint8 RGB frames (T, H, W, 3); a single frame (H, W, 3) becomes T = 1."""
    a = _numpy(frames)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {a.dtype} (colour depth with colorize_depth first)")
    if min(a.shape[:3]) == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------------------
# Colouring and labels
# ---------------------------------------------------------------------------------------------------------


def colorize_depth(depth: Any, max_depth: float | None = None, cmap: str = "turbo") -> np.ndarray:
    """Depth (T, H, W) or (H, W) to uint8 colours (T, H, W, 3) / (H, W, 3); near is the low end of ``cmap``.

    ``max_depth`` defaults to the largest finite depth of the whole clip (one scale for every frame, so the
    colours do not flicker). Misses (inf) and NaNs are black.
    """
    from matplotlib import colormaps

    d = _numpy(depth).astype(np.float32)
    if d.ndim not in (2, 3):
        raise ValueError(f"depth must have shape (T, H, W) or (H, W), got {d.shape}")
    finite = np.isfinite(d)
    if max_depth is None:
        max_depth = float(d[finite].max()) if finite.any() else 1.0
    if not (max_depth > 0 and math.isfinite(max_depth)):
        raise ValueError(f"max_depth must be a positive finite number, got {max_depth}")
    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)  # (256, 3)
    idx = np.clip(np.where(finite, d, 0.0) / max_depth * 255.0 + 0.5, 0, 255).astype(np.int64)
    out = lut[idx]  # (T, H, W, 3)
    out[~finite] = 0
    return out


@functools.lru_cache(maxsize=None)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # the bundled FreeType font (Pillow >= 10.1)


def _banner_style(frame_height: int) -> tuple[Any, int, int, int]:
    """(font, pad, text top, banner height) of labels on frames ``frame_height`` pixels high: the largest
    font of :data:`_FONT_SIZES` whose banner covers at most :data:`_BANNER_SHARE` of the frame (the
    smallest font on frames too small for any)."""
    pad = _BANNER_PAD if frame_height >= _SMALL_FRAME else 1
    for size in _FONT_SIZES:
        _, top, _, bottom = _font(size).getbbox(_REFERENCE)
        h = bottom - top + 2 * pad
        if h <= _BANNER_SHARE * frame_height or size == _FONT_SIZES[-1]:
            return _font(size), pad, top, h
    raise AssertionError("unreachable: the smallest font is always returned")


def _fit_text(text: str, font: Any, room: float) -> str:
    """``text``, or its longest prefix + an ellipsis that is at most ``room`` pixels wide in ``font``."""
    if font.getlength(text) <= room:
        return text
    for n in range(len(text) - 1, 0, -1):
        cut = text[:n].rstrip() + _ELLIPSIS
        if font.getlength(cut) <= room:
            return cut
    return ""


def _text_mask(text: str, width: int, frame_height: int) -> np.ndarray:
    """Alpha mask (h, width) float32 in [0, 1] of ``text`` left aligned in PIL's default font, sized for
    frames ``frame_height`` pixels high (:func:`_banner_style`); text wider than the frame ends in an
    ellipsis."""
    from PIL import Image, ImageDraw

    font, pad, top, h = _banner_style(frame_height)
    text = _fit_text(text, font, width - 2 * pad)
    img = Image.new("L", (width, h), 0)
    left = font.getbbox(text)[0] if text else 0
    ImageDraw.Draw(img).text((pad - min(left, 0), pad - top), text, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def label(frame: Any, text: str, opacity: float = 0.6) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) or frames (T, H, W, 3) with ``text`` on a dark banner along the top.

    The banner is drawn once and composited onto every frame; rows below it are unchanged. Its font
    shrinks on small frames so it covers at most a quarter of the frame height (11 px text on frames of
    64 px and up, 7 px on 33 px frames), and text wider than the frame is cut with an ellipsis.
    """
    a = _numpy(frame)
    single = a.ndim == 3
    frames = _frames_u8(a, "frame")
    if not text:
        return frames[0].copy() if single else frames.copy()
    H, W = frames.shape[1:3]
    mask = _text_mask(text, W, H)[:H]  # (h, W)
    h = mask.shape[0]
    out = frames.astype(np.float32)
    band = out[:, :h] * (1.0 - opacity)  # darken the banner area
    band = band * (1.0 - mask[None, :, :, None]) + 255.0 * mask[None, :, :, None]
    out[:, :h] = band
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return out[0] if single else out


def grid(columns: dict[str, Any], labels: bool = True, gap: int = 2,
         max_depth: float | None = None) -> np.ndarray:
    """Columns side by side, each labelled with its key ("RGB | depth | dream").

    Each value is uint8 frames (T, H, W, 3) or a depth clip (T, H, W) (coloured with
    :func:`colorize_depth`). All columns need the same T and H; ``gap`` black pixels separate them.
    Returns (T, H, W_total, 3) uint8.
    """
    if not columns:
        raise ValueError("grid needs at least one column")
    panels: list[np.ndarray] = []
    for name, value in columns.items():
        a = _numpy(value)
        if a.ndim == 3 and a.dtype != np.uint8:  # a depth clip (T, H, W)
            a = colorize_depth(a, max_depth=max_depth)
        a = _frames_u8(a, f"column {name!r}")
        panels.append(label(a, name) if labels else a)
    T, H = panels[0].shape[:2]
    for name, p in zip(columns, panels):
        if p.shape[:2] != (T, H):
            raise ValueError(
                f"column {name!r} has {p.shape[0]} frames of height {p.shape[1]}, "
                f"but the first column has {T} frames of height {H}"
            )
    if gap > 0 and len(panels) > 1:
        sep = np.zeros((T, H, gap, 3), dtype=np.uint8)
        spaced: list[np.ndarray] = []
        for i, p in enumerate(panels):
            spaced.extend([sep, p] if i else [p])
        panels = spaced
    return np.concatenate(panels, axis=2)  # (T, H, W_total, 3)


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) by one edge pixel on odd sides (yuv420p needs even width and height)."""
    ph, pw = frames.shape[1] % 2, frames.shape[2] % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return frames


def _tmp_path(path: Path) -> Path:
    """A sibling temporary name that keeps the suffix (ffmpeg picks the container from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _cannot_write(e: OSError, path: Path) -> OSError:
    """``e`` (raised for the temporary file of ``path``) restated for ``path``, keeping its type."""
    if e.errno is None:
        return OSError(f"cannot write {path}: {e}")
    return type(e)(e.errno, f"cannot write {path}: {e.strerror}")


def encoded_size(height: int, width: int, path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of the frames :func:`write_video` stores at ``path`` given (height, width) frames:
    an ``.mp4`` pads odd sides by one pixel (yuv420p needs even sides), a ``.gif`` keeps them."""
    if Path(path).suffix.lower() == ".mp4":
        return height + height % 2, width + width % 2
    return height, width


def gif_frame_ms(fps: float) -> int:
    """The GIF frame delay in ms closest to ``1000 / fps``: GIF stores delays in whole centiseconds (10 ms
    units), so 15 fps plays at 70 ms a frame (14.3 fps), 30 fps at 30 ms (33.3 fps); a tie takes the longer
    delay (8 fps: 130 ms). Above :data:`GIF_MAX_FPS` (100 fps, a 10 ms delay) raises ValueError. Browsers
    play delays under 20 ms at 100 ms, so GIFs for the web should stay at or below 50 fps."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if fps > GIF_MAX_FPS:
        raise ValueError(f"a GIF plays at most {GIF_MAX_FPS:g} fps (frame delays are whole multiples of "
                         f"10 ms), got fps={fps:g}: lower fps or write an .mp4")
    return 10 * max(1, math.floor(100.0 / fps + 0.5))


def write_video(path: str | os.PathLike[str], frames: Any, fps: float = 15.0) -> Path:
    """Write frames (T, H, W, 3) uint8 to ``.mp4`` (H.264) or ``.gif``; returns the path.

    The parent directory is created; the file appears atomically (written to a temporary name, then
    renamed), so a crash never leaves a half-written video behind; a path that cannot be written raises
    OSError naming ``path``. An mp4 pads odd sides (:func:`encoded_size`); a GIF's frame delay is the
    closest multiple of 10 ms (:func:`gif_frame_ms`: 15 fps plays at 70 ms a frame, fps above 100 raise).
    """
    import imageio.v2 as iio2
    import imageio.v3 as iio3

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(f"unsupported video format {path.suffix!r} for {path}: use one of {VIDEO_FORMATS}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    frame_ms = gif_frame_ms(fps) if suffix == ".gif" else 0
    a = _frames_u8(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        try:
            open(tmp, "wb").close()  # 1. fail here, naming path, if it cannot be written
        except OSError as e:
            raise _cannot_write(e, path) from e
        if suffix == ".mp4":
            writer = iio2.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                     macro_block_size=1, pixelformat="yuv420p")
            try:
                for frame in _pad_even(a):  # 2. one frame at a time keeps ffmpeg's pipe small
                    writer.append_data(frame)
            finally:
                writer.close()
        else:
            iio3.imwrite(tmp, list(a), plugin="pillow", duration=frame_ms, loop=0)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(f"cannot write {path}: the {suffix[1:]} encoder wrote nothing")
        try:
            os.replace(tmp, path)  # 3. the finished file appears at once
        except OSError as e:
            raise _cannot_write(e, path) from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_video(path: str | os.PathLike[str]) -> np.ndarray:
    """All frames (T, H, W, 3) uint8 of an ``.mp4`` or ``.gif`` (iterating, never ``len(reader)``)."""
    import imageio.v2 as iio2
    import imageio.v3 as iio3

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        reader = iio2.get_reader(path, format="FFMPEG")
        try:
            frames = [np.asarray(f) for f in reader]
        finally:
            reader.close()
        return np.stack(frames)
    if suffix == ".gif":
        a = iio3.imread(path, plugin="pillow", index=None, mode="RGB")
        return a if a.ndim == 4 else a[None]
    raise ValueError(f"unsupported video format {path.suffix!r} for {path}: use one of {VIDEO_FORMATS}")


def contact_sheet(frames: Any, n: int, path: str | os.PathLike[str] | None = None, columns: int | None = None,
                  gap: int = 2) -> np.ndarray:
    """``n`` evenly spaced frames of (T, H, W, 3) tiled into one image, each under a ``t=<index>`` strip.

    The strip sits above the tile (frames keep their own labels, e.g. a :func:`grid`'s). ``columns``
    defaults to ceil(sqrt(n)). Saved as PNG when ``path`` is given (it must end in ``.png``).
    Returns the sheet (H_sheet, W_sheet, 3) uint8.
    """
    from PIL import Image

    a = _frames_u8(frames)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if path is not None and Path(path).suffix.lower() != ".png":
        raise ValueError(f"contact sheets are written as PNG; {path} does not end in .png")
    T, H, W = a.shape[:3]
    idx = np.unique(np.round(np.linspace(0, T - 1, min(n, T))).astype(np.int64))
    cols = columns or math.ceil(math.sqrt(len(idx)))
    rows = math.ceil(len(idx) / cols)
    strip_h = _text_mask("t=0", W, H).shape[0]
    th = strip_h + H  # tile height: caption strip + frame
    sheet = np.zeros((rows * th + (rows - 1) * gap, cols * W + (cols - 1) * gap, 3), dtype=np.uint8)
    for k, t in enumerate(idx):  # 1. caption strip and frame of each tile, row-major
        r, c = divmod(k, cols)
        y, x = r * (th + gap), c * (W + gap)
        caption = _text_mask(f"t={int(t)}", W, H)[:, :, None] * 255.0 + 0.5  # (strip_h, W, 1) white text
        sheet[y:y + strip_h, x:x + W] = caption.astype(np.uint8)
        sheet[y + strip_h:y + th, x:x + W] = a[t]
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(path)
        try:
            Image.fromarray(sheet).save(tmp, format="PNG")
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot_write(e, path) from e
        finally:
            if tmp.exists():
                tmp.unlink()
    return sheet
