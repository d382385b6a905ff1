"""Screenshots (PNG) and recordings (H.264 MP4 through PyAV's bundled FFmpeg, or an animated GIF
through Pillow) of rendered frames, written as they come: a recording never holds more than one
frame of RGB (a GIF keeps its 8-bit frames until the end, as GIF encoders do).

Frames are ``(H, W, 3)`` (or ``(H, W, 4)``, whose alpha is dropped) ``uint8`` RGB arrays, all the
size the encoder was opened with. MP4 uses yuv420p, the pixel format every player decodes, which
needs an even width and height.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

VIDEO_FORMATS = {".mp4": "H.264 MP4", ".gif": "animated GIF"}
IMAGE_FORMATS = {".png": "PNG image"}
MAX_SIDE = 4096
"""The largest width or height a screenshot or recording may have (pixels)."""
MAX_FPS = 240.0
MAX_GIF_BYTES = 2**30
"""A GIF's 8-bit frames (width x height bytes each) are held until it is written: at most this much."""


def video_format(path: str | Path) -> str:
    """The recording suffix of ``path`` (``.mp4``, ``.gif``) or a ValueError naming the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(f"cannot tell the recording format from {Path(path).name!r}: name it .mp4 or .gif")
    return suffix


def check_size(width: int, height: int, suffix: str) -> None:
    """Refuse (``ValueError``) a frame size the format cannot hold."""
    if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise ValueError(f"frame size {width}x{height}: each side must be 16..{MAX_SIDE} pixels")
    if suffix == ".mp4" and (width % 2 or height % 2):
        raise ValueError(f"frame size {width}x{height}: an MP4 needs an even width and height")


def check_gif_memory(frames: int, width: int, height: int, suffix: str) -> None:
    """Refuse (``ValueError``) a GIF whose frames would hold more than :data:`MAX_GIF_BYTES` until it is written."""
    if suffix == ".gif" and frames * width * height > MAX_GIF_BYTES:
        raise ValueError(f"{frames} frames of {width}x{height} hold {frames * width * height / 2**30:.1f} GiB until "
                         f"the GIF is written, over the {MAX_GIF_BYTES / 2**30:.0f} GiB limit; lower the frame rate "
                         "or the size, or make an MP4")


def _rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"a frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    if frame.shape[:2] != (height, width):
        raise ValueError(f"a frame of {frame.shape[1]}x{frame.shape[0]} in a {width}x{height} recording")
    return np.ascontiguousarray(frame[..., :3])


class VideoEncoder:
    """Encode frames one by one into the open binary file ``out`` (seekable: an MP4's index is
    written at the end). ``finish()`` completes the file; an encoder dropped before it leaves an
    unfinished file, which the caller removes (:func:`prior.files.atomic_write` does)."""

    def __init__(self, out: BinaryIO, suffix: str, *, fps: float, width: int, height: int) -> None:
        if suffix not in VIDEO_FORMATS:
            raise ValueError(f"unknown recording format {suffix!r}; expected {', '.join(VIDEO_FORMATS)}")
        if not 0.1 <= fps <= MAX_FPS:
            raise ValueError(f"frame rate {fps:g}: must be 0.1..{MAX_FPS:g} frames per second")
        check_size(width, height, suffix)
        self.out, self.suffix, self.fps, self.width, self.height = out, suffix, float(fps), width, height
        self.frames = 0
        self._gif: list = []
        if suffix == ".mp4":
            import av

            self._container = av.open(out, mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "18", "preset": "veryfast"}

    def add(self, frame: np.ndarray) -> None:
        rgb = _rgb(frame, self.width, self.height)
        if self.suffix == ".mp4":
            import av

            for packet in self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                self._container.mux(packet)
        else:
            from PIL import Image

            self._gif.append(Image.fromarray(rgb).quantize(colors=255, method=Image.Quantize.MEDIANCUT,
                                                           dither=Image.Dither.NONE))
        self.frames += 1

    def finish(self) -> None:
        if self.frames == 0:
            raise ValueError("a recording needs at least one frame")
        if self.suffix == ".mp4":
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            return
        # GIF delays are whole hundredths of a second: 30 fps plays at 3/100 s a frame (33.3 fps).
        delay_ms = 10 * max(2, round(100 / self.fps))
        first, *rest = self._gif
        first.save(self.out, format="GIF", save_all=True, append_images=rest, duration=delay_ms, loop=0,
                   optimize=False, disposal=1)
        self._gif = []


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W, 3|4)`` uint8 as the bytes of a PNG (RGBA keeps its alpha)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"an image must be (H, W, 3|4) uint8, got {image.shape} {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def source_frames(num_frames: int, source_fps: float, fps: float) -> np.ndarray:
    """Indices of the frames of a ``num_frames`` timeline at ``source_fps`` that a recording at
    ``fps`` shows: one per ``1 / fps`` seconds of playback (a 120 fps clip recorded at 30 fps takes
    every fourth frame), at least one."""
    if num_frames < 1:
        raise ValueError("nothing to record: the timeline has no frames")
    count = max(1, int(np.floor((num_frames - 1) * fps / source_fps + 1e-9)) + 1)
    return np.minimum(np.rint(np.arange(count) * source_fps / fps).astype(np.int64), num_frames - 1)


__all__ = ["IMAGE_FORMATS", "MAX_FPS", "MAX_GIF_BYTES", "MAX_SIDE", "VIDEO_FORMATS", "VideoEncoder", "check_gif_memory",
           "check_size", "png_bytes",
           "source_frames", "video_format"]
