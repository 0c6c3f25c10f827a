"""The scheduler: every job's way from ``pending`` to files on disk, under one throttle budget.

Two visible limits: the ``Throttle`` (API requests per second, all endpoints together, inside
the API client) and ``Slots`` (remote jobs queued or running at once). Jobs are submitted in
manifest order; each job then polls ``/status`` until it is terminal, reads the outcome from
``/result``, frees its slot, and downloads its files. Every state change is committed to the
ledger before the next step, and reported to the event sink.

The polling schedule (``next_poll_delay``) is a pure function so it can be tested with numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from .api import Cancelled, Failed, NotReady, RunComfyClient, Succeeded
from .config import PollPolicy, RunConfig
from .download import download
from .errors import (
    ApiError,
    AuthError,
    DownloadError,
    InvalidInput,
    LedgerUnavailable,
    NotFound,
    StopBatch,
    SubmitNotSent,
    SubmitUncertain,
    TransientApiError,
)
from .jobs import Job, payload
from .ledger import IN_FLIGHT, JobRecord, JobState, Ledger, OutputFile
from .media import extract_poster

log = logging.getLogger("batchgen.scheduler")

#: Consecutive failed polls of one job before this run stops watching it (it stays in flight).
MAX_POLL_FAILURES = 8
#: Downloads running at once.
DOWNLOAD_CONCURRENCY = 4
#: File suffixes kept from a result URL; anything else is saved as .mp4.
MEDIA_SUFFIXES = frozenset(
    {".mp4", ".mov", ".webm", ".mkv", ".gif", ".png", ".jpg", ".jpeg", ".webp", ".wav", ".mp3"}
)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job changed state (or something worth a line happened to it)."""

    job_id: str
    row: str
    state: JobState
    detail: str = ""
    at: float = field(default_factory=time.time)


class EventSink(Protocol):
    """Receives every ``JobEvent``; progress bars and logs subscribe this way."""

    def __call__(self, event: JobEvent) -> None: ...


def next_poll_delay(
    elapsed: float, policy: PollPolicy, earliest_finish: float | None, jitter: float = 1.0
) -> float:
    """Seconds to wait before the next status check of a job running for ``elapsed`` seconds.

    Before any job has finished (``earliest_finish`` is None) checks start at ``policy.first``
    and grow with the job's age by ``cold_fraction``. Once the earliest finish is known, checks
    come every ``fraction`` of the job's age, the first one a step past the earliest finish (a
    check right at it would almost always find the job still running): the longer a job has
    run, the less one more second of waiting costs relative to it.
    """
    if earliest_finish is None:
        base = max(policy.first, elapsed * policy.cold_fraction)
    elif elapsed < earliest_finish:
        base = earliest_finish - elapsed + max(policy.floor, earliest_finish * policy.fraction)
    else:
        base = max(policy.floor, elapsed * policy.fraction)
    return min(base, policy.cap) * jitter


def finish_estimate(unfinished_at: float, noticed_at: float) -> float:
    """When a job most likely finished, from the last check that found it unfinished
    (0 when none did) and the check that found it done."""
    if unfinished_at > 0:
        return (unfinished_at + noticed_at) / 2
    # Done at its first check: it finished shortly before. Half the check time would drag the
    # estimate down and waste checks; the check time itself would push it up without end.
    return 0.8 * noticed_at


