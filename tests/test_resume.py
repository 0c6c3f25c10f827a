"""Crash safety, one run per batch, and secrecy of the token: the bets users make on the ledger."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from batchgen.emulator import Emulator, Faults

from .conftest import TOKEN, batchgen_cmd, run_cli, write_manifest


def popen_run(emulator: Emulator, manifest: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """Start `batchgen run` in the background."""
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    env.pop("RUNCOMFY_BASE_URL", None)
    args = ["run", str(manifest), "--out", str(out), "--base-url", emulator.url, *extra]
    return subprocess.Popen(
        batchgen_cmd(*args), env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def uncertain_ids(out: Path) -> set[str]:
    """Jobs the ledger holds as uncertain right now."""
    proc = run_cli(["status", str(out), "--json"])
    if proc.returncode != 0:
        return set()
    return {job["id"] for job in json.loads(proc.stdout)["uncertain"]}


@pytest.mark.slow
def test_kill_9_at_random_moments_never_pays_twice(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """200 jobs, SIGKILLed 10+ times and resumed: one verified video each, no double submits."""
    emulator = make_emulator(gen_seconds=(0.2, 1.5), faults=Faults(truncate_download=0.1))
    manifest = write_manifest(tmp_path / "m.yaml", 200)
    out = tmp_path / "out"
    fast = ("--rate", "150", "--max-in-flight", "10")
    rng = random.Random(20261124)
    ever_uncertain: set[str] = set()
    kills = attempts = 0
    while kills < 10 and attempts < 40:
        attempts += 1
        proc = popen_run(emulator, manifest, out, *fast)
        time.sleep(rng.uniform(0.8, 3.0))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=30)
        ever_uncertain |= uncertain_ids(out)
    assert kills >= 10
    for _ in range(5):
        proc = popen_run(emulator, manifest, out, *fast)
        proc.communicate(timeout=240)
        ever_uncertain |= uncertain_ids(out)
        if proc.returncode == 0:
            break
        if proc.returncode == 1 and ever_uncertain:
            retry = run_cli(
                [
                    "retry",
                    str(manifest),
                    "--out",
                    str(out),
                    "--uncertain",
                    "--base-url",
                    emulator.url,
                    *fast,
                ],
                timeout=240,
            )
            assert retry.returncode in (0, 1, 75), retry.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]

    submitted = Counter(s.body["prompt"] for s in emulator.submissions)
    for i in range(200):
        job_id = f"job-{i:03d}"
        videos = sorted(p.name for p in out.glob(f"{job_id}*.mp4"))
        assert videos == [f"{job_id}.mp4"]
        sidecar = json.loads((out / f"{job_id}.json").read_text())
        served = emulator.served_files[sidecar["request_id"]][0]
        data = (out / f"{job_id}.mp4").read_bytes()
        assert hashlib.sha256(data).hexdigest() == served.sha256 == sidecar["files"][0]["sha256"]
        prompt = f"shot {i}: a lighthouse at dusk, slow push-in"
        if submitted[prompt] > 1:
            assert job_id in ever_uncertain, f"{job_id} submitted {submitted[prompt]}x"
    assert not list(out.glob("*.part"))


def test_two_runs_at_once_one_exits_75_within_2_seconds(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A second run on the same folder leaves at once with 75, naming the holder's pid."""
    emulator = make_emulator(gen_seconds=(1.0, 1.0))
    manifest = write_manifest(tmp_path / "m.yaml", 4)
    out = tmp_path / "out"
    first = popen_run(emulator, manifest, out)
    time.sleep(0.3)
    started = time.monotonic()
    second = popen_run(emulator, manifest, out)
    _, err = second.communicate(timeout=30)
    elapsed = time.monotonic() - started
    first_out, first_err = first.communicate(timeout=60)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 75], (first_err, err)
    loser_err = err if second.returncode == 75 else first_err
    assert "in use by another batchgen run" in loser_err and "pid" in loser_err
    if second.returncode == 75:
        assert elapsed < 2.0
    assert len(emulator.submissions) == 4


def test_token_never_leaks_anywhere(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """With every fault on: the token is in no output, log, ledger, sidecar, CSV or report."""
    faults = Faults(
        fail_5xx=0.15,
        drop=0.1,
        bad_json=0.1,
        error_code_200=0.1,
        truncate_download=0.3,
        fail_generation=0.2,
        accept_then_502=0.1,
        rate_limit=20,
    )
    emulator = make_emulator(faults=faults)
    manifest = write_manifest(tmp_path / "m.yaml", 12)
    out = tmp_path / "out"
    outputs = []
    for args in (
        ["run", str(manifest), "--out", str(out), "--base-url", emulator.url, "--verbose"],
        ["retry", str(manifest), "--out", str(out), "--base-url", emulator.url, "--verbose"],
        ["status", str(out), "--json"],
        ["report", str(out)],
    ):
        proc = run_cli([*args, "--rate", "40"] if args[0] in ("run", "retry") else args)
        outputs += [proc.stdout, proc.stderr]
    bad = run_cli(
        ["run", str(manifest), "--out", str(tmp_path / "o2"), "--base-url", emulator.url],
        token=TOKEN + "-wrong",
    )
    outputs += [bad.stdout, bad.stderr]
    assert bad.returncode == 3
    assert all(TOKEN not in text for text in outputs)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "m.yaml"]
    assert any(p.name == "ledger.sqlite" for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path
