"""What a person (or cron's log) sees while a batch runs: a bar on a terminal, lines otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Callable
from pathlib import Path

from batchgen.emulator import Emulator, Faults

from .conftest import TOKEN, batchgen_cmd, run_cli, write_manifest

FAST = ["--rate", "50", "--max-in-flight", "8"]


def run_on_terminal(args: list[str]) -> tuple[int, str]:
    """Run batchgen with stderr on a pseudo-terminal; its exit code and all it showed there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, cols
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        batchgen_cmd(*args), env=env, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=120), shown.decode("utf-8", "replace")


def test_terminal_shows_a_bar_with_counts(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """On a terminal: one tqdm bar that ends at jobs settled of jobs to do, with the counts."""
    emulator = make_emulator()
    manifest = write_manifest(tmp_path / "m.yaml", 4)
    args = ["run", str(manifest), "--out", str(tmp_path / "out"), "--base-url", emulator.url]
    code, shown = run_on_terminal([*args, *FAST])
    assert code == 0, shown
    assert "jobs: 100%" in shown, shown
    assert re.search(r"4/4 .*submitted=4, running=0, done=4, failed=0", shown), shown
    assert "job-000 (" not in shown  # no per-state lines on a terminal


def test_bar_counts_failures_and_only_the_work_left(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Failed generations count as failed; a re-run's bar covers only jobs with work left."""
    emulator = make_emulator(faults=Faults(fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--base-url", emulator.url, *FAST]
    code, shown = run_on_terminal(args)
    assert code == 1, shown
    assert re.search(r"2/2 .*submitted=2, running=0, done=0, failed=2", shown), shown
    emulator.set_faults(Faults())
    code, shown = run_on_terminal(["retry", *args[1:], "--failed"])
    assert code == 0, shown
    assert re.search(r"2/2 .*submitted=2, running=0, done=2, failed=0", shown), shown


def test_without_a_terminal_one_line_per_state_change(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Piped (cron): one line per state change, naming the job and its row; --quiet: none."""
    emulator = make_emulator()
    manifest = write_manifest(tmp_path / "m.yaml", 2)
    args = ["run", str(manifest), "--base-url", emulator.url, *FAST]
    proc = run_cli([*args, "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for job in ("job-000", "job-001"):
        states = [ln.split(": ")[1].split()[0] for ln in lines if ln.startswith(f"{job} (line")]
        assert states[0] == "submitting" and states[-1] == "done", lines
        assert "queued" in states
    assert "\r" not in proc.stderr
    quiet = run_cli([*args, "--out", str(tmp_path / "quiet"), "--quiet"])
    assert quiet.returncode == 0, quiet.stderr
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("job-")]
