"""report.html for a 1,000-job batch in headless Chromium: time to a laid-out page.

    .venv/bin/python benchmarks/report_1000.py [--jobs N]

Fakes a finished batch (one real small clip and poster hard-linked per job, a mix of states),
writes the report with batchgen's own code, opens it from file:// in Debian's Chromium and
measures from navigation start until the load event has fired and every card has a layout box.
Goal: under 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batchgen.ledger import JobRecord, JobState, OutputFile  # noqa: E402
from batchgen.media import extract_poster  # noqa: E402
from batchgen.report import ReportSummary, write_report  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def clip(path: Path) -> None:
    """A 2 s 320x180 H.264 clip."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, 12)
        for i in range(24):
            image = Image.new("RGB", (320, 180), (i * 10, 80, 150))
            frame = av.VideoFrame.from_image(image)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def batch(out: Path, jobs: int) -> list[JobRecord]:
    """Records of a finished batch with files on disk."""
    source = out / "source.mp4"
    clip(source)
    (out / "posters").mkdir()
    extract_poster(source, out / "posters" / "source.jpg")
    records = []
    for i in range(jobs):
        state = JobState.FAILED if i % 25 == 7 else JobState.DONE
        files: tuple[OutputFile, ...] = ()
        if state is JobState.DONE:
            os.link(source, out / f"job-{i:04d}.mp4")
            os.link(out / "posters" / "source.jpg", out / "posters" / f"job-{i:04d}.jpg")
            files = (
                OutputFile(
                    f"job-{i:04d}.mp4", "https://cdn/x.mp4", 1, "x", f"posters/job-{i:04d}.jpg"
                ),
            )
        records.append(
            JobRecord(
                id=f"job-{i:04d}",
                position=i,
                row=f"row {i + 2}",
                model="kling/kling-3.0/standard",
                fingerprint="f",
                inputs={"prompt": f"Scene {i}: the product on a table, warm light"},
                seconds=5,
                estimated_cost=0.42,
                state=state,
                request_id=f"req_{i}",
                attempts=1,
                error="model refused the prompt" if state is JobState.FAILED else "",
                queue_position=None,
                submitted_at=0.0,
                started_at=1.0,
                finished_at=60.0,
                downloaded_at=61.0,
                files=files,
                in_manifest=True,
                changed=False,
            )
        )
    return records


def main() -> None:
    """Build, render, measure."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    jobs = parser.parse_args().jobs
    chromium = shutil.which(os.environ.get("BATCHGEN_CHROMIUM", "chromium"))
    if chromium is None:
        sys.exit("no chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        records = batch(out, jobs)
        counts = {"done": sum(r.state is JobState.DONE for r in records)}
        counts["failed"] = jobs - counts["done"]
        summary = ReportSummary(
            "1,000 jobs", counts, 5 * counts["done"], 5 * jobs, 420.0, 3600.0, "now"
        )
        started = time.monotonic()
        page_path = write_report(records, summary, out)
        written = time.monotonic() - started
        size_kb = page_path.stat().st_size / 1024
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(page_path.as_uri(), wait_until="load")
            laid_out = page.evaluate(
                """() => {
                    const cards = document.querySelectorAll('.card');
                    let boxes = 0;
                    for (const c of cards) { if (c.getBoundingClientRect().height > 0) boxes++; }
                    return {cards: cards.length, boxes, ms: performance.now()};
                }"""
            )
            browser.close()
    seconds = laid_out["ms"] / 1000
    assert laid_out["cards"] == laid_out["boxes"] == jobs, laid_out
    print(f"machine: {os.cpu_count()} cores, {chromium}")
    print(
        f"report of {jobs} jobs: written in {written:.2f} s ({size_kb:.0f} KB); in Chromium "
        f"{laid_out['cards']} cards laid out {seconds:.2f} s after navigation start "
        f"(goal < 5 s, ratio {seconds / 5:.2f})"
    )


if __name__ == "__main__":
    main()
