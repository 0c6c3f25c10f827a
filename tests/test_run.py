"""Whole runs through the CLI, in a subprocess, against the emulator over loopback.

Each test names a fault or an exit code of the runner issue and checks what the user gets:
the exit code, the files, the ledger (through `status --json`), and what the service saw.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import resource
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from batchgen.emulator import Emulator, Faults

from .conftest import TOKEN, batchgen_cmd, run_cli, write_manifest

FAST = ["--rate", "50", "--max-in-flight", "8"]


def run(
    emulator: Emulator, manifest: Path, out: Path, *extra: str, command: str = "run", **kw: object
) -> subprocess.CompletedProcess[str]:
    """`batchgen run MANIFEST --out OUT` against ``emulator``."""
    args = [command, str(manifest), "--out", str(out), "--base-url", emulator.url, *FAST, *extra]
    return run_cli(args, **kw)  # type: ignore[arg-type]


def status(out: Path) -> dict[str, object]:
    """`batchgen status OUT --json`, parsed."""
    proc = run_cli(["status", str(out), "--json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def submissions_per_job(emulator: Emulator) -> Counter[str]:
    """How many submit POSTs created a job on the service, per prompt's job number."""
    return Counter(s.body["prompt"] for s in emulator.submissions)


def api_calls(emulator: Emulator) -> int:
    """Requests the emulator received on /v1 endpoints."""
    return sum(1 for hit in emulator.requests if hit.path.startswith("/v1/"))


def results(out: Path) -> list[dict[str, str]]:
    """results.csv as dicts."""
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_happy_path_and_idle_rerun(emulator: Emulator, tmp_path: Path) -> None:
    """Renders every job with videos, sidecars and results.csv; a second run calls nothing."""
    manifest = write_manifest(tmp_path / "m.yaml", 5)
    out = tmp_path / "out"
    first = run(emulator, manifest, out)
    assert first.returncode == 0, first.stderr
    rows = results(out)
    assert [r["id"] for r in rows] == [f"job-{i:03d}" for i in range(5)]
    assert {r["status"] for r in rows} == {"done"}
    for i in range(5):
        video = out / f"job-{i:03d}.mp4"
        sidecar = json.loads((out / f"job-{i:03d}.json").read_text())
        served = emulator.served_files[sidecar["request_id"]][0]
        assert sidecar["files"][0]["sha256"] == served.sha256
        assert video.stat().st_size == served.size
        assert sidecar["inputs"]["prompt"].startswith(f"shot {i}:")
        assert sidecar["model"] == "kling/kling-3.0/standard/image-to-video"
    assert (out / "report.html").exists()
    assert list((out / ".batchgen" / "logs").glob("run-*.jsonl"))
    calls = api_calls(emulator)
    second = run(emulator, manifest, out)
    assert second.returncode == 0, second.stderr
    assert api_calls(emulator) == calls
    assert "no API call" in second.stdout
    assert emulator.download_auth_violations == 0


