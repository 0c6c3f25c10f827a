"""Scheduling decisions, as pure functions with numbers: when to poll next, how to learn."""

from __future__ import annotations

import pytest

from batchgen.config import PollPolicy
from batchgen.scheduler import GenerationTimes, next_poll_delay, output_name

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
