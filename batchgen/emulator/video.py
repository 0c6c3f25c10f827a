"""Real H.264 clips for the emulator: a slow push-in on the job's start image.

PyAV ships its own FFmpeg with libx264, so nothing needs a system install. Clips are small
(320 px wide, 12 fps) and cached by (image, duration). When the start image cannot be read
(a remote URL the emulator does not fetch), a stock clip with a gradient is used instead.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from fractions import Fraction

import av
from PIL import Image, ImageDraw

WIDTH = 320
FPS = 12

_cache: dict[tuple[str, int], bytes] = {}
_lock = threading.Lock()


def image_from_data_uri(uri: str) -> bytes | None:
    """The bytes of a ``data:image/...;base64,`` URI, or None."""
    if not uri.startswith("data:") or ";base64," not in uri:
        return None
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=False)
    except ValueError:
        return None


def _stock_image() -> Image.Image:
    image = Image.new("RGB", (640, 360))
    draw = ImageDraw.Draw(image)
    for y in range(360):
        shade = int(40 + 150 * y / 360)
        draw.line([(0, y), (640, y)], fill=(20, shade // 2, shade))
    draw.ellipse((250, 110, 390, 250), fill=(250, 200, 90))
    draw.text((20, 20), "batchgen emulator", fill=(255, 255, 255))
    return image


def clip_for(image_bytes: bytes | None, duration: int) -> bytes:
    """An MP4 of ``duration`` seconds from ``image_bytes`` (or the stock picture). Cached."""
    key = (hashlib.sha256(image_bytes).hexdigest() if image_bytes else "stock", duration)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    image: Image.Image | None = None
    if image_bytes:
        try:
            image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        except Exception:  # noqa: BLE001 - any unreadable image falls back to the stock clip
            image = None
    data = render(image or _stock_image(), duration)
    with _lock:
        _cache[key] = data
    return data


def render(image: Image.Image, duration: int) -> bytes:
    """Encode a push-in (zoom 1.0 -> 1.15 towards the centre) of ``image``."""
    height = int(WIDTH * image.height / image.width) // 2 * 2
    frames = max(1, int(duration * FPS))
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = WIDTH, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "30", "preset": "veryfast"}
        stream.time_base = Fraction(1, FPS)
        for index in range(frames):
            zoom = 1.0 + 0.15 * index / max(1, frames - 1)
            w, h = image.width / zoom, image.height / zoom
            left, top = (image.width - w) / 2, (image.height - h) / 2
            frame_image = image.resize((WIDTH, height), box=(left, top, left + w, top + h))
            frame = av.VideoFrame.from_image(frame_image)  # type: ignore[no-untyped-call]
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def tagged(clip: bytes, tag: str) -> bytes:
    """The clip with a trailing MP4 ``free`` box naming ``tag``: still valid, now unique."""
    payload = tag.encode("utf-8")
    return clip + (8 + len(payload)).to_bytes(4, "big") + b"free" + payload
