"""The SQLite ledger: the truth about every job of a batch, and the only module that speaks SQL.

Job state machine (every arrow is one committed transaction)::

    pending ──record_intent──▶ submitting ──record_submitted──▶ queued ⇄ running
       ▲                          │    │                            │
       │  record_not_sent ◀───────┘    └─record_uncertain─▶ uncertain
       │                                                            │
       └──────── reset (retry --failed/--uncertain, --rerender-changed)
    queued/running ──record_succeeded──▶ succeeded ──record_downloaded──▶ done
    queued/running ──record_failed──▶ failed        queued ──record_cancelled──▶ cancelled

The intent is committed before the submit POST leaves and the request id the moment the POST
answers, so a kill -9 at any instant loses nothing: a job found ``submitting`` when a run starts
may have been accepted, and becomes ``uncertain`` instead of being paid for twice.

Schema (``PRAGMA user_version`` counts the migrations applied):
    jobs      one row per job id ever seen in the manifest, with its current state
    requests  every request id the service ever gave us, never deleted
    runs      one row per run: pid, command, start, end, exit code
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import LedgerError, LedgerLocked, LedgerUnavailable
from .jobs import Job


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


#: States in which a remote request exists and has not reached its end.
IN_FLIGHT = frozenset({JobState.QUEUED, JobState.RUNNING})
#: States a finished batch may hold without anything left to do automatically.
SETTLED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.UNCERTAIN})


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
    failures: int = 0  # failed generations so far
    output_urls: tuple[str, ...] = ()
    cost: float | None = None  # cost the service reported, when it did
    submitted_fingerprint: str | None = None  # fingerprint of what was last submitted

    @property
    def generation_seconds(self) -> float | None:
        """Submit to finish, as batchgen saw it."""
        if self.submitted_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.submitted_at


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What changed between the manifest and the ledger when a run started."""

    new: tuple[str, ...]
    changed: tuple[str, ...]  # submitted already, manifest row differs since
    disappeared: tuple[str, ...]  # in the ledger, no longer in the manifest


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a ledger."""

    pid: int | None
    started_at: str | None
    command: str | None


_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        row TEXT NOT NULL,
        model TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        inputs TEXT NOT NULL,
        seconds INTEGER NOT NULL,
        estimated_cost REAL NOT NULL,
        state TEXT NOT NULL,
        submitted_fingerprint TEXT,
        submitted_inputs TEXT,
        request_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        queue_position INTEGER,
        submitted_at REAL,
        started_at REAL,
        finished_at REAL,
        downloaded_at REAL,
        output_urls TEXT NOT NULL DEFAULT '[]',
        cost REAL,
        files TEXT NOT NULL DEFAULT '[]',
        in_manifest INTEGER NOT NULL DEFAULT 1,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        submitted_at REAL NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        pid INTEGER NOT NULL,
        command TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        exit_code INTEGER
    );
    """,
)

_JOB_COLUMNS = (
    "id, position, row, model, fingerprint, inputs, seconds, estimated_cost, state,"
    " submitted_fingerprint, submitted_inputs, request_id, attempts, failures, error,"
    " queue_position, submitted_at, started_at, finished_at, downloaded_at, output_urls, cost,"
    " files, in_manifest"
)


