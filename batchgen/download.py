"""Careful downloads of result files, as rclone does them.

Stream to ``<name>.part`` while hashing, resume with ``Range`` when the connection is cut,
check the length, fsync, rename into place, fsync the folder. Memory stays flat whatever the
file size. File hosts never see the Authorization header: the caller passes a plain client.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import stamina

from .errors import DownloadError

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """A verified file on disk."""

    path: Path
    url: str
    size: int
    sha256: str


class _Retry(Exception):
    """A cut connection or a 5xx: worth another try from where we are."""


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def download(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    job_id: str,
    max_bytes: int = 2 * 1024**3,
    expected_sha256: str | None = None,
    attempts: int = 5,
) -> DownloadedFile:
    """Fetch ``url`` into ``dest`` safely; a file already there with ``expected_sha256`` is kept."""
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"refusing to download a non-http URL {url!r}", job_id=job_id, url=url)
    if expected_sha256 and dest.exists() and file_sha256(dest) == expected_sha256:
        return DownloadedFile(dest, url, dest.stat().st_size, expected_sha256)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        async for attempt in stamina.retry_context(
            on=_Retry, attempts=attempts, wait_initial=0.2, wait_max=5.0
        ):
            with attempt:
                size, digest = await _fetch(http, url, part, job_id=job_id, max_bytes=max_bytes)
    except _Retry as exc:
        raise DownloadError(
            f"download kept failing ({exc}); the partial file is kept for the next run",
            job_id=job_id,
            url=url,
        ) from None
    os.replace(part, dest)
    _fsync_dir(dest.parent)
    return DownloadedFile(dest, url, size, digest)


async def _fetch(
    http: httpx.AsyncClient, url: str, part: Path, *, job_id: str, max_bytes: int
) -> tuple[int, str]:
    """One attempt: continue ``part`` from where it ends; returns (size, sha256) when complete."""
    digest = hashlib.sha256()
    have = 0
    if part.exists():
        with open(part, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                have += len(chunk)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with http.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and have:
                part.unlink()  # our partial file is longer than the remote one: start over
                raise _Retry("range not satisfiable")
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retry(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise DownloadError(
                    f"the file host answered HTTP {response.status_code} (expired URL?)",
                    job_id=job_id,
                    url=url,
                )
            if have and response.status_code == 200:
                # The host ignored Range: start from zero.
                digest, have = hashlib.sha256(), 0
                mode = "wb"
            else:
                mode = "ab" if have else "wb"
            total = _expected_total(response, have)
            if total is not None and total > max_bytes:
                raise DownloadError(
                    f"the file is {total} bytes, over the {max_bytes}-byte cap",
                    job_id=job_id,
                    url=url,
                )
            try:
                with open(part, mode) as fh:
                    async for chunk in response.aiter_raw():
                        have += len(chunk)
                        if have > max_bytes:
                            raise DownloadError(
                                f"the file passed the {max_bytes}-byte cap", job_id=job_id, url=url
                            )
                        digest.update(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:  # raised by a write, the flush or the close
                raise _write_error(exc, part, job_id=job_id, url=url) from None
    except httpx.TransportError as exc:
        raise _Retry(f"{type(exc).__name__} after {have} bytes") from exc
    if total is not None and have != total:
        raise _Retry(f"got {have} of {total} bytes")
    return have, digest.hexdigest()


def _expected_total(response: httpx.Response, have: int) -> int | None:
    """The complete file's size, from Content-Range or Content-Length."""
    content_range = response.headers.get("content-range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    length = response.headers.get("content-length")
    if length and length.isdigit():
        return int(length) + (have if response.status_code == 206 else 0)
    return None


def _write_error(exc: OSError, part: Path, *, job_id: str, url: str) -> DownloadError:
    """A clear message for a file that could not be written."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DownloadError(
            f"no room to write {part} ({exc.strerror}); free space and run again: the partial "
            "file is kept, and the next run resumes it without resubmitting the job",
            job_id=job_id,
            url=url,
        )
    return DownloadError(f"cannot write {part}: {exc.strerror}", job_id=job_id, url=url)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
