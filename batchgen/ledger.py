"""CONTRACT STUB: the SQLite ledger (being written). Report code relies on JobState and JobRecord."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job stands. The ledger is the truth."""

    PENDING = "pending"  # in the manifest, never submitted
    SUBMITTING = "submitting"  # intent committed, submit POST under way
    UNCERTAIN = "uncertain"  # submit answer lost: may exist remotely; never auto-resubmitted
    QUEUED = "queued"  # request id recorded, in_queue remotely
    RUNNING = "running"  # in_progress remotely
    SUCCEEDED = "succeeded"  # remote result succeeded, files not all downloaded yet
    DONE = "done"  # every output file downloaded and verified
    FAILED = "failed"  # generation failed or inputs refused
    CANCELLED = "cancelled"  # cancelled remotely before it ran


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One downloaded result file, relative to the output folder."""

    path: str  # e.g. "hero-01.mp4"
    url: str
    size: int
    sha256: str
    poster: str = ""  # e.g. "posters/hero-01.jpg", "" when none could be made


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the ledger knows it."""

    id: str
    position: int
    row: str
    model: str
    fingerprint: str
    inputs: dict[str, Any]  # as the user wrote them (local images as paths, never base64)
    seconds: int
    estimated_cost: float
    state: JobState
    request_id: str | None
    attempts: int  # paid submissions made (or possibly made)
    error: str  # last error, "" when none
    queue_position: int | None
    submitted_at: float | None  # unix seconds
    started_at: float | None  # first seen in_progress
    finished_at: float | None  # remote result seen terminal
    downloaded_at: float | None
    files: tuple[OutputFile, ...]
    in_manifest: bool  # False when the row has disappeared from the manifest
    changed: bool  # manifest row differs from what was submitted

    @property
    def generation_seconds(self) -> float | None:
        """Submit to finish, as batchgen saw it."""
        if self.submitted_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.submitted_at