class Ledger:
    """A batch's SQLite ledger. Open with ``Ledger.open(path)``; one writer at a time (``lock``).

    >>> with Ledger.open(out / ".batchgen" / "ledger.sqlite") as ledger:
    ...     ledger.sync(jobs)
    """

    __slots__ = ("path", "_conn", "_lock", "_clock")

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._conn = conn
        self._lock: FileLock | None = None
        self._clock = clock

    # ---- opening, locking, closing ----------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create: bool = True,
        tracer: Callable[[str], None] | None = None,
    ) -> Ledger:
        """Open (and create or migrate) the ledger at ``path``."""
        if not path.exists() and not create:
            raise LedgerError(f"no ledger at {path}: has this batch been run yet?")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a request id, once committed, survives a power cut as well as a kill -9.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            if tracer is not None:
                conn.set_trace_callback(tracer)
            ledger = cls(path, conn)
            ledger._migrate()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"cannot open ledger {path}: {_explain(exc)}") from exc
        except OSError as exc:
            raise LedgerUnavailable(f"cannot open ledger {path}: {exc.strerror}") from exc
        return ledger

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.atomic():
                for statement in script.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        """Release the run lock (if held) and close the database."""
        self.unlock()
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, locked={self._lock is not None})"

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def _lock_info_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock.json")

    def lock(self, command: str) -> None:
        """Become the only run on this ledger, or raise LedgerLocked naming the holder."""
        lock = FileLock(self._lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            info = self.lock_holder()
            raise LedgerLocked(str(self.path), info.pid, info.started_at) from None
        self._lock = lock
        holder = {
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": command,
        }
        with suppress(OSError):  # only informational: a full disk must not stop the run here
            self._lock_info_path.write_text(json.dumps(holder), encoding="utf-8")

    def lock_holder(self) -> LockInfo:
        """Who holds the lock, as far as its info file tells."""
        try:
            info = json.loads(self._lock_info_path.read_text(encoding="utf-8"))
            return LockInfo(info.get("pid"), info.get("started_at"), info.get("command"))
        except (OSError, ValueError):
            return LockInfo(None, None, None)

    def unlock(self) -> None:
        """Release the run lock if this ledger holds it."""
        if self._lock is not None:
            self._lock_info_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction (or a savepoint inside one). Any SQLite error in it rolls it back and
        becomes ``LedgerUnavailable``."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT atomic")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK TO atomic")
                raise
            conn.execute("RELEASE atomic")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # from BEGIN, any statement of the body, or COMMIT
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise LedgerUnavailable(f"cannot write ledger {self.path}: {_explain(exc)}") from exc

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        with self.atomic():
            cursor = self._conn.execute(sql, params)
            if cursor.rowcount == 0:
                raise LedgerError(f"ledger {self.path}: no job matched ({params[-1]!r})")

    # ---- runs -------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        """Record that a run started; returns its id."""
        with self.atomic():
            cursor = self._conn.execute(
                "INSERT INTO runs(pid, command, started_at) VALUES (?, ?, ?)",
                (os.getpid(), command, self._clock()),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, exit_code: int) -> None:
        """Record how a run ended."""
        with self.atomic():
            self._conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ? WHERE id = ?",
                (self._clock(), exit_code, run_id),
            )

    def last_run(self) -> dict[str, Any] | None:
        """The most recent run, as a dict (pid, command, started_at, finished_at, exit_code)."""
        row = self._conn.execute(
            "SELECT pid, command, started_at, finished_at, exit_code FROM runs ORDER BY id DESC"
        ).fetchone()
        if row is None:
            return None
        keys = ("pid", "command", "started_at", "finished_at", "exit_code")
        return dict(zip(keys, row, strict=True))

    # ---- planning ---------------------------------------------------------------------------

    def sync(self, jobs: Sequence[Job]) -> SyncReport:
        """Bring the ledger in line with the manifest: add new jobs, note changed and gone ones."""
        now = self._clock()
        known = {
            row[0]: (row[1], row[2])
            for row in self._conn.execute("SELECT id, state, submitted_fingerprint FROM jobs")
        }
        new: list[str] = []
        changed: list[str] = []
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for job in jobs:
            inputs = json.dumps(job.inputs, sort_keys=True)
            if job.id not in known:
                new.append(job.id)
                inserts.append(
                    (
                        job.id,
                        job.position,
                        job.row,
                        job.model,
                        job.fingerprint,
                        inputs,
                        job.seconds,
                        job.estimated_cost,
                        JobState.PENDING.value,
                        now,
                    )
                )
                continue
            state, submitted_fingerprint = known[job.id]
            if submitted_fingerprint is not None and submitted_fingerprint != job.fingerprint:
                changed.append(job.id)
            updates.append(
                (
                    job.position,
                    job.row,
                    job.model,
                    job.fingerprint,
                    inputs,
                    job.seconds,
                    job.estimated_cost,
                    now,
                    job.id,
                )
            )
        manifest_ids = {job.id for job in jobs}
        disappeared = sorted(set(known) - manifest_ids)
        with self.atomic():
            self._conn.executemany(
                "INSERT INTO jobs(id, position, row, model, fingerprint, inputs, seconds,"
                " estimated_cost, state, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                inserts,
            )
            self._conn.executemany(
                "UPDATE jobs SET position=?, row=?, model=?, fingerprint=?, inputs=?,"
                " seconds=?, estimated_cost=?, in_manifest=1, updated_at=? WHERE id=?",
                updates,
            )
            self._conn.executemany(
                "UPDATE jobs SET in_manifest=0 WHERE id=?", [(i,) for i in disappeared]
            )
        return SyncReport(tuple(new), tuple(changed), tuple(disappeared))

    def recover_interrupted(self) -> list[str]:
        """Jobs left ``submitting`` by a run that died mid-POST become ``uncertain``."""
        ids = [
            row[0]
            for row in self._conn.execute(
                "SELECT id FROM jobs WHERE state = ?", (JobState.SUBMITTING.value,)
            )
        ]
        for job_id in ids:
            self.record_uncertain(
                job_id, "a run stopped while submitting: the service may have accepted it"
            )
        return ids

    def reset(self, job_ids: Sequence[str], reason: str) -> None:
        """Make jobs ``pending`` again so the next run submits them (retry, rerender)."""
        now = self._clock()
        with self.atomic():
            self._conn.executemany(
                "UPDATE jobs SET state=?, request_id=NULL, queue_position=NULL,"
                " submitted_at=NULL, started_at=NULL, finished_at=NULL, downloaded_at=NULL,"
                " output_urls='[]', files='[]', cost=NULL, error=?, updated_at=? WHERE id=?",
                [(JobState.PENDING.value, reason, now, job_id) for job_id in job_ids],
            )

    # ---- the job's journey ------------------------------------------------------------------

    def record_intent(self, job: Job) -> None:
        """Commit that ``job`` is about to be submitted (before the POST leaves)."""
        self._write(
            "UPDATE jobs SET state=?, attempts=attempts+1, submitted_fingerprint=?,"
            " submitted_inputs=?, error='', updated_at=? WHERE id=?",
            (
                JobState.SUBMITTING.value,
                job.fingerprint,
                json.dumps(job.inputs, sort_keys=True),
                self._clock(),
                job.id,
            ),
        )

    def record_submitted(self, job_id: str, request_id: str) -> None:
        """Commit the request id the service gave for ``job_id``."""
        now = self._clock()
        with self.atomic():
            self._conn.execute(
                "INSERT OR REPLACE INTO requests(request_id, job_id, fingerprint,"
                " submitted_at) SELECT ?, id, submitted_fingerprint, ? FROM jobs WHERE id=?",
                (request_id, now, job_id),
            )
            self._conn.execute(
                "UPDATE jobs SET state=?, request_id=?, submitted_at=?, started_at=NULL,"
                " finished_at=NULL, queue_position=NULL, updated_at=? WHERE id=?",
                (JobState.QUEUED.value, request_id, now, now, job_id),
            )

    def record_not_sent(self, job_id: str, error: str) -> None:
        """The submit certainly never reached the service: back to ``pending``, not paid."""
        self._write(
            "UPDATE jobs SET state=?, attempts=MAX(attempts-1, 0), error=?, updated_at=?"
            " WHERE id=?",
            (JobState.PENDING.value, error, self._clock(), job_id),
        )

    def record_uncertain(self, job_id: str, reason: str) -> None:
        """The submit's answer was lost: the job may exist and be billed."""
        self._write(
            "UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=?",
            (JobState.UNCERTAIN.value, reason, self._clock(), job_id),
        )

    def record_status(self, job_id: str, state: JobState, queue_position: int | None) -> None:
        """A queued or running job's remote status."""
        now = self._clock()
        self._write(
            "UPDATE jobs SET state=?, queue_position=?,"
            " started_at=CASE WHEN ?='running' THEN COALESCE(started_at, ?) ELSE started_at END,"
            " updated_at=? WHERE id=?",
            (state.value, queue_position, state.value, now, now, job_id),
        )

    def record_succeeded(self, job_id: str, urls: Sequence[str], cost: float | None) -> None:
        """The service finished the job; its files still need downloading."""
        now = self._clock()
        self._write(
            "UPDATE jobs SET state=?, output_urls=?, cost=?, queue_position=NULL, error='',"
            " finished_at=COALESCE(finished_at, ?), updated_at=? WHERE id=?",
            (JobState.SUCCEEDED.value, json.dumps(list(urls)), cost, now, now, job_id),
        )

    def record_failed(self, job_id: str, error: str, *, generation: bool = True) -> None:
        """The job failed: the generation (``generation=True``) or its inputs were refused."""
        now = self._clock()
        self._write(
            "UPDATE jobs SET state=?, error=?, failures=failures+?, queue_position=NULL,"
            " finished_at=COALESCE(finished_at, ?), updated_at=? WHERE id=?",
            (JobState.FAILED.value, error, int(generation), now, now, job_id),
        )

    def record_cancelled(self, job_id: str, reason: str) -> None:
        """The remote request was cancelled before it ran."""
        now = self._clock()
        self._write(
            "UPDATE jobs SET state=?, error=?, queue_position=NULL,"
            " finished_at=COALESCE(finished_at, ?), updated_at=? WHERE id=?",
            (JobState.CANCELLED.value, reason, now, now, job_id),
        )

    def record_download_failed(self, job_id: str, error: str) -> None:
        """A download failed; the job stays ``succeeded`` so the next run fetches it again."""
        self._write(
            "UPDATE jobs SET error=?, updated_at=? WHERE id=?", (error, self._clock(), job_id)
        )

    def record_downloaded(self, job_id: str, files: Sequence[OutputFile]) -> None:
        """Every output file of the job is on disk and verified."""
        now = self._clock()
        payload = json.dumps([_file_dict(f) for f in files])
        self._write(
            "UPDATE jobs SET state=?, files=?, error='', downloaded_at=?, updated_at=? WHERE id=?",
            (JobState.DONE.value, payload, now, now, job_id),
        )

    def record_missing_files(self, job_id: str) -> None:
        """A done job's files vanished from disk: fetch them again from the recorded URLs."""
        self._write(
            "UPDATE jobs SET state=?, updated_at=? WHERE id=?",
            (JobState.SUCCEEDED.value, self._clock(), job_id),
        )

    # ---- reading ----------------------------------------------------------------------------

    def records(self, *, include_disappeared: bool = True) -> list[JobRecord]:
        """Every job, in manifest order (jobs gone from the manifest last)."""
        where = "" if include_disappeared else "WHERE in_manifest = 1"
        try:
            rows = self._conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY in_manifest DESC, position, id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"cannot read ledger {self.path}: {_explain(exc)}") from exc
        return [_record(row) for row in rows]

    def get(self, job_id: str) -> JobRecord:
        """One job's record."""
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)
        ).fetchone()
        if row is None:
            raise LedgerError(f"job {job_id} is not in ledger {self.path}")
        return _record(row)

    def request_ids(self, job_id: str) -> list[str]:
        """Every request id ever recorded for a job, oldest first."""
        rows = self._conn.execute(
            "SELECT request_id FROM requests WHERE job_id=? ORDER BY submitted_at", (job_id,)
        )
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per state (jobs still in the manifest)."""
        rows = self._conn.execute(
            "SELECT state, COUNT(*) FROM jobs WHERE in_manifest=1 GROUP BY state"
        )
        return {state: n for state, n in rows}

    def estimated_spend(self) -> float:
        """USD: estimated cost of every submission made or possibly made."""
        (total,) = self._conn.execute(
            "SELECT COALESCE(SUM(estimated_cost * attempts), 0) FROM jobs"
        ).fetchone()
        return float(total)

    def generation_times(self, limit: int = 200) -> list[float]:
        """Recent submit-to-finish times of succeeded jobs, to seed the polling schedule."""
        rows = self._conn.execute(
            "SELECT finished_at - submitted_at FROM jobs WHERE finished_at IS NOT NULL"
            " AND submitted_at IS NOT NULL AND state IN ('succeeded', 'done')"
            " ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [float(row[0]) for row in rows if row[0] is not None and row[0] >= 0]


def _file_dict(f: OutputFile) -> dict[str, Any]:
    return {"path": f.path, "url": f.url, "size": f.size, "sha256": f.sha256, "poster": f.poster}


def _record(row: Sequence[Any]) -> JobRecord:
    (
        job_id,
        position,
        label,
        model,
        fingerprint,
        inputs,
        seconds,
        estimated_cost,
        state,
        submitted_fingerprint,
        submitted_inputs,
        request_id,
        attempts,
        failures,
        error,
        queue_position,
        submitted_at,
        started_at,
        finished_at,
        downloaded_at,
        output_urls,
        cost,
        files,
        in_manifest,
    ) = row
    return JobRecord(
        id=job_id,
        position=position,
        row=label,
        model=model,
        fingerprint=fingerprint,
        inputs=json.loads(submitted_inputs or inputs),
        seconds=seconds,
        estimated_cost=estimated_cost,
        state=JobState(state),
        request_id=request_id,
        attempts=attempts,
        error=error,
        queue_position=queue_position,
        submitted_at=submitted_at,
        started_at=started_at,
        finished_at=finished_at,
        downloaded_at=downloaded_at,
        files=tuple(OutputFile(**f) for f in json.loads(files)),
        in_manifest=bool(in_manifest),
        changed=submitted_fingerprint is not None and submitted_fingerprint != fingerprint,
        failures=failures,
        output_urls=tuple(json.loads(output_urls)),
        cost=cost,
        submitted_fingerprint=submitted_fingerprint,
    )


def _explain(exc: sqlite3.Error) -> str:
    """SQLite's message, with the likely cause where SQLite's own words hide it."""
    text = str(exc)
    if "disk I/O error" in text or "disk is full" in text:
        return f"{text} (is the disk full?)"
    return text
