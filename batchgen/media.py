"""Poster frames and durations of downloaded videos, with PyAV (its own FFmpeg).

Both functions are best effort: a poster or a duration is a nicety of the report, so an
undecodable file gives ``False`` / ``None`` and never an exception.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av

log = logging.getLogger("batchgen.media")

#: Stop looking for the frame at ``at`` after this many decoded frames (keeps posters fast).
_MAX_FRAMES = 90


def extract_poster(video: Path, poster: Path, *, width: int = 320, at: float = 0.5) -> bool:
    """Save a ``width``-px-wide JPEG of the frame near ``at`` s (else the first decodable one).

    Returns False, and writes nothing, when the file holds no decodable video frame.
    """
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            chosen = None
            seen = 0
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet: try the next one
                for frame in frames:
                    chosen = frame
                    seen += 1
                    if frame.time is None or frame.time >= at or seen >= _MAX_FRAMES:
                        break
                else:
                    continue
                break
            if chosen is None:
                return False
            src_w, src_h = chosen.width, chosen.height
            height = max(2, round(width * src_h / max(1, src_w) / 2) * 2)
            image = chosen.to_image(width=width, height=height)  # type: ignore[no-untyped-call]
        poster.parent.mkdir(parents=True, exist_ok=True)
        tmp = poster.with_name(f".{poster.name}.tmp")
        image.save(tmp, format="JPEG", quality=80, optimize=True)
        os.replace(tmp, poster)
    except Exception as exc:  # noqa: BLE001 - never fail a job for its poster
        log.info("no poster for %s: %s", video, exc)
        return False
    return True


def probe_duration(video: Path) -> float | None:
    """The video's duration in seconds, or None when it cannot be read."""
    try:
        with av.open(str(video)) as container:
            if container.duration is not None and container.duration > 0:
                return float(container.duration) / av.time_base
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 - unreadable is an answer: None
        return None
    return None