class GenerationTimes:
    """What this batch has learnt about how long generations take.

    A job finished somewhere between the last check that found it unfinished and the check
    that found it done; each observation is ``finish_estimate`` of that interval. Learning from
    the moment a job was *noticed* finished instead would feed the polling delay back into the
    estimate and push every later first check further out.
    """

    __slots__ = ("_times",)

    def __init__(self, seed: Sequence[float] = ()) -> None:
        self._times: list[float] = [t for t in seed if t >= 0][-200:]

    def observe(self, seconds: float) -> None:
        """Note that a job finished about ``seconds`` after its submit."""
        if seconds >= 0:
            self._times = [*self._times[-199:], seconds]

    @property
    def earliest(self) -> float | None:
        """A low estimate of the next job's generation time (10th percentile)."""
        if not self._times:
            return None
        ordered = sorted(self._times)
        return ordered[len(ordered) // 10]

    def __repr__(self) -> str:
        return f"GenerationTimes(n={len(self._times)}, earliest={self.earliest})"


class Slots:
    """The in-flight cap: remote jobs queued or running at once.

    Unlike a semaphore, ``take_unconditionally`` lets jobs already in flight from an earlier run
    be counted without waiting, even when they exceed a cap that was lowered since.
    """

    __slots__ = ("limit", "used", "_changed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def take(self) -> None:
        """Wait for a free slot and take it."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.used < self.limit)
            self.used += 1

    def take_unconditionally(self) -> None:
        """Count a job that is already in flight."""
        self.used += 1

    async def give_back(self) -> None:
        """Free a slot."""
        async with self._changed:
            self.used -= 1
            self._changed.notify()

    def __repr__(self) -> str:
        return f"Slots(used={self.used}, limit={self.limit})"


@dataclass(slots=True)
class RunOutcome:
    """How the scheduling part of a run ended."""

    stop_reason: str = ""  # "", "auth", "credit", "interrupted", "deadline", "spend", "unavailable"
    stop_message: str = ""
    run_spend: float = 0.0
    submitted: int = 0
    unwatched: list[str] = field(default_factory=list)  # in flight, but this run stopped watching


class Scheduler:
    """Drives the jobs of one run. Create it inside the running event loop."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        client: RunComfyClient,
        files_http: httpx.AsyncClient,
        config: RunConfig,
        jobs: dict[str, Job],
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.files_http = files_http
        self.config = config
        self.jobs = jobs
        self.on_event: EventSink = on_event or (lambda event: None)
        self.rng = rng or random.Random()
        # Earlier runs recorded when jobs were noticed finished; shade that towards a lower bound.
        self.times = GenerationTimes([0.85 * t for t in ledger.generation_times()])
        self.slots = Slots(config.limits.max_in_flight)
        self.downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self.outcome = RunOutcome()
        self._stop_submitting = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[Any] | None = None

    # ---- control ----------------------------------------------------------------------------

    def stop(self, reason: str, message: str) -> None:
        """Stop submitting new jobs; jobs already in flight go on being watched."""
        if not self.outcome.stop_reason:
            self.outcome.stop_reason = reason
            self.outcome.stop_message = message
        self._stop_submitting.set()

    def interrupt(self, reason: str = "interrupted", message: str = "") -> None:
        """Stop everything now (signal, deadline, a ledger that cannot be written): the ledger
        already holds every state that could be recorded."""
        default = "stopped by signal" if reason == "interrupted" else "deadline reached"
        self.stop(reason, message or default)
        for task in list(self._tasks):
            task.cancel()
        if self._main is not None:
            self._main.cancel()

    # ---- the run ----------------------------------------------------------------------------

    async def run(self, records: Sequence[JobRecord]) -> RunOutcome:
        """Take every record that has work left to its end (or as far as this run may go)."""
        self._main = asyncio.current_task()
        try:
            await self._run(records)
        except asyncio.CancelledError:
            if not self.outcome.stop_reason:
                raise
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.outcome

    async def _run(self, records: Sequence[JobRecord]) -> None:
        to_submit: list[JobRecord] = []
        for record in records:
            if record.state in IN_FLIGHT and record.request_id:
                self.slots.take_unconditionally()
                self._spawn(self._watch_and_collect(self.jobs[record.id], record.request_id))
            elif record.state is JobState.SUCCEEDED:
                self._spawn(self._collect(self.jobs[record.id], record.output_urls))
            elif record.state is JobState.PENDING:
                to_submit.append(record)
        for record in to_submit:
            job = self.jobs[record.id]
            if self._stop_submitting.is_set():
                break
            if not self._within_budget(job):
                break
            await self.slots.take()
            if self._stop_submitting.is_set():
                await self.slots.give_back()
                break
            self.outcome.run_spend += job.estimated_cost
            self._spawn(self._submit_watch_collect(job))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _within_budget(self, job: Job) -> bool:
        cap = self.config.max_spend
        if cap is None or self.outcome.run_spend + job.estimated_cost <= cap + 1e-9:
            return True
        self.stop(
            "spend",
            f"--max-spend ${cap:.2f} reached: ${self.outcome.run_spend:.2f} submitted, "
            f"job {job.id} (${job.estimated_cost:.2f}) and later jobs not submitted",
        )
        return False

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, LedgerUnavailable):
            # Nothing more may happen that the ledger cannot record.
            self.interrupt("ledger", str(exc))
            return
        log.error("internal error in a job task: %r", exc, exc_info=exc)
        self.stop("unavailable", f"internal error: {exc!r}")

    def _emit(self, job: Job, state: JobState, detail: str = "") -> None:
        self.on_event(JobEvent(job.id, job.row, state, detail))

    # ---- one job ----------------------------------------------------------------------------

    async def _submit_watch_collect(self, job: Job) -> None:
        """Submit (again, when --retry-failed allows), watch, collect. Holds one slot."""
        holding = True
        try:
            while True:
                request_id = await self._submit(job)
                if request_id is None:
                    return
                outcome = await self._watch(job, request_id)
                if outcome is None:
                    return
                await self.slots.give_back()
                holding = False
                if isinstance(outcome, Succeeded):
                    await self._collect(job, outcome.urls)
                    return
                record = self.ledger.get(job.id)
                if (
                    record.state is not JobState.FAILED
                    or record.failures > self.config.retry_failed
                    or self._stop_submitting.is_set()
                    or not self._within_budget(job)
                ):
                    return
                self.ledger.reset([job.id], f"retrying after failure: {record.error}")
                await self.slots.take()
                holding = True
                self.outcome.run_spend += job.estimated_cost
        finally:
            if holding:
                await self.slots.give_back()

    async def _watch_and_collect(self, job: Job, request_id: str) -> None:
        """A job already in flight from an earlier run: watch it, then collect. Holds one slot."""
        try:
            outcome = await self._watch(job, request_id)
        finally:
            await self.slots.give_back()
        if isinstance(outcome, Succeeded):
            await self._collect(job, outcome.urls)

    async def _submit(self, job: Job) -> str | None:
        """Submit ``job`` once; the request id, or None when there is nothing to watch."""
        body = payload(job)
        intent: list[bool] = []

        def commit_intent() -> None:
            # Called by the client right before the POST leaves: the ledger knows first.
            if not intent:
                self.ledger.record_intent(job)
                self._emit(job, JobState.SUBMITTING)
                intent.append(True)

        try:
            submission = await self.client.submit(
                job.model, body, job_id=job.id, before_send=commit_intent
            )
        except asyncio.CancelledError:
            if intent:  # the POST may have left: we cannot know whether it was accepted
                self.ledger.record_uncertain(
                    job.id, "interrupted while submitting: the service may have accepted it"
                )
                self._emit(job, JobState.UNCERTAIN, "interrupted while submitting")
            raise
        except SubmitUncertain as exc:
            self.ledger.record_uncertain(job.id, str(exc))
            self._emit(job, JobState.UNCERTAIN, str(exc))
            return None
        except SubmitNotSent as exc:
            self.ledger.record_not_sent(job.id, str(exc))
            self._emit(job, JobState.PENDING, str(exc))
            self.stop("unavailable", f"the service is not taking submissions: {exc}")
            return None
        except StopBatch as exc:
            self.ledger.record_not_sent(job.id, str(exc))
            self._emit(job, JobState.PENDING, str(exc))
            self.stop("auth" if isinstance(exc, AuthError) else "credit", str(exc))
            return None
        except InvalidInput as exc:
            self.ledger.record_failed(job.id, str(exc), generation=False)
            self._emit(job, JobState.FAILED, str(exc))
            return None
        except ApiError as exc:
            # Any other answer to a paid POST: we cannot tell whether it was accepted.
            self.ledger.record_uncertain(job.id, str(exc))
            self._emit(job, JobState.UNCERTAIN, str(exc))
            return None
        try:
            self.ledger.record_submitted(job.id, submission.request_id)
        except LedgerUnavailable as exc:
            # The one place a paid request id exists only in memory: put it in the message.
            raise LedgerUnavailable(
                f"{exc}; job {job.id} was accepted as request {submission.request_id}, "
                "which the ledger could not record"
            ) from exc
        self.outcome.submitted += 1
        self._emit(job, JobState.QUEUED, submission.request_id)
        return submission.request_id

    async def _watch(self, job: Job, request_id: str) -> Succeeded | Failed | Cancelled | None:
        """Poll until the job is terminal and record its outcome; None when we stop watching."""
        record = self.ledger.get(job.id)
        submitted_at = record.submitted_at or time.time()
        state = record.state
        failures = 0
        unfinished_at = 0.0  # the job's age at the last check that found it unfinished
        while True:
            elapsed = time.time() - submitted_at
            if elapsed > self.config.poll.job_timeout:
                self.outcome.unwatched.append(job.id)
                self.stop("unavailable", f"job {job.id} still not finished after {elapsed:.0f} s")
                return None
            jitter = self.rng.uniform(0.9, 1.1)
            await asyncio.sleep(
                next_poll_delay(elapsed, self.config.poll, self.times.earliest, jitter)
            )
            try:
                status = await self.client.status(request_id, job_id=job.id)
                if status.state == "terminal":
                    outcome = await self.client.result(request_id, job_id=job.id)
                    if not isinstance(outcome, NotReady):
                        if isinstance(outcome, Succeeded):
                            self.times.observe(
                                finish_estimate(unfinished_at, time.time() - submitted_at)
                            )
                        return self._record_outcome(job, outcome)
                    status = outcome.status
            except NotFound as exc:
                message = f"the service no longer knows request {request_id} (expired?): {exc}"
                self.ledger.record_failed(job.id, message, generation=False)
                self._emit(job, JobState.FAILED, message)
                return None
            except AuthError as exc:
                self.stop("auth", str(exc))
                self.outcome.unwatched.append(job.id)
                return None
            except (TransientApiError, ApiError) as exc:
                failures += 1
                log.warning("job %s: polling %s failed: %s", job.id, request_id, exc)
                if failures >= MAX_POLL_FAILURES:
                    self.outcome.unwatched.append(job.id)
                    self.stop("unavailable", f"cannot reach the service: {exc}")
                    return None
                continue
            failures = 0
            unfinished_at = time.time() - submitted_at
            new_state = JobState.RUNNING if status.state == "running" else JobState.QUEUED
            if new_state is not state:
                state = new_state
                self.ledger.record_status(job.id, state, status.queue_position)
                self._emit(job, state, request_id)

    def _record_outcome(
        self, job: Job, outcome: Succeeded | Failed | Cancelled
    ) -> Succeeded | Failed | Cancelled:
        if isinstance(outcome, Succeeded):
            self.ledger.record_succeeded(job.id, outcome.urls, outcome.cost)
            self._emit(job, JobState.SUCCEEDED)
        elif isinstance(outcome, Failed):
            self.ledger.record_failed(job.id, outcome.error)
            self._emit(job, JobState.FAILED, outcome.error)
        else:
            self.ledger.record_cancelled(job.id, "cancelled on the service")
            self._emit(job, JobState.CANCELLED)
        return outcome

    async def _collect(self, job: Job, urls: Sequence[str]) -> None:
        """Download every output file, make posters, write the sidecar, mark the job done."""
        out = self.config.out_dir
        previous = {f.path: f.sha256 for f in self.ledger.get(job.id).files}
        files: list[OutputFile] = []
        async with self.downloads:
            try:
                for index, url in enumerate(urls):
                    name = output_name(job.id, index, url)
                    got = await download(
                        self.files_http,
                        url,
                        out / name,
                        job_id=job.id,
                        max_bytes=self.config.max_download_bytes,
                        expected_sha256=previous.get(name),
                    )
                    poster = f"posters/{Path(name).stem}.jpg"
                    made = await asyncio.to_thread(extract_poster, got.path, out / poster)
                    files.append(
                        OutputFile(name, url, got.size, got.sha256, poster if made else "")
                    )
            except DownloadError as exc:
                self.ledger.record_download_failed(job.id, str(exc))
                self._emit(job, JobState.SUCCEEDED, f"download failed: {exc}")
                return
        self.ledger.record_downloaded(job.id, files)
        write_sidecar(out, self.ledger.get(job.id))
        self._emit(job, JobState.DONE, ", ".join(f.path for f in files))


def output_name(job_id: str, index: int, url: str) -> str:
    """``<id>.mp4`` for the first file, ``<id>-2.mp4``... for the others (suffix from the URL)."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    if suffix not in MEDIA_SUFFIXES:
        suffix = ".mp4"
    return f"{job_id}{'' if index == 0 else f'-{index + 1}'}{suffix}"


def write_sidecar(out_dir: Path, record: JobRecord) -> None:
    """``<id>.json`` beside the video: what was asked, what came back, what it cost."""
    sidecar = {
        "id": record.id,
        "row": record.row,
        "request_id": record.request_id,
        "model": record.model,
        "inputs": record.inputs,
        "submitted_at": _iso(record.submitted_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "downloaded_at": _iso(record.downloaded_at),
        "generation_seconds": record.generation_seconds,
        "video_seconds": record.seconds,
        "estimated_cost_usd": round(record.estimated_cost, 4),
        "reported_cost_usd": record.cost,
        "attempts": record.attempts,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "url": f.url, "poster": f.poster}
            for f in record.files
        ],
    }
    write_atomic(out_dir / f"{record.id}.json", json.dumps(sidecar, indent=2) + "\n")


def repair_sidecars(out_dir: Path, records: Sequence[JobRecord]) -> list[str]:
    """Write the sidecar of every downloaded job whose sidecar is missing or speaks of another
    request (a run killed between recording a download and writing its sidecar); their ids."""
    repaired = []
    for record in records:
        if record.state is not JobState.DONE or not record.files:
            continue
        try:
            current = json.loads((out_dir / f"{record.id}.json").read_text(encoding="utf-8"))
            if current.get("request_id") == record.request_id:
                continue
        except (OSError, ValueError, AttributeError):
            pass
        write_sidecar(out_dir, record)
        repaired.append(record.id)
    return repaired


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so that readers see the old or the new version, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
