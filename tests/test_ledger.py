"""The ledger: state changes are transactions, nothing is lost, one run at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchgen.errors import LedgerError, LedgerLocked
from batchgen.jobs import Job
from batchgen.ledger import JobState, Ledger, OutputFile


def make_job(job_id: str, position: int = 0, prompt: str = "a cat") -> Job:
    """A validated job as the manifest stage would produce it."""
    return Job(
        id=job_id,
        position=position,
        row=f"row {position + 2}",
        model="kling/kling-3.0/standard/image-to-video",
        inputs={"prompt": prompt, "start_image_url": "https://x.example/a.png", "duration": 5},
        local_images={},
        fingerprint=f"fp-{job_id}-{prompt}",
        seconds=5,
        estimated_cost=0.42,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A fresh ledger in a temporary folder."""
    return Ledger.open(tmp_path / ".batchgen" / "ledger.sqlite")


def test_sync_adds_new_jobs_as_pending(ledger: Ledger) -> None:
    """New manifest rows arrive pending, in manifest order."""
    report = ledger.sync([make_job("b", 1), make_job("a", 0)])
    assert set(report.new) == {"a", "b"}
    assert [r.id for r in ledger.records()] == ["a", "b"]
    assert all(r.state is JobState.PENDING for r in ledger.records())


def test_journey_to_done_is_recorded(ledger: Ledger) -> None:
    """intent -> submitted -> running -> succeeded -> downloaded, each visible at once."""
    job = make_job("a")
    ledger.sync([job])
    ledger.record_intent(job)
    assert ledger.get("a").state is JobState.SUBMITTING
    assert ledger.get("a").attempts == 1
    ledger.record_submitted("a", "req_1")
    assert ledger.get("a").request_id == "req_1"
    ledger.record_status("a", JobState.RUNNING, None)
    assert ledger.get("a").started_at is not None
    ledger.record_succeeded("a", ["https://files/x.mp4"], 0.63)
    ledger.record_downloaded("a", [OutputFile("a.mp4", "https://files/x.mp4", 10, "ab" * 32)])
    record = ledger.get("a")
    assert record.state is JobState.DONE
    assert record.files[0].path == "a.mp4"
    assert record.cost == 0.63
    assert ledger.request_ids("a") == ["req_1"]


def test_interrupted_submit_becomes_uncertain(tmp_path: Path) -> None:
    """A job left 'submitting' by a dead run is uncertain on reopen, never pending."""
    path = tmp_path / "l.sqlite"
    job = make_job("a")
    with Ledger.open(path) as first:
        first.sync([job])
        first.record_intent(job)
    with Ledger.open(path) as second:
        assert second.recover_interrupted() == ["a"]
        record = second.get("a")
    assert record.state is JobState.UNCERTAIN
    assert "may have accepted" in record.error


def test_not_sent_returns_to_pending_without_paying(ledger: Ledger) -> None:
    """A submit that certainly never left is not counted as an attempt."""
    job = make_job("a")
    ledger.sync([job])
    ledger.record_intent(job)
    ledger.record_not_sent("a", "connection refused")
    record = ledger.get("a")
    assert (record.state, record.attempts) == (JobState.PENDING, 0)


def test_changed_and_disappeared_rows_are_reported(ledger: Ledger) -> None:
    """A submitted row whose content changed is 'changed'; a removed row is 'disappeared'."""
    a, b = make_job("a", 0), make_job("b", 1)
    ledger.sync([a, b])
    ledger.record_intent(a)
    ledger.record_submitted("a", "req_1")
    report = ledger.sync([make_job("a", 0, prompt="a dog")])
    assert report.changed == ("a",)
    assert report.disappeared == ("b",)
    assert ledger.get("a").changed
    assert not ledger.get("b").in_manifest
    assert [r.id for r in ledger.records(include_disappeared=False)] == ["a"]


def test_reset_keeps_request_history(ledger: Ledger) -> None:
    """Resubmitting a job keeps every request id it ever had."""
    job = make_job("a")
    ledger.sync([job])
    ledger.record_intent(job)
    ledger.record_submitted("a", "req_1")
    ledger.record_failed("a", "model refused the prompt")
    ledger.reset(["a"], "retry")
    ledger.record_intent(job)
    ledger.record_submitted("a", "req_2")
    assert ledger.request_ids("a") == ["req_1", "req_2"]
    assert ledger.get("a").attempts == 2
    assert ledger.get("a").failures == 1


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    """Only one run per ledger; the second learns who holds it."""
    path = tmp_path / "l.sqlite"
    with Ledger.open(path) as first, Ledger.open(path) as second:
        first.lock("run jobs.yaml")
        with pytest.raises(LedgerLocked) as info:
            second.lock("run jobs.yaml")
        assert info.value.pid is not None
        assert "in use" in str(info.value)
        first.unlock()
        second.lock("run again")


def test_intent_is_committed_before_anything_else_happens(tmp_path: Path) -> None:
    """record_intent is durable on its own: another connection sees it immediately."""
    path = tmp_path / "l.sqlite"
    job = make_job("a")
    with Ledger.open(path) as ledger:
        ledger.sync([job])
        ledger.record_intent(job)
        other = sqlite3.connect(path)
        (state,) = other.execute("SELECT state FROM jobs WHERE id='a'").fetchone()
        other.close()
    assert state == "submitting"


def test_missing_ledger_is_a_clear_error(tmp_path: Path) -> None:
    """status on a folder never run says so instead of creating an empty ledger."""
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger.open(tmp_path / "none.sqlite", create=False)


def test_unknown_job_write_is_an_error(ledger: Ledger) -> None:
    """Writing a state for a job the ledger does not know never passes silently."""
    with pytest.raises(LedgerError):
        ledger.record_uncertain("ghost", "x")


def test_spend_counts_every_possible_payment(ledger: Ledger) -> None:
    """Estimated spend counts attempts, including uncertain ones."""
    a, b = make_job("a", 0), make_job("b", 1)
    ledger.sync([a, b])
    ledger.record_intent(a)
    ledger.record_uncertain("a", "lost answer")
    ledger.record_intent(b)
    ledger.record_submitted("b", "req_b")
    assert ledger.estimated_spend() == pytest.approx(0.84)
