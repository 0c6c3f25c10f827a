"""Runner benchmarks against the emulator on loopback. Prints each figure as a ratio to its goal.

    .venv/bin/python benchmarks/runner.py [rate|polling|memory|idle|all] [--quick]

rate     (a) rate efficiency: instant generations, a 600-job batch under --rate R. Figure:
         (API calls made / R) / wall time. Goal >= 0.95.
polling  (b) polling economy: generations of 10-20 s. Figures: polling calls (status + result)
         per job, goal <= 5; mean delay between a job finishing on the service and batchgen
         noticing it, as a fraction of the mean generation time, goal < 0.10. Fixed 2 s
         polling is measured beside it in the same run.
memory   (c) peak RSS while downloading a 1 GB result, minus RSS just before the download.
         Goal <= 50 MB.
idle     a finished 1,000-job batch run again (as cron would): wall time (goal < 2 s) and API
         calls made (goal 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batchgen.batch import run_batch  # noqa: E402
from batchgen.config import Limits, PollPolicy, RunConfig, Secret  # noqa: E402
from batchgen.emulator import Emulator, EmulatorConfig  # noqa: E402

TOKEN = "bench-token"


def manifest(path: Path, n: int, duration: int = 3) -> Path:
    """A YAML manifest of ``n`` jobs with remote images (the emulator renders a stock clip)."""
    jobs = [
        {"id": f"j{i:04d}", "prompt": f"job {i}", "start_image_url": f"https://x.example/{i}.png"}
        for i in range(n)
    ]
    doc = {"defaults": {"duration": duration, "generate_audio": False}, "jobs": jobs}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def api_hits(emulator: Emulator) -> list[object]:
    """Requests the emulator saw on /v1."""
    return [h for h in emulator.requests if h.path.startswith("/v1/")]


def bench_rate(jobs: int, rate: float) -> None:
    """(a) calls/R over wall time for a batch whose generations are instant."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(EmulatorConfig(token=TOKEN, gen_seconds=(0.0, 0.0))) as emulator,
    ):
        m = manifest(Path(tmp) / "m.yaml", jobs)
        config = RunConfig(
            out_dir=Path(tmp) / "out",
            base_url=emulator.url,
            limits=Limits(rate=rate, max_in_flight=max(50, int(rate * 4))),
        )
        started = time.monotonic()
        summary = asyncio.run(run_batch(m, config, token=Secret(TOKEN), handle_signals=False))
        wall = time.monotonic() - started
        calls = len(api_hits(emulator))
        assert summary.exit_code == 0, summary
        ideal = calls / rate
        print(
            f"rate efficiency: {jobs} jobs, --rate {rate:g}: {calls} API calls "
            f"({calls / jobs:.2f}/job), ideal {ideal:.1f} s, wall {wall:.1f} s, "
            f"ratio {ideal / wall:.3f} (goal >= 0.95)"
        )


