"""Scheduling: decisions as pure functions with numbers, and the submit path's ledger order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from batchgen.api import RunComfyClient
from batchgen.config import PollPolicy, RunConfig, Secret
from batchgen.ledger import JobState, Ledger
from batchgen.scheduler import (
    GenerationTimes,
    Scheduler,
    finish_estimate,
    next_poll_delay,
    output_name,
)
from batchgen.throttle import Throttle

from .test_ledger import make_job

POLICY = PollPolicy(first=2.0, cap=30.0, fraction=0.15, cold_fraction=0.5, floor=1.0)


def simulate(finish: float, earliest: float | None) -> tuple[int, float]:
    """Status checks made and notice delay for a job finishing at ``finish`` seconds."""
    t, checks = 0.0, 0
    while True:
        t += next_poll_delay(t, POLICY, earliest)
        checks += 1
        if t >= finish:
            return checks, t - finish


def test_cold_start_checks_early_then_backs_off() -> None:
    """Before anything finished: first check at `first`, then growing with the job's age."""
    assert next_poll_delay(0.0, POLICY, None) == 2.0
    assert next_poll_delay(10.0, POLICY, None) == 5.0
    assert next_poll_delay(500.0, POLICY, None) == 30.0


def test_warm_first_check_waits_past_the_earliest_finish() -> None:
    """Once a job finished after 10 s, a new job is first checked one step after 10 s."""
    assert next_poll_delay(0.0, POLICY, 10.0) == pytest.approx(11.5)
    assert next_poll_delay(4.0, POLICY, 10.0) == pytest.approx(7.5)
    assert next_poll_delay(0.0, POLICY, 2.0) == pytest.approx(3.0)


def test_warm_checks_are_proportional_with_floor_and_cap() -> None:
    """After the earliest finish: a fraction of the age, never under floor nor over cap."""
    assert next_poll_delay(20.0, POLICY, 1.0) == pytest.approx(3.0)
    assert next_poll_delay(2.0, POLICY, 1.0) == 1.0
    assert next_poll_delay(1000.0, POLICY, 1.0) == 30.0


def test_jitter_scales_the_delay() -> None:
    """Jitter spreads checks of jobs submitted together."""
    assert next_poll_delay(0.0, POLICY, 10.0, jitter=1.1) == pytest.approx(12.65)


def test_polling_economy_for_10_to_20_second_generations() -> None:
    """Learnt schedule: few checks per job, notice delay well under 10% of generation time."""
    finishes = [10.0 + i * 0.1 for i in range(101)]
    results = [simulate(f, earliest=10.0) for f in finishes]
    mean_checks = sum(c for c, _ in results) / len(results)
    mean_delay = sum(d for _, d in results) / len(results)
    assert mean_checks + 1 <= 5.0  # + the one /result call
    assert mean_delay < 0.1 * 15.0


def test_generation_times_learn_a_low_estimate() -> None:
    """The estimate is a low percentile of what was seen, and ignores nonsense."""
    times = GenerationTimes([12.0, -3.0])
    assert times.earliest == 12.0
    for t in range(20, 40):
        times.observe(float(t))
    assert times.earliest == 21.0  # 10th percentile of 12, 20..39
    assert GenerationTimes().earliest is None


def test_finish_estimate() -> None:
    """The middle of the interval between checks; 80% of the first check when it found it done."""
    assert finish_estimate(10.0, 12.0) == 11.0
    assert finish_estimate(0.0, 10.0) == 8.0


@pytest.mark.parametrize(
    ("index", "url", "expected"),
    [
        (0, "https://cdn.example/out/abc.mp4", "hero.mp4"),
        (1, "https://cdn.example/out/abc.mp4?sig=1", "hero-2.mp4"),
        (0, "https://cdn.example/out/abc.webm", "hero.webm"),
        (2, "https://cdn.example/out/noext", "hero-3.mp4"),
        (0, "https://cdn.example/a.b/../evil.mp4%00.sh", "hero.mp4"),
    ],
)
def test_output_names_are_derived_from_the_job_id(index: int, url: str, expected: str) -> None:
    """Files are named after the job, never after anything the service chose."""
    assert output_name("hero", index, url) == expected


async def test_intent_is_committed_before_the_post_leaves(tmp_path: Path) -> None:
    """When the submit reaches the service, the ledger already says 'submitting' (durably)."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    job = make_job("a")
    ledger.sync([job])
    states_at_post: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            other = sqlite3.connect(path)
            states_at_post.append(other.execute("SELECT state FROM jobs").fetchone()[0])
            other.close()
            return httpx.Response(200, json={"request_id": "req_1"})
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "completed"})
        return httpx.Response(200, json={"status": "failed", "error": "refused"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = RunComfyClient("https://api.example", Secret("t"), throttle=Throttle(1000), http=http)
    config = RunConfig(out_dir=tmp_path, poll=PollPolicy(first=0.01, floor=0.01))
    async with http:
        scheduler = Scheduler(
            ledger=ledger, client=client, files_http=http, config=config, jobs={"a": job}
        )
        await scheduler.run(ledger.records())
    assert states_at_post == ["submitting"]
    assert ledger.get("a").state is JobState.FAILED
    assert ledger.request_ids("a") == ["req_1"]


async def test_interrupt_while_waiting_for_the_throttle_owes_nothing(tmp_path: Path) -> None:
    """A job still waiting for its turn when the run stops stays pending, not uncertain."""
    ledger = Ledger.open(tmp_path / "ledger.sqlite")
    jobs = [make_job(f"j{i}", i) for i in range(3)]
    ledger.sync(jobs)
    posts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request.url.path)
        return httpx.Response(200, json={"request_id": f"req_{len(posts)}"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = RunComfyClient("https://api.example", Secret("t"), throttle=Throttle(0.5), http=http)
    config = RunConfig(out_dir=tmp_path)
    async with http:
        scheduler = Scheduler(
            ledger=ledger,
            client=client,
            files_http=http,
            config=config,
            jobs={j.id: j for j in jobs},
        )
        asyncio.get_running_loop().call_later(0.5, scheduler.interrupt)
        outcome = await scheduler.run(ledger.records())
    states = [r.state for r in ledger.records()]
    assert outcome.stop_reason == "interrupted"
    assert len(posts) == 1  # 0.5 requests/s: only the first got its turn
    assert states == [JobState.QUEUED, JobState.PENDING, JobState.PENDING]
