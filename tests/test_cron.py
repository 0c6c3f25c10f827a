"""Cron-ready operation: overlapping scheduled runs, the documented example, idle re-runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from batchgen.emulator import Emulator

from .conftest import ROOT, TOKEN, write_manifest


def cron_line(workdir: Path, emulator: Emulator) -> str:
    """The crontab.example command, pointed at this checkout's interpreter and the emulator."""
    example = (ROOT / "jobs" / "nightly" / "crontab.example").read_text()
    line = next(row for row in example.splitlines() if row and not row.startswith("#"))
    command = line.split(None, 5)[5]
    command = command.replace("/srv/campaigns/nightly", shlex.quote(str(workdir)))
    command = command.replace("/opt/batchgen/.venv/bin/batchgen", f"{sys.executable} -m batchgen")
    command = command.replace("--token-file /etc/batchgen/token", "")
    return f"{command} --base-url {emulator.url}"


def start_cron_job(command: str) -> subprocess.Popen[str]:
    """Start the command the way cron does: through /bin/sh, no terminal."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUNCOMFY_API_TOKEN": TOKEN}
    return subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL)


def test_overlapping_scheduled_runs(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    """A run overrunning into the next slot: the second leaves at once (75), the first finishes."""
    emulator = make_emulator(gen_seconds=(3.0, 3.0))
    write_manifest(tmp_path / "manifest.yaml", 6)
    command = cron_line(tmp_path, emulator)
    first = start_cron_job(command)
    deadline = time.monotonic() + 20
    while not emulator.submissions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.submissions, "the first run never submitted"
    started = time.monotonic()
    second = start_cron_job(command)
    assert second.wait(timeout=30) == 75
    assert time.monotonic() - started < 2.0
    assert first.wait(timeout=120) == 0
    log = (tmp_path / "cron.log").read_text()
    assert "in use by another batchgen run" in log and "pid" in log
    assert len(list((tmp_path / "out").glob("job-*.mp4"))) == 6
    assert len(emulator.submissions) == 6
    third = start_cron_job(command)
    assert third.wait(timeout=30) == 0
    assert len(emulator.submissions) == 6
