"""Validated jobs: manifest rows checked against the model's input schema.

CONTRACT STUB (to be implemented by the manifest/validation work). Other modules rely on:
``Job``, ``JobSheet``, ``load_jobs``, ``payload``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """One video to make, validated, in manifest order."""

    id: str  # unique, filename-safe [A-Za-z0-9._-]{1,100}
    position: int  # 0-based manifest order
    row: str  # as the user sees it: "row 7" (sheet, header = row 1) or "line 12" (YAML)
    model: str
    inputs: dict[str, Any]  # inputs with defaults applied; local images as the user wrote them
    local_images: dict[str, Path]  # "start_image_url", "elements.0.frontal_image_url", ... -> file
    fingerprint: str  # sha256 hex over model + inputs + local image contents
    seconds: int  # video seconds requested (duration)
    estimated_cost: float  # USD, price per second x seconds


@dataclass(frozen=True, slots=True)
class SheetSettings:
    """Batch-wide settings a YAML manifest may carry."""

    on_uncertain: str = "report"  # "report" or "resubmit"
    price_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class JobSheet:
    """A whole validated manifest."""

    source: Path
    model: str
    jobs: list[Job]
    settings: SheetSettings = SheetSettings()
    warnings: list[str] = field(default_factory=list)


def load_jobs(
    path: Path, *, model: str | None = None, allow_unknown_model: bool = False
) -> JobSheet:
    """Read and validate a manifest; raise ManifestError with every problem found."""
    raise NotImplementedError


def payload(job: Job) -> dict[str, Any]:
    """The JSON body to submit: ``job.inputs`` with local images as data: URIs."""
    raise NotImplementedError
