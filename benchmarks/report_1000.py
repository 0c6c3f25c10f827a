"""report.html for a 1,000-job batch in headless Chromium: time to a laid-out page.

    .venv/bin/python benchmarks/report_1000.py [--jobs N] [--runs R]

Fakes a finished batch (two real small H.264 clips and their posters, hard-linked once per job;
a mix of done, failed, uncertain and pending jobs, some with multi-prompt shots), writes the
report with batchgen's own code, opens it from file:// in Debian's Chromium and measures, in
the page's own clock, from navigation start until the load event has fired and every card has
a layout box. Prints the median of R fresh browser pages and its ratio to the 5 s limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batchgen.ledger import JobRecord, JobState, OutputFile  # noqa: E402
from batchgen.media import extract_poster  # noqa: E402
from batchgen.report import ReportSummary, write_report  # noqa: E402

LIMIT_SECONDS = 5.0
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

# Runs after the load event: forces layout of every card and reads the page's clock.
LAID_OUT_JS = """() => {
    const cards = document.querySelectorAll('article.card');
    let boxes = 0;
    for (const c of cards) { if (c.getBoundingClientRect().height > 0) boxes++; }
    const nav = performance.getEntriesByType('navigation')[0];
    return {cards: cards.length, boxes, ms: performance.now(), load: nav.loadEventEnd,
            videos: document.querySelectorAll('video').length};
}"""


def chromium() -> str | None:
    """$BATCHGEN_CHROMIUM, chromium, chromium-browser or /usr/bin/chromium."""
    for name in (os.environ.get("BATCHGEN_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def clip(path: Path, tint: int) -> None:
    """A 2 s 320x180 12 fps H.264 clip."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, 12)
        for i in range(24):
            image = Image.new("RGB", (320, 180), ((i * 10 + tint) % 256, 80, 150))
            frame = av.VideoFrame.from_image(image)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def batch(out: Path, jobs: int) -> list[JobRecord]:
    """Records of a finished batch with files on disk (hard links of two real clips)."""
    (out / "posters").mkdir()
    sources = []
    for n in range(2):
        source = out / f"source-{n}.mp4"
        clip(source, tint=n * 120)
        assert extract_poster(source, out / "posters" / f"source-{n}.jpg")
        sources.append(n)
    records = []
    for i in range(jobs):
        state = {7: JobState.FAILED, 13: JobState.UNCERTAIN, 19: JobState.PENDING}.get(
            i % 25, JobState.DONE
        )
        files: tuple[OutputFile, ...] = ()
        name = f"job-{i:04d}"
        if state is JobState.DONE:
            n = i % 2
            os.link(out / f"source-{n}.mp4", out / f"{name}.mp4")
            os.link(out / "posters" / f"source-{n}.jpg", out / "posters" / f"{name}.jpg")
            files = (OutputFile(f"{name}.mp4", "", 1, "x", f"posters/{name}.jpg"),)
        inputs: dict[str, Any] = {"prompt": f"Scene {i}: the product on a table, warm light"}
        if i % 10 == 3:
            inputs["multi_prompt"] = [
                {"prompt": "wide shot", "duration": 3},
                {"prompt": "close-up", "duration": 2},
            ]
        submitted = state is not JobState.PENDING
        records.append(
            JobRecord(
                id=name,
                position=i,
                row=f"row {i + 2}",
                model="kling/kling-3.0/standard",
                fingerprint="f",
                inputs=inputs,
                seconds=5,
                estimated_cost=0.42,
                state=state,
                request_id=f"req_{i:06d}" if submitted else None,
                attempts=int(submitted),
                error={
                    JobState.FAILED: "model refused the prompt",
                    JobState.UNCERTAIN: "answer lost",
                }.get(state, ""),
                queue_position=None,
                submitted_at=0.0 if submitted else None,
                started_at=1.0 if submitted else None,
                finished_at=60.0 if state is not JobState.UNCERTAIN and submitted else None,
                downloaded_at=61.0 if files else None,
                files=files,
                in_manifest=True,
                changed=False,
            )
        )
    return records


def main() -> None:
    """Build, render, measure, print."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    jobs: int = options.jobs
    binary = chromium()
    if binary is None:
        sys.exit("no chromium: apt-get install chromium (or set BATCHGEN_CHROMIUM)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        records = batch(out, jobs)
        counts: dict[str, int] = {}
        for r in records:
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
        done = counts.get("done", 0)
        summary = ReportSummary(
            f"{jobs:,} jobs", counts, 5 * done, 5 * jobs, 0.42 * jobs, 3600.0, "now"
        )
        started = time.perf_counter()
        page_path = write_report(records, summary, out)
        written = time.perf_counter() - started
        size_kb = page_path.stat().st_size / 1024
        figures = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=binary, args=ARGS)
            for _ in range(options.runs):
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                media: list[str] = []
                page.on("request", lambda r, m=media: m.append(r.url) if ".mp4" in r.url else None)
                page.goto(page_path.as_uri(), wait_until="load")
                laid_out = page.evaluate(LAID_OUT_JS)
                assert laid_out["cards"] == laid_out["boxes"] == jobs, laid_out
                assert not media, f"{len(media)} videos loaded before any click"
                figures.append(laid_out["ms"] / 1000)
                page.close()
            browser.close()
    median = statistics.median(figures)
    print(f"machine: {os.cpu_count()} cores, {binary}")
    print(f"report of {jobs:,} jobs: written in {written:.2f} s ({size_kb:,.0f} KB)")
    print(
        f"Chromium, navigation start to load + {jobs:,} cards laid out: median {median:.2f} s "
        f"of {len(figures)} runs (min {min(figures):.2f}, max {max(figures):.2f}); "
        f"ratio to the {LIMIT_SECONDS:.0f} s limit: {median / LIMIT_SECONDS:.2f}"
    )


if __name__ == "__main__":
    main()
