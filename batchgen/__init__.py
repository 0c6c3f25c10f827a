"""batchgen: turn a prompt sheet into finished videos on RunComfy's Model API.

The library API mirrors the CLI::

    from batchgen import RunConfig, load_token, plan_batch, run_batch
    report = plan_batch(Path("campaign.yaml"))
    summary = asyncio.run(run_batch(Path("campaign.yaml"), RunConfig(out_dir=Path("out")),
                                    token=load_token()))
"""

from __future__ import annotations

from importlib.metadata import version

from .batch import (
    PlanReport,
    RunSummary,
    batch_status,
    cancel_batch,
    plan_batch,
    report_batch,
    run_batch,
)
from .config import Limits, PollPolicy, RunConfig, Secret, load_token
from .errors import (
    ApiError,
    AuthError,
    BatchgenError,
    ConfigError,
    CreditError,
    DownloadError,
    LedgerError,
    LedgerLocked,
    LedgerUnavailable,
    ManifestError,
    ManifestIssue,
)
from .jobs import Job, JobSheet, load_jobs
from .ledger import JobRecord, JobState

__version__ = version("batchgen")

__all__ = [
    "ApiError",
    "AuthError",
    "BatchgenError",
    "ConfigError",
    "CreditError",
    "DownloadError",
    "Job",
    "JobRecord",
    "JobSheet",
    "JobState",
    "LedgerError",
    "LedgerLocked",
    "LedgerUnavailable",
    "Limits",
    "ManifestError",
    "ManifestIssue",
    "PlanReport",
    "PollPolicy",
    "RunConfig",
    "RunSummary",
    "Secret",
    "batch_status",
    "cancel_batch",
    "load_jobs",
    "load_token",
    "plan_batch",
    "report_batch",
    "run_batch",
]
