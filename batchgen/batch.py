"""The library API: plan, run, retry, status, cancel and report a batch.

``run_batch`` reads top to bottom as the data flow:
load and validate the manifest -> plan it in the ledger -> schedule it -> write the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from .api import RunComfyClient
from .config import RunConfig, Secret
from .errors import LedgerUnavailable
from .jobs import JobSheet, load_jobs
from .ledger import IN_FLIGHT, JobRecord, JobState, Ledger, SyncReport
from .report import ReportSummary, write_report, write_results_csv
from .scheduler import EventSink, JobEvent, RunOutcome, Scheduler, repair_sidecars
from .throttle import Throttle

log = logging.getLogger("batchgen")

#: Exit codes, as in sysexits where one fits (so cron wrappers can branch on them).
EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH_OR_CREDIT = 3
EXIT_INCOMPLETE = 75

#: Version of the ``status --json`` document; bumped only on incompatible changes.
STATUS_SCHEMA = 1


def default_ledger(out_dir: Path) -> Path:
    """Where a batch keeps its ledger unless told otherwise."""
    return out_dir / ".batchgen" / "ledger.sqlite"


# ---- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What a run would do, before anything is spent."""

    manifest: str
    model: str
    jobs: int
    video_seconds: int
    estimated_cost_usd: float
    price_note: str
    new: int
    done: int
    in_flight: int
    failed: int
    uncertain: int
    changed: int
    disappeared: int
    to_submit: int
    to_submit_cost_usd: float
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


def plan_batch(
    manifest: Path,
    out_dir: Path | None = None,
    *,
    model: str | None = None,
    allow_unknown_model: bool = False,
    ledger_path: Path | None = None,
) -> PlanReport:
    """Validate ``manifest`` and say what a run into ``out_dir`` would do and cost."""
    sheet = load_jobs(manifest, model=model, allow_unknown_model=allow_unknown_model)
    known: dict[str, JobRecord] = {}
    disappeared = 0
    path = ledger_path or (default_ledger(out_dir) if out_dir else None)
    if path is not None and path.exists():
        with Ledger.open(path, create=False) as ledger:
            records = ledger.records()
        known = {r.id: r for r in records}
        ids = {job.id for job in sheet.jobs}
        disappeared = sum(1 for r in records if r.id not in ids)
    counts: Counter[str] = Counter()
    to_submit_cost = 0.0
    for job in sheet.jobs:
        record = known.get(job.id)
        if record is None or record.state is JobState.PENDING:
            counts["new" if record is None else "pending"] += 1
            counts["to_submit"] += 1
            to_submit_cost += job.estimated_cost
            continue
        if record.submitted_fingerprint and job.fingerprint != record.submitted_fingerprint:
            counts["changed"] += 1
        if record.state is JobState.DONE:
            counts["done"] += 1
        elif record.state in IN_FLIGHT or record.state is JobState.SUCCEEDED:
            counts["in_flight"] += 1
        elif record.state in (JobState.FAILED, JobState.CANCELLED):
            counts["failed"] += 1
        elif record.state in (JobState.UNCERTAIN, JobState.SUBMITTING):
            counts["uncertain"] += 1
    return PlanReport(
        manifest=str(manifest),
        model=sheet.model,
        jobs=len(sheet.jobs),
        video_seconds=sum(job.seconds for job in sheet.jobs),
        estimated_cost_usd=round(sum(job.estimated_cost for job in sheet.jobs), 4),
        price_note=_price_note(sheet),
        new=counts["new"] + counts["pending"],
        done=counts["done"],
        in_flight=counts["in_flight"],
        failed=counts["failed"],
        uncertain=counts["uncertain"],
        changed=counts["changed"],
        disappeared=disappeared,
        to_submit=counts["to_submit"],
        to_submit_cost_usd=round(to_submit_cost, 4),
        warnings=tuple(sheet.warnings),
    )


def _price_note(sheet: JobSheet) -> str:
    if sheet.settings.price_per_second is not None:
        return f"estimate at ${sheet.settings.price_per_second}/s (price_per_second in manifest)"
    return f"estimate from the published per-second price of {sheet.model}"


# ---- run --------------------------------------------------------------------------------------


