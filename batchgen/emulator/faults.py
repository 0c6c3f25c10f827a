"""Fault injection for the emulator: what can go wrong, and how often.

Probabilities are decided by the emulator's seeded random generator, so a test with a given
seed sees the same faults every time. Scripted faults (``Script``) hit the next N calls of one
endpoint exactly, for tests that need one precise failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENDPOINTS = frozenset({"submit", "status", "result", "cancel"})


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults the emulator injects. Probabilities are 0..1."""

    #: Requests per second over all /v1 endpoints before answering 429 (0 = no limit).
    rate_limit: float = 0.0
    #: Send Retry-After as an HTTP date instead of seconds.
    retry_after_http_date: bool = False
    #: 500 on GETs, 503 on submit (the job is not created).
    fail_5xx: float = 0.0
    #: Close the connection without an answer.
    drop: float = 0.0
    #: When a submit is dropped, create the job first (the client cannot know).
    drop_after_accept: bool = True
    #: Seconds of delay before answering each call on an affected endpoint.
    slow: float = 0.0
    #: HTTP 200 with an unreadable body (GETs only).
    bad_json: float = 0.0
    #: HTTP 200 with a top-level error_code (GETs only).
    error_code_200: float = 0.0
    #: A file download that announces its full length, sends part of it and closes.
    truncate_download: float = 0.0
    #: Bytes per second for file downloads (0 = unlimited).
    slow_download: float = 0.0
    #: The generation ends failed ("model refused the prompt").
    fail_generation: float = 0.0
    #: A submit that creates the job, then answers 502.
    accept_then_502: float = 0.0
    #: Endpoints the generic faults (fail_5xx, drop, slow, bad_json, error_code_200) hit.
    endpoints: frozenset[str] = ENDPOINTS


@dataclass(slots=True)
class Script:
    """Exact faults for the next calls of one endpoint."""

    endpoint: str
    times: int
    status: int | None = None  # answer with this HTTP status, or drop when None
    retry_after: float | None = None


@dataclass(slots=True)
class ScriptBook:
    """Scripted faults waiting for their calls."""

    entries: list[Script] = field(default_factory=list)

    def take(self, endpoint: str) -> Script | None:
        """The scripted fault for this call, if any (and count it used)."""
        for entry in self.entries:
            if entry.endpoint == endpoint and entry.times > 0:
                entry.times -= 1
                return entry
        return None
