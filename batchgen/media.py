"""Poster frames and durations of downloaded videos, with PyAV (its own FFmpeg)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av

log = logging.getLogger("batchgen.media")


def extract_poster(video: Path, poster: Path, *, width: int = 320, at: float = 0.5) -> bool:
    """Save a JPEG of the frame near ``at`` seconds (or the first frame); False if undecodable."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.time is not None and frame.time >= at:
                    break
            if chosen is None:
                return False
            image = chosen.to_image()  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - a poster is a nicety; never fail a job for it
        log.info("no poster for %s: %s", video, exc)
        return False
    height = max(2, int(width * image.height / max(1, image.width)))
    poster.parent.mkdir(parents=True, exist_ok=True)
    tmp = poster.with_name(f".{poster.name}.tmp")
    image.resize((width, height)).save(tmp, format="JPEG", quality=80)
    os.replace(tmp, poster)
    return True


def probe_duration(video: Path) -> float | None:
    """The video's duration in seconds, or None when it cannot be read."""
    try:
        with av.open(str(video)) as container:
            if container.duration is not None:
                return float(container.duration) / av.time_base
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001
        return None
    return None