@dataclass(slots=True)
class RunSummary:
    """How a run ended and what the batch looks like now."""

    exit_code: int
    counts: dict[str, int]
    jobs: int
    message: str = ""
    submitted: int = 0
    run_spend: float = 0.0
    total_spend: float = 0.0
    wall_seconds: float = 0.0
    api_calls: bool = False
    sync: SyncReport | None = None
    problems: list[JobRecord] = field(default_factory=list)  # failed, uncertain, not downloaded


async def run_batch(
    manifest: Path,
    config: RunConfig,
    *,
    token: Secret,
    model: str | None = None,
    allow_unknown_model: bool = False,
    on_event: EventSink | None = None,
    on_start: Callable[[int], None] | None = None,
    command: str = "run",
    handle_signals: bool = True,
) -> RunSummary:
    """Take a manifest to a folder of finished videos; resumable at any point.

    ``on_event`` receives every job's state changes; ``on_start`` the number of jobs this run
    has work for, once, before the first request (progress bars use both).

    Raises ``ManifestError`` (nothing sent), ``LedgerLocked`` (another run holds the batch),
    ``LedgerUnavailable`` (the ledger cannot be written: the run stopped at once),
    ``ConfigError``. Everything else that goes wrong is in the summary and the ledger.
    """
    started = time.time()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    with Ledger.open(config.ledger_file) as ledger:
        ledger.lock(command)
        sheet = load_jobs(manifest, model=model, allow_unknown_model=allow_unknown_model)
        run_id = ledger.start_run(command)
        with _run_log(config.out_dir, on_event) as emit:
            recovered = ledger.recover_interrupted()
            sync = ledger.sync(sheet.jobs)
            _apply_resets(ledger, sheet, config, sync, recovered)
            records = ledger.records(include_disappeared=False)
            todo = [r for r in records if _has_work(r, config)]
            if on_start is not None:
                on_start(len(todo))
            outcome = RunOutcome()
            if todo:
                outcome = await _schedule(ledger, sheet, config, token, todo, emit, handle_signals)
            if outcome.stop_reason == "ledger":
                raise LedgerUnavailable(
                    f"{outcome.stop_message}. The run stopped at once; everything recorded before "
                    "is kept. Free space and run again: a job whose submit could not be recorded "
                    "will be reported uncertain, not submitted again."
                )
            records = ledger.records()
            summary = _summarise(ledger, records, outcome, started, sync, bool(todo))
            emit_line = {"event": "run_finished", "exit_code": summary.exit_code}
            emit(JobEvent("", "", JobState.DONE, json.dumps(emit_line)))
        try:
            write_outputs(config.out_dir, records, wall_seconds=summary.wall_seconds)
        except OSError as exc:
            summary.message = _join(
                summary.message, f"results.csv and report.html not written: {exc.strerror}"
            )
        ledger.finish_run(run_id, summary.exit_code)
    return summary


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _apply_resets(
    ledger: Ledger,
    sheet: JobSheet,
    config: RunConfig,
    sync: SyncReport,
    recovered: Sequence[str],
) -> None:
    """Turn retry flags and manifest settings into jobs made pending again."""
    wanted = config.only_ids
    records = ledger.records(include_disappeared=False)

    def chosen(record: JobRecord) -> bool:
        return wanted is None or record.id in wanted

    resubmit_uncertain = config.resubmit_uncertain or sheet.settings.on_uncertain == "resubmit"
    again: list[str] = []
    for record in records:
        if not chosen(record):
            continue
        if _resubmit(record, config, resubmit_uncertain):
            again.append(record.id)
        elif record.state is JobState.DONE and not _files_present(config.out_dir, record):
            ledger.record_missing_files(record.id)
    if again:
        ledger.reset(again, "resubmitted on request")


def _resubmit(record: JobRecord, config: RunConfig, resubmit_uncertain: bool) -> bool:
    """Whether a settled job is to be submitted again (retry flags, --rerender-changed)."""
    if record.state is JobState.UNCERTAIN:
        return resubmit_uncertain
    if record.state in (JobState.FAILED, JobState.CANCELLED) and config.resubmit_failed:
        return True
    # Only settled jobs are re-rendered: one still in flight is collected first.
    settled = record.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
    return record.changed and config.rerender_changed and settled


def _files_present(out_dir: Path, record: JobRecord) -> bool:
    for f in record.files:
        try:
            if (out_dir / f.path).stat().st_size != f.size:
                return False
        except OSError:
            return False
    return True