def test_missing_or_stale_sidecars_are_rewritten_without_api_calls(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A run killed between recording a download and writing its sidecar: the next run (or
    `report`) writes it from the ledger, with no API call."""
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    out = tmp_path / "out"
    assert run(emulator, manifest, out).returncode == 0
    expected = {i: json.loads((out / f"job-00{i}.json").read_text()) for i in range(3)}
    (out / "job-000.json").unlink()
    stale = {**expected[1], "request_id": "req_from_an_earlier_attempt"}
    (out / "job-001.json").write_text(json.dumps(stale))
    calls = api_calls(emulator)
    assert run(emulator, manifest, out).returncode == 0
    assert api_calls(emulator) == calls
    for i in range(3):
        assert json.loads((out / f"job-00{i}.json").read_text()) == expected[i]
    (out / "job-002.json").unlink()
    assert run_cli(["report", str(out)]).returncode == 0
    assert json.loads((out / "job-002.json").read_text()) == expected[2]


@pytest.mark.parametrize("shape", ["videos", "mixed"])
def test_both_result_shapes_are_collected(
    make_emulator: Callable[..., Emulator], tmp_path: Path, shape: str
) -> None:
    """output.video (string) and output.videos (list) both end as downloaded files."""
    emulator = make_emulator(output_shape=shape)
    manifest = write_manifest(tmp_path / "m.yaml", 4)
    proc = run(emulator, manifest, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").glob("job-*.mp4"))) == 4


@pytest.mark.parametrize(
    "faults",
    [
        Faults(fail_5xx=0.3, endpoints=frozenset({"status", "result"})),
        Faults(drop=0.25, endpoints=frozenset({"status", "result"})),
        Faults(bad_json=0.3),
        Faults(error_code_200=0.3),
        Faults(truncate_download=0.5),
        Faults(fail_5xx=0.3, endpoints=frozenset({"submit"})),
        Faults(slow=0.5, endpoints=frozenset({"status", "result"})),
        Faults(slow_download=400_000),
    ],
    ids=[
        "5xx-on-polls",
        "dropped-polls",
        "bad-json",
        "200-with-error_code",
        "truncated-download",
        "503-on-submit",
        "slow-polls",
        "slow-download",
    ],
)
def test_transient_faults_on_safe_calls_are_survived(
    make_emulator: Callable[..., Emulator], tmp_path: Path, faults: Faults
) -> None:
    """Faults on GETs, downloads and a 503 that refused a submit are retried or waited out:
    every job done, each submitted exactly once, every file as the emulator served it."""
    emulator = make_emulator(faults=faults)
    manifest = write_manifest(tmp_path / "m.yaml", 6)
    out = tmp_path / "out"
    proc = run(emulator, manifest, out)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert set(submissions_per_job(emulator).values()) == {1}
    assert len(emulator.submissions) == 6
    for row in results(out):
        sidecar = json.loads((out / f"{row['id']}.json").read_text())
        assert sidecar["files"][0]["sha256"] == emulator.served_files[row["request_id"]][0].sha256


def test_rate_limited_submits_honour_retry_after(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """429 on submit with Retry-After: waited out, then submitted once; no job lost or doubled."""
    emulator = make_emulator()
    emulator.fail_next("submit", 429, times=2, retry_after=1)
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    started = time.monotonic()
    proc = run(emulator, manifest, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.0
    assert len(emulator.submissions) == 3
    assert sum(1 for h in emulator.requests if h.status == 429) == 2


def test_server_side_rate_limit_is_survived(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A service limit below --rate: 429s slow batchgen down, every job still done once."""
    emulator = make_emulator(faults=Faults(rate_limit=8))
    manifest = write_manifest(tmp_path / "m.yaml", 12)
    proc = run(emulator, manifest, tmp_path / "out", "--rate", "40")
    assert proc.returncode == 0, proc.stderr
    assert len(emulator.submissions) == 12


@pytest.mark.parametrize(
    "faults",
    [Faults(drop=1.0, endpoints=frozenset({"submit"})), Faults(accept_then_502=1.0)],
    ids=["dropped-after-accept", "502-after-accept"],
)
def test_lost_submit_answers_are_uncertain_never_resubmitted(
    make_emulator: Callable[..., Emulator], tmp_path: Path, faults: Faults
) -> None:
    """A submit whose answer is lost is uncertain: exit 1, reported, never paid twice by `run`."""
    emulator = make_emulator(faults=faults)
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"
    proc = run(emulator, manifest, out)
    assert proc.returncode == 1, proc.stderr
    doc = status(out)
    assert {j["id"] for j in doc["uncertain"]} == {"job-000", "job-001"}  # type: ignore[union-attr]
    assert "uncertain" in proc.stdout
    assert len(emulator.submissions) == 2
    emulator.set_faults(Faults())
    again = run(emulator, manifest, out)
    assert again.returncode == 1
    assert len(emulator.submissions) == 2  # run never resubmits an uncertain job
    retried = run(emulator, manifest, out, "--uncertain", command="retry")
    assert retried.returncode == 0, retried.stderr
    assert len(emulator.submissions) == 4
    assert status(out)["complete"] is True


def test_on_uncertain_resubmit_setting(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """`on_uncertain: resubmit` in the manifest resubmits uncertain jobs on the next run."""
    emulator = make_emulator(faults=Faults(accept_then_502=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", 1, on_uncertain="resubmit")
    out = tmp_path / "out"
    assert run(emulator, manifest, out).returncode == 1
    emulator.set_faults(Faults())
    assert run(emulator, manifest, out).returncode == 0
    assert len(emulator.submissions) == 2


def test_read_timeout_on_submit_is_uncertain(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A submit that times out waiting for the answer is uncertain, not retried."""
    emulator = make_emulator(faults=Faults(slow=3.0, endpoints=frozenset({"submit"})))
    manifest = write_manifest(tmp_path / "m.yaml", 1)
    proc = run(emulator, manifest, tmp_path / "out", "--timeout", "1")
    assert proc.returncode == 1, proc.stderr
    assert status(tmp_path / "out")["counts"]["uncertain"] == 1  # type: ignore[index]
    time.sleep(2.5)  # let the slow submit land on the service
    assert len(emulator.submissions) == 1


def test_failed_generations_are_reported_and_retried_only_on_request(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A failed generation: exit 1 with the service's error; `retry --failed` resubmits it."""
    emulator = make_emulator(faults=Faults(fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"
    proc = run(emulator, manifest, out)
    assert proc.returncode == 1
    assert all("model refused the prompt" in r["error"] for r in results(out))
    assert len(emulator.submissions) == 2
    assert run(emulator, manifest, out).returncode == 1
    assert len(emulator.submissions) == 2
    emulator.set_faults(Faults())
    proc = run(emulator, manifest, out, "--failed", command="retry")
    assert proc.returncode == 0, proc.stderr
    assert len(emulator.submissions) == 4


def test_retry_failed_n_resubmits_within_the_run(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """--retry-failed 2: a job that always fails is tried three times, then reported."""
    emulator = make_emulator(faults=Faults(fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", 1)
    proc = run(emulator, manifest, tmp_path / "out", "--retry-failed", "2")
    assert proc.returncode == 1
    assert len(emulator.submissions) == 3


@pytest.mark.parametrize(
    ("config", "needle"),
    [({"token": "another-token"}, "token"), ({"no_credit": True}, "credit")],
    ids=["401", "402"],
)
def test_auth_and_credit_stop_the_batch_with_exit_3(
    make_emulator: Callable[..., Emulator], tmp_path: Path, config: dict[str, object], needle: str
) -> None:
    """401/402: nothing more is submitted, the ledger is intact, exit 3 says what to do."""
    emulator = make_emulator(**config)
    manifest = write_manifest(tmp_path / "m.yaml", 5)
    out = tmp_path / "out"
    proc = run(emulator, manifest, out)
    assert proc.returncode == 3, proc.stderr
    assert needle in (proc.stdout + proc.stderr).lower()
    assert len(emulator.submissions) == 0
    doc = status(out)
    assert doc["counts"]["pending"] == 5  # type: ignore[index]


def test_refused_inputs_fail_that_job_only(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A 422 on one submit fails that job with the service's detail; the others go on."""
    emulator = make_emulator()
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "model": "kling/kling-3.0/4k/image-to-video",
                "jobs": [
                    {"id": "ok", "prompt": "fine", "start_image_url": "https://x.example/a.png"},
                    {
                        "id": "bad",
                        "prompt": "fine",
                        "start_image_url": "https://x.example/a.png",
                        "duration": 99,
                    },
                ],
            }
        )
    )
    out = tmp_path / "out"
    proc = run(emulator, manifest, out, "--allow-unknown-model")
    assert proc.returncode == 1, proc.stderr
    by_id = {r["id"]: r for r in results(out)}
    assert by_id["ok"]["status"] == "done"
    assert by_id["bad"]["status"] == "failed"
    assert "duration" in by_id["bad"]["error"]


def test_disk_full_keeps_what_was_paid_for_and_the_next_run_resumes(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """No room for the videos (a 1 MB file size limit, the kernel says EFBIG as it would say
    ENOSPC): exit 75 naming each job and the cause; the ledger keeps both jobs as succeeded and
    their partial files; the next run resumes the downloads with Range and submits nothing."""
    limit = 1_000_000
    emulator = make_emulator(big_file_bytes=3 * limit)
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run(emulator, manifest, out, preexec_fn=small_disk)
    assert proc.returncode == 75, proc.stdout + proc.stderr
    for job in ("job-000", "job-001"):
        assert re.search(rf"{job} \(line \d+\): .*no room to write .*{job}\.mp4\.part", proc.stdout)
        assert (out / f"{job}.mp4.part").stat().st_size == limit
    doc = status(out)
    assert doc["counts"]["succeeded"] == 2  # type: ignore[index]
    assert all("no room" in j["error"] for j in doc["not_downloaded"])  # type: ignore[attr-defined]
    again = run(emulator, manifest, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(emulator.submissions) == 2
    assert sum(1 for h in emulator.requests if h.status == 206) == 2  # resumed, not refetched
    for row in results(out):
        served = emulator.served_files[row["request_id"]][0]
        assert hashlib.sha256((out / row["files"]).read_bytes()).hexdigest() == served.sha256


def test_ledger_on_a_full_disk_stops_at_once_and_never_pays_twice(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """The disk fills up under the ledger at different moments (file size limits from 30 to
    150 KB): each run stops with exit 75 and a clear message, no traceback; a run with room
    afterwards finishes the batch, and no job is ever submitted twice. A job whose request id
    could not be recorded is reported uncertain, and the failed run printed its request id."""
    stopped_while_writing = 0
    for limit in (30_000, 45_000, 60_000, 80_000, 150_000):
        emulator = make_emulator()
        manifest = write_manifest(tmp_path / f"m{limit}.yaml", 3)
        out = tmp_path / f"out{limit}"

        def small_disk(limit: int = limit) -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        first = run(emulator, manifest, out, preexec_fn=small_disk)
        assert first.returncode in (0, 75), first.stderr
        assert "Traceback" not in first.stderr
        if first.returncode == 75:
            assert "(is the disk full?)" in first.stderr, first.stderr
            stopped_while_writing += "cannot write ledger" in first.stderr
        again = run(emulator, manifest, out)
        assert "Traceback" not in again.stderr
        assert set(submissions_per_job(emulator).values()) == {1}
        assert len(emulator.submissions) == 3
        counts = status(out)["counts"]
        assert counts["done"] + counts["uncertain"] == 3  # type: ignore[index]
        if counts["uncertain"]:  # type: ignore[index]
            assert again.returncode == 1
            assert re.search(r"accepted as request req_\w+", first.stderr), first.stderr
        else:
            assert again.returncode == 0, again.stdout + again.stderr
    assert stopped_while_writing >= 2


def test_invalid_manifest_exits_2_and_sends_nothing(emulator: Emulator, tmp_path: Path) -> None:
    """A bad manifest: every problem listed with row and field, exit 2, no request made."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,start_image_url,durration\nhi,https://x.example/a.png,5\n")
    proc = run(emulator, manifest, tmp_path / "out")
    assert proc.returncode == 2
    assert "durration" in proc.stderr and "row 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert api_calls(emulator) == 0


def test_unreachable_service_exits_75_and_keeps_jobs_pending(tmp_path: Path) -> None:
    """Connection refused: the submit certainly did not reach the service; exit 75, no uncertain."""
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"
    proc = run_cli(
        ["run", str(manifest), "--out", str(out), "--base-url", "http://127.0.0.1:9", *FAST]
    )
    assert proc.returncode == 75, proc.stderr
    doc = status(out)
    assert doc["counts"]["pending"] == 2  # type: ignore[index]
    assert doc["uncertain"] == []


def test_deadline_checkpoints_and_resume_collects_without_resubmitting(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """--deadline: exit 75 with jobs in flight; the next run collects them, no new submit."""
    emulator = make_emulator(gen_seconds=(6.0, 6.0))
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run(emulator, manifest, out, "--deadline", "1.5")
    assert proc.returncode == 75, proc.stderr
    assert time.monotonic() - started < 8
    assert status(out)["counts"]["queued"] + status(out)["counts"]["running"] == 3  # type: ignore[index,operator]
    emulator.configure(gen_seconds=(0.0, 0.0))
    proc = run(emulator, manifest, out)
    assert proc.returncode == 0, proc.stderr
    assert len(emulator.submissions) == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_within_5_seconds_and_resumes(
    make_emulator: Callable[..., Emulator], tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGINT/SIGTERM: stop submitting, exit 75 within 5 s; the resume pays nothing twice."""
    emulator = make_emulator(gen_seconds=(30.0, 30.0))
    manifest = write_manifest(tmp_path / "m.yaml", 6)
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--base-url", emulator.url]
    env = {"RUNCOMFY_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        batchgen_cmd(*args, "--max-in-flight", "3"),
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(emulator.submissions) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 75, err
    emulator.configure(gen_seconds=(0.0, 0.0))
    again = run(emulator, manifest, out)
    assert again.returncode == 0, again.stderr
    counts = submissions_per_job(emulator)
    uncertain_resubmits = sum(n - 1 for n in counts.values())
    assert uncertain_resubmits == 0
    assert len(emulator.submissions) == 6


def test_max_spend_stops_submitting_before_the_cap(emulator: Emulator, tmp_path: Path) -> None:
    """--max-spend: no submission that would pass the estimate; the rest stay pending (75)."""
    manifest = write_manifest(tmp_path / "m.yaml", 5)  # 3 s x $0.084 = $0.252 per job
    out = tmp_path / "out"
    proc = run(emulator, manifest, out, "--max-spend", "0.6")
    assert proc.returncode == 75, proc.stderr
    assert len(emulator.submissions) == 2
    assert "max-spend" in proc.stderr
    assert status(out)["counts"]["pending"] == 3  # type: ignore[index]


def test_changed_new_and_removed_rows(emulator: Emulator, tmp_path: Path) -> None:
    """Changed rows are reported not resubmitted (unless asked); new rows run; gone rows noted."""
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    out = tmp_path / "out"
    assert run(emulator, manifest, out).returncode == 0
    doc = yaml.safe_load(manifest.read_text())
    doc["jobs"][0]["prompt"] = "a different prompt"
    del doc["jobs"][1]
    doc["jobs"].append(
        {"id": "extra", "prompt": "new", "start_image_url": "https://x.example/n.png"}
    )
    manifest.write_text(yaml.safe_dump(doc))
    proc = run(emulator, manifest, out)
    assert proc.returncode == 0, proc.stderr
    assert "changed since submitted" in proc.stdout and "job-000" in proc.stdout
    assert "gone from the manifest: job-001" in proc.stdout
    assert len(emulator.submissions) == 4
    st = status(out)
    assert st["changed"] == ["job-000"] and st["disappeared"] == ["job-001"]
    proc = run(emulator, manifest, out, "--rerender-changed")
    assert proc.returncode == 0
    assert len(emulator.submissions) == 5
    assert emulator.submissions[-1].body["prompt"] == "a different prompt"


def test_cancel_records_each_outcome(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """`cancel`: queued requests are cancelled, a running one is not_cancellable and kept."""
    emulator = make_emulator(gen_seconds=(20.0, 20.0), concurrency=1)
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    out = tmp_path / "out"
    assert run(emulator, manifest, out, "--deadline", "1.5").returncode == 75
    proc = run_cli(["cancel", str(out), "--base-url", emulator.url])
    assert proc.returncode == 0, proc.stderr
    outcomes = Counter(line.rsplit(": ", 1)[1] for line in proc.stdout.splitlines())
    assert outcomes == Counter({"cancelled": 2, "not_cancellable": 1})
    doc = status(out)
    assert doc["counts"]["cancelled"] == 2  # type: ignore[index]


def test_status_json_is_stable(emulator: Emulator, tmp_path: Path) -> None:
    """status --json carries the documented keys a monitoring script reads."""
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"
    assert run(emulator, manifest, out).returncode == 0
    doc = status(out)
    assert doc["schema"] == 1
    assert set(doc) >= {
        "jobs",
        "counts",
        "complete",
        "estimated_spend_usd",
        "failed",
        "uncertain",
        "not_downloaded",
        "changed",
        "disappeared",
        "last_run",
        "running_now",
    }
    assert doc["complete"] is True
    assert doc["last_run"]["exit_code"] == 0  # type: ignore[index]
    assert doc["estimated_spend_usd"] == pytest.approx(2 * 3 * 0.084)


def test_http_base_url_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    """The token is only ever sent over https (or to loopback)."""
    manifest = write_manifest(tmp_path / "m.yaml", 1)
    proc = run_cli(
        ["run", str(manifest), "--out", str(tmp_path / "o"), "--base-url", "http://example.com"]
    )
    assert proc.returncode == 2
    assert "https" in proc.stderr


def test_missing_token_is_a_usage_error(emulator: Emulator, tmp_path: Path) -> None:
    """No token: exit 2 with where to put it; nothing sent."""
    manifest = write_manifest(tmp_path / "m.yaml", 1)
    proc = run(emulator, manifest, tmp_path / "out", token=None)
    assert proc.returncode == 2
    assert "RUNCOMFY_API_TOKEN" in proc.stderr
    assert api_calls(emulator) == 0


def test_plan_compares_with_the_ledger(emulator: Emulator, tmp_path: Path) -> None:
    """`plan --out` counts done, failed and new jobs, and what a run would still spend."""
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    out = tmp_path / "out"
    assert run(emulator, manifest, out).returncode == 0
    doc = yaml.safe_load(manifest.read_text())
    doc["jobs"].append(
        {"id": "extra", "prompt": "new", "start_image_url": "https://x.example/n.png"}
    )
    doc["jobs"][0]["prompt"] = "changed"
    manifest.write_text(yaml.safe_dump(doc))
    calls = api_calls(emulator)
    proc = run_cli(["plan", str(manifest), "--out", str(out), "--json"], token=None)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (plan["jobs"], plan["done"], plan["new"], plan["changed"]) == (4, 3, 1, 1)
    assert plan["to_submit"] == 1
    assert plan["to_submit_cost_usd"] == pytest.approx(3 * 0.084)
    assert api_calls(emulator) == calls  # plan needs no token and sends nothing