def bench_polling(jobs: int, in_flight: int) -> None:
    """(b) polling calls per job and notice delay, adaptive vs fixed 2 s, same emulator setup."""
    fixed = PollPolicy(first=2.0, cap=2.0, fraction=0.0, cold_fraction=0.0, floor=2.0)
    for name, policy in (("adaptive", PollPolicy()), ("fixed 2 s", fixed)):
        with (
            tempfile.TemporaryDirectory() as tmp,
            Emulator(EmulatorConfig(token=TOKEN, gen_seconds=(10.0, 20.0), seed=11)) as emulator,
        ):
            m = manifest(Path(tmp) / "m.yaml", jobs)
            config = RunConfig(
                out_dir=Path(tmp) / "out",
                base_url=emulator.url,
                limits=Limits(rate=20, max_in_flight=in_flight),
                poll=policy,
            )
            summary = asyncio.run(run_batch(m, config, token=Secret(TOKEN), handle_signals=False))
            assert summary.exit_code == 0, summary
            polls = [
                h
                for h in api_hits(emulator)
                if h.path.split("?")[0].endswith(("/status", "/result"))
            ]
            delays, gens = [], []
            for rid, job in emulator.jobs.items():
                seen = [h.at for h in polls if f"/{rid}/result" in h.path]
                gens.append(job.finished_at - job.started_at)
                delays.append(min(seen) - job.finished_at)
            mean_gen = sum(gens) / len(gens)
            mean_delay = sum(delays) / len(delays)
            print(
                f"polling economy ({name}): {jobs} jobs, {in_flight} in flight: "
                f"{len(polls) / jobs:.2f} polling calls/job (goal <= 5), mean notice delay "
                f"{mean_delay:.2f} s = {mean_delay / mean_gen:.3f} of mean generation "
                f"{mean_gen:.1f} s (goal < 0.10)"
            )


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_memory(size: int) -> None:
    """(c) batchgen (a subprocess) downloads one ``size``-byte result; RSS sampled every 20 ms."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(
            EmulatorConfig(token=TOKEN, gen_seconds=(0.0, 0.0), big_file_bytes=size)
        ) as emulator,
    ):
        m = manifest(Path(tmp) / "m.yaml", 1)
        out = Path(tmp) / "out"
        env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
        args = [
            sys.executable,
            "-m",
            "batchgen",
            "run",
            str(m),
            "--out",
            str(out),
            "--base-url",
            emulator.url,
            "--quiet",
        ]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = peak = 0
        part = out / "j0000.mp4.part"
        samples: list[tuple[bool, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set() and proc.poll() is None:
                try:
                    samples.append((part.exists(), rss_kib(proc.pid)))
                except OSError:
                    break
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        proc.wait(timeout=600)
        stop.set()
        sampler.join()
        wall = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        got = (out / "j0000.mp4").stat().st_size
        assert got == size, got
        during = [rss for downloading, rss in samples if downloading]
        ahead = [rss for downloading, rss in samples if not downloading and rss]
        before = ahead[len(ahead) - 1] if ahead else 0
        first_dl = next(i for i, (d, _) in enumerate(samples) if d)
        before = samples[first_dl - 1][1] if first_dl else before
        peak = max(during)
        grow = (peak - before) / 1024
        print(
            f"download memory: {size / 1e9:.2f} GB in {wall:.1f} s; RSS before download "
            f"{before / 1024:.1f} MB, peak during {peak / 1024:.1f} MB, growth {grow:.1f} MB "
            f"(goal <= 50 MB, ratio {grow / 50:.2f})"
        )


def bench_idle(jobs: int) -> None:
    """A finished batch of ``jobs`` jobs run again: wall time and API calls."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(EmulatorConfig(token=TOKEN, gen_seconds=(0.0, 0.0))) as emulator,
    ):
        m = manifest(Path(tmp) / "m.yaml", jobs)
        out = Path(tmp) / "out"
        env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
        args = [
            sys.executable,
            "-m",
            "batchgen",
            "run",
            str(m),
            "--out",
            str(out),
            "--base-url",
            emulator.url,
            "--quiet",
            "--rate",
            "400",
            "--max-in-flight",
            "200",
        ]
        first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        assert first.returncode == 0, first.stderr[-2000:]
        calls = len(api_hits(emulator))
        started = time.monotonic()
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        wall = time.monotonic() - started
        assert again.returncode == 0, again.stderr[-2000:]
        print(
            f"idle re-run (cron): {jobs} finished jobs: exit {again.returncode}, "
            f"{len(api_hits(emulator)) - calls} API calls (goal 0), wall {wall:.2f} s "
            f"(goal < 2 s, ratio {wall / 2:.2f})"
        )


def main() -> None:
    """Run the chosen benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which", nargs="?", default="all", choices=["rate", "polling", "memory", "idle", "all"]
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    quick = args.quick
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    if args.which in ("rate", "all"):
        bench_rate(60 if quick else 600, 20.0)
    if args.which in ("polling", "all"):
        bench_polling(20 if quick else 200, 20)
    if args.which in ("memory", "all"):
        bench_memory(50_000_000 if quick else 1_000_000_000)
    if args.which in ("idle", "all"):
        bench_idle(100 if quick else 1000)


if __name__ == "__main__":
    main()