def _has_work(record: JobRecord, config: RunConfig) -> bool:
    if config.only_ids is not None and record.id not in config.only_ids:
        return record.state in IN_FLIGHT or record.state is JobState.SUCCEEDED
    return record.state in IN_FLIGHT or record.state in (JobState.PENDING, JobState.SUCCEEDED)


async def _schedule(
    ledger: Ledger,
    sheet: JobSheet,
    config: RunConfig,
    token: Secret,
    todo: Sequence[JobRecord],
    emit: EventSink,
    handle_signals: bool,
) -> RunOutcome:
    throttle = Throttle(config.limits.rate)
    timeout = httpx.Timeout(config.http_timeout, connect=10.0)
    jobs = {job.id: job for job in sheet.jobs}
    async with (
        RunComfyClient(config.base_url, token, throttle=throttle, timeout=timeout) as client,
        httpx.AsyncClient(timeout=timeout, follow_redirects=True) as files_http,
    ):
        scheduler = Scheduler(
            ledger=ledger,
            client=client,
            files_http=files_http,
            config=config,
            jobs=jobs,
            on_event=emit,
        )
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, scheduler.interrupt, "interrupted")
                    installed.append(sig)
        timer = None
        if config.deadline is not None:
            timer = loop.call_later(config.deadline, scheduler.interrupt, "deadline")
        try:
            return await scheduler.run(todo)
        finally:
            if timer is not None:
                timer.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)


def _summarise(
    ledger: Ledger,
    records: Sequence[JobRecord],
    outcome: RunOutcome,
    started: float,
    sync: SyncReport,
    api_calls: bool,
) -> RunSummary:
    current = [r for r in records if r.in_manifest]
    counts = Counter(r.state.value for r in current)
    problems = [
        r
        for r in current
        if r.state in (JobState.FAILED, JobState.UNCERTAIN, JobState.CANCELLED, JobState.SUCCEEDED)
    ]
    # A succeeded job whose files are not all here is paid for: the next run only downloads it.
    waiting = (JobState.PENDING, JobState.SUCCEEDED)
    unfinished = any(r.state in IN_FLIGHT or r.state in waiting for r in current)
    if outcome.stop_reason in ("auth", "credit"):
        code = EXIT_AUTH_OR_CREDIT
    elif outcome.stop_reason or unfinished:
        code = EXIT_INCOMPLETE
    elif problems:
        code = EXIT_SOME_FAILED
    else:
        code = EXIT_OK
    return RunSummary(
        exit_code=code,
        counts=dict(counts),
        jobs=len(current),
        message=outcome.stop_message,
        submitted=outcome.submitted,
        run_spend=outcome.run_spend,
        total_spend=ledger.estimated_spend(),
        wall_seconds=time.time() - started,
        api_calls=api_calls,
        sync=sync,
        problems=problems,
    )


@contextlib.contextmanager
def _run_log(out_dir: Path, on_event: EventSink | None) -> Iterator[EventSink]:
    """A JSON-lines log of the run in ``DIR/.batchgen/logs/``, plus the caller's subscriber."""
    logs = out_dir / ".batchgen" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / time.strftime("run-%Y%m%d-%H%M%S.jsonl")
    with open(path, "a", encoding="utf-8") as fh:

        def emit(event: JobEvent) -> None:
            _log_event(fh, event)
            if on_event is not None and event.job_id:
                on_event(event)

        yield emit


def _log_event(fh: TextIO, event: JobEvent) -> None:
    line = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.at)),
        "job": event.job_id,
        "row": event.row,
        "state": event.state.value,
        "detail": event.detail,
    }
    fh.write(json.dumps(line) + "\n")
    fh.flush()


# ---- outputs, status, cancel ------------------------------------------------------------------


def write_outputs(
    out_dir: Path, records: Sequence[JobRecord], *, wall_seconds: float | None
) -> None:
    """Write ``results.csv`` and ``report.html`` from ledger records (and any sidecar that a
    killed run did not get to write)."""
    repaired = repair_sidecars(out_dir, records)
    if repaired:
        log.info("wrote missing sidecars: %s", ", ".join(repaired))
    write_results_csv([r for r in records if r.in_manifest], out_dir / "results.csv")
    write_report(records, _report_summary(out_dir, records, wall_seconds), out_dir)


