"""Every error batchgen raises, in one tree.

    BatchgenError
    ├── ManifestError            one or more problems in a manifest (each a ManifestIssue)
    ├── ConfigError              bad option, missing token, http:// to a non-loopback host
    ├── ApiError                 anything the RunComfy API said or failed to say (job_id, status)
    │   ├── TransientApiError    worth retrying: 5xx, resets, timeouts on GETs, bad JSON
    │   │   ├── RateLimited      429, with retry_after in seconds when the service gave one
    │   │   └── SubmitNotSent    a submit that certainly never reached the service
    │   ├── SubmitUncertain      a submit whose answer was lost: it may have been accepted
    │   └── PermanentApiError    retrying will not help
    │       ├── StopBatch        nothing more may be submitted: the run must stop
    │       │   ├── AuthError    401/403, error_code 400004
    │       │   └── CreditError  402, error_code 400002
    │       ├── InvalidInput     400/422 on a submit: this job's inputs were refused
    │       └── NotFound         404: request id unknown or expired
    ├── LedgerError              no ledger where one was expected, or a job it does not hold
    │   ├── LedgerLocked         another run holds the ledger (pid, started_at)
    │   └── LedgerUnavailable    the ledger cannot be opened or written now (disk full, I/O)
    └── DownloadError            a result file could not be fetched or verified (job_id, url)

The data lives in attributes, not only in the message, so callers branch on them. HTTP and
httpx exceptions are translated into these only inside ``api.py`` and ``download.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchgenError(Exception):
    """Root of every error batchgen raises on purpose."""


@dataclass(frozen=True, slots=True)
class ManifestIssue:
    """One problem in a manifest, located the way the user sees the file."""

    file: str
    row: str  # "row 7" (spreadsheet, header = row 1) or "line 12" (YAML) or "" (whole file)
    job_id: str  # "" when the job has no id yet
    field: str  # "" when the problem is not about one field
    message: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                self.file,
                self.row,
                f"job {self.job_id}" if self.job_id else "",
                f"field {self.field}" if self.field else "",
            )
            if part
        )
        return f"{where}: {self.message}"


class ManifestError(BatchgenError):
    """A manifest has problems; ``issues`` holds all of them, not only the first."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class ConfigError(BatchgenError):
    """A bad option or environment: missing token, unsafe base URL, unknown model."""


class ApiError(BatchgenError):
    """The RunComfy API failed or refused; ``job_id`` names the job it was about."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str = "",
        status: int | None = None,
        error_code: int | None = None,
        detail: object = None,
    ) -> None:
        self.job_id = job_id
        self.status = status
        self.error_code = error_code
        self.detail = detail
        prefix = f"job {job_id}: " if job_id else ""
        super().__init__(f"{prefix}{message}")


class TransientApiError(ApiError):
    """Worth retrying after a pause: 5xx, connection resets, timeouts, unreadable JSON."""


class RateLimited(TransientApiError):
    """HTTP 429; ``retry_after`` is in seconds when the service said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class SubmitNotSent(TransientApiError):
    """A submit that certainly did not reach the service (connection refused, 503 not taken)."""


class SubmitUncertain(ApiError):
    """A submit whose answer was lost: the job may exist and be billed. Never auto-resubmitted."""


class PermanentApiError(ApiError):
    """Retrying the same call will not help."""


class StopBatch(PermanentApiError):
    """The account cannot submit: stop the whole run, keep the ledger, exit 3."""


class AuthError(StopBatch):
    """The token was refused (401/403 or error_code 400004)."""


class CreditError(StopBatch):
    """The account has no credit left (402 or error_code 400002)."""


class InvalidInput(PermanentApiError):
    """The service refused this job's inputs (400/422); ``detail`` holds its explanation."""


class NotFound(PermanentApiError):
    """The request id is unknown to the service, deleted or expired (404)."""


class LedgerError(BatchgenError):
    """The ledger is not where it was expected, or does not hold what was asked for."""


class LedgerUnavailable(LedgerError):
    """The ledger cannot be opened or written now (disk full, I/O error, permissions).

    Whatever was committed before stays committed; a job whose submit answer could not be
    recorded is found ``submitting`` by the next run and becomes ``uncertain``, never resubmitted
    blindly.
    """


class LedgerLocked(LedgerError):
    """Another batchgen run holds this ledger."""

    def __init__(self, path: str, pid: int | None, started_at: str | None) -> None:
        self.path = path
        self.pid = pid
        self.started_at = started_at
        holder = f"pid {pid}, started {started_at}" if pid else "another process"
        super().__init__(f"{path} is in use by another batchgen run ({holder}); try again later")


class DownloadError(BatchgenError):
    """A result file could not be fetched or verified."""

    def __init__(self, message: str, *, job_id: str = "", url: str = "") -> None:
        self.job_id = job_id
        self.url = url
        prefix = f"job {job_id}: " if job_id else ""
        super().__init__(f"{prefix}{message}")