def _report_summary(
    out_dir: Path, records: Sequence[JobRecord], wall_seconds: float | None
) -> ReportSummary:
    current = [r for r in records if r.in_manifest]
    done = [r for r in current if r.state is JobState.DONE]
    return ReportSummary(
        title=f"batchgen: {out_dir.resolve().name}",
        counts=dict(Counter(r.state.value for r in current)),
        total_seconds=sum(r.seconds for r in done),
        all_seconds=sum(r.seconds for r in current),
        estimated_spend=round(sum(r.estimated_cost * r.attempts for r in records), 4),
        wall_seconds=wall_seconds,
        generated_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def report_batch(out_dir: Path, *, ledger_path: Path | None = None) -> Path:
    """Rewrite ``results.csv`` and ``report.html`` from the ledger; returns the CSV path."""
    with Ledger.open(ledger_path or default_ledger(out_dir), create=False) as ledger:
        records = ledger.records()
        last = ledger.last_run()
    wall = None
    if last and last.get("finished_at") and last.get("started_at"):
        wall = float(last["finished_at"]) - float(last["started_at"])
    write_outputs(out_dir, records, wall_seconds=wall)
    return out_dir / "results.csv"


def batch_status(out_dir: Path, *, ledger_path: Path | None = None) -> dict[str, Any]:
    """The batch's state as a stable JSON-ready document (see README, "status --json")."""
    path = ledger_path or default_ledger(out_dir)
    with Ledger.open(path, create=False) as ledger:
        records = ledger.records()
        spend = ledger.estimated_spend()
        last = ledger.last_run()
        holder = ledger.lock_holder()
    current = [r for r in records if r.in_manifest]
    counts = {state.value: 0 for state in JobState}
    counts.update(Counter(r.state.value for r in current))

    def brief(r: JobRecord) -> dict[str, Any]:
        return {
            "id": r.id,
            "row": r.row,
            "state": r.state.value,
            "request_id": r.request_id,
            "error": r.error,
            "attempts": r.attempts,
        }

    return {
        "schema": STATUS_SCHEMA,
        "out_dir": str(out_dir),
        "ledger": str(path),
        "jobs": len(current),
        "counts": counts,
        "complete": bool(current) and all(r.state is JobState.DONE for r in current),
        "estimated_spend_usd": round(spend, 4),
        "video_seconds_done": sum(r.seconds for r in current if r.state is JobState.DONE),
        "failed": [brief(r) for r in current if r.state in (JobState.FAILED, JobState.CANCELLED)],
        "uncertain": [brief(r) for r in current if r.state is JobState.UNCERTAIN],
        "not_downloaded": [brief(r) for r in current if r.state is JobState.SUCCEEDED],
        "changed": [r.id for r in current if r.changed],
        "disappeared": [r.id for r in records if not r.in_manifest],
        "last_run": last,
        "running_now": {"pid": holder.pid, "started_at": holder.started_at} if holder.pid else None,
    }


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The outcome of cancelling one remote request."""

    job_id: str
    request_id: str
    outcome: str  # "cancelled", "not_cancellable" or "error: ..."


async def cancel_batch(
    out_dir: Path,
    *,
    token: Secret,
    base_url: str,
    rate: float = 2.0,
    ledger_path: Path | None = None,
) -> list[CancelResult]:
    """Cancel every queued remote request of the batch and record each outcome."""
    results: list[CancelResult] = []
    with Ledger.open(ledger_path or default_ledger(out_dir), create=False) as ledger:
        ledger.lock("cancel")
        pending = [r for r in ledger.records() if r.state in IN_FLIGHT and r.request_id]
        if not pending:
            return results
        async with RunComfyClient(base_url, token, throttle=Throttle(rate)) as client:
            for record in pending:
                assert record.request_id is not None
                try:
                    outcome = await client.cancel(record.request_id, job_id=record.id)
                except Exception as exc:  # noqa: BLE001 - every job gets an outcome line
                    results.append(CancelResult(record.id, record.request_id, f"error: {exc}"))
                    continue
                if outcome == "cancelled":
                    ledger.record_cancelled(record.id, "cancelled by batchgen cancel")
                results.append(CancelResult(record.id, record.request_id, outcome))
    return results
