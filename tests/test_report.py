"""results.csv and report.html from ledger records; poster frames; the page in a real browser."""

from __future__ import annotations

import csv
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from batchgen.ledger import JobRecord, JobState, OutputFile
from batchgen.media import extract_poster, probe_duration
from batchgen.report import ReportSummary, render_report, write_report, write_results_csv

from .conftest import ROOT

EVIL = "<script>alert(1)</script>"


def make_clip(path: Path, seconds: int = 2) -> Path:
    """A real small H.264 clip."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, 12)
        for i in range(12 * seconds):
            frame = av.VideoFrame.from_image(Image.new("RGB", (320, 180), (i * 8 % 255, 90, 160)))
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def record(job_id: str, state: JobState, position: int, **kw: object) -> JobRecord:
    """A ledger record as the runner leaves it."""
    fields: dict[str, object] = {
        "id": job_id,
        "position": position,
        "row": f"row {position + 2}",
        "model": "kling/kling-3.0/standard/image-to-video",
        "fingerprint": "f",
        "inputs": {"prompt": f"prompt of {job_id}", "start_image_url": "a.png"},
        "seconds": 5,
        "estimated_cost": 0.42,
        "state": state,
        "request_id": f"req_{job_id}" if state is not JobState.PENDING else None,
        "attempts": 0 if state is JobState.PENDING else 1,
        "error": "",
        "queue_position": None,
        "submitted_at": 1000.0,
        "started_at": 1005.0,
        "finished_at": 1042.0,
        "downloaded_at": 1043.0,
        "files": (),
        "in_manifest": True,
        "changed": False,
    }
    fields.update(kw)
    return JobRecord(**fields)  # type: ignore[arg-type]


def finished_batch(out: Path, n_done: int = 3) -> list[JobRecord]:
    """A batch folder with real clips and posters, and one job in every other state."""
    out.mkdir(parents=True, exist_ok=True)
    clip = make_clip(out / "clip-src.mp4")
    records = []
    for i in range(n_done):
        name = f"done-{i}.mp4"
        shutil.copy(clip, out / name)
        poster = f"posters/done-{i}.jpg"
        assert extract_poster(out / name, out / poster)
        files = (
            OutputFile(name, f"https://cdn/{i}.mp4", (out / name).stat().st_size, "ab", poster),
        )
        inputs = {"prompt": EVIL if i == 0 else f"scene {i}", "start_image_url": "x.png"}
        if i == 1:
            inputs["multi_prompt"] = [
                {"prompt": "wide", "duration": 2},
                {"prompt": "close", "duration": 3},
            ]
        records.append(record(f"done-{i}", JobState.DONE, i, files=files, inputs=inputs))
    records.append(record("failed", JobState.FAILED, n_done, error=f"model refused {EVIL}"))
    records.append(record("unsure", JobState.UNCERTAIN, n_done + 1, error="answer lost"))
    records.append(record("waiting", JobState.PENDING, n_done + 2))
    os.remove(clip)
    return records


def summary(records: list[JobRecord]) -> ReportSummary:
    """A header for the records."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return ReportSummary("batch demo", counts, 15, 30, 1.68, 42.0, "2026-11-24 23:00:00")


def test_report_escapes_and_orders(tmp_path: Path) -> None:
    """Cards in manifest order; manifest and service text shown as text, never as markup."""
    records = finished_batch(tmp_path)
    page = render_report(records, summary(records))
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    ids = re.findall(r'<span class="id">([^<]+)</span>', page)
    assert ids == ["done-0", "done-1", "done-2", "failed", "unsure", "waiting"]
    assert page.count('class="card"') == 6
    assert "<b>2 s</b> wide" in page and "<b>3 s</b> close" in page
    assert 'src="done-0.mp4"' in page and 'poster="posters/done-0.jpg"' in page
    assert "$1.68" in page and "42 s" in page


def test_report_is_self_contained(tmp_path: Path) -> None:
    """No CDN, font or script from outside: nothing the page loads is remote."""
    records = finished_batch(tmp_path)
    page = render_report(records, summary(records))
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "url(http" not in page


def test_paths_are_url_quoted(tmp_path: Path) -> None:
    """A file name with spaces or quotes becomes a safe relative URL."""
    rec = record("a b", JobState.DONE, 0, files=(OutputFile('a b".mp4', "u", 1, "x"),))
    page = render_report([rec], summary([rec]))
    assert 'src="a%20b%22.mp4"' in page


def test_results_csv_round_trips(tmp_path: Path) -> None:
    """results.csv has one row per job, in manifest order, with the documented columns."""
    records = finished_batch(tmp_path)
    write_results_csv(records, tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert list(rows[0])[:8] == [
        "id",
        "row",
        "status",
        "request_id",
        "files",
        "seconds",
        "error",
        "attempts",
    ]
    assert rows[3]["error"] == f"model refused {EVIL}"
    assert rows[0]["files"] == "done-0.mp4" and rows[0]["generation_seconds"] == "42.0"


def test_poster_and_duration(tmp_path: Path) -> None:
    """A real clip gives a JPEG poster and its duration; a broken file gives neither, quietly."""
    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    assert extract_poster(clip, tmp_path / "p" / "c.jpg")
    with Image.open(tmp_path / "p" / "c.jpg") as poster:
        assert poster.format == "JPEG" and poster.width == 320
    assert probe_duration(clip) == pytest.approx(2.0, abs=0.2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    assert extract_poster(broken, tmp_path / "b.jpg") is False
    assert probe_duration(broken) is None


def chromium() -> str | None:
    """A Chromium binary, if this machine has one."""
    for candidate in (os.environ.get("BATCHGEN_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.mark.browser
@pytest.mark.skipif(
    chromium() is None, reason="no Chromium on this machine (apt-get install chromium)"
)
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium loads the report from file://: cards counted, a video plays, a filter works."""
    from playwright.sync_api import sync_playwright

    records = finished_batch(tmp_path)
    page_path = write_report(records, summary(records), tmp_path)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.as_uri())
        assert page.locator(".card").count() == 6
        duration = page.evaluate(
            """() => new Promise((resolve) => {
                const v = document.querySelector('video');
                if (v.readyState >= 1) { resolve(v.duration); return; }
                v.addEventListener('loadedmetadata', () => resolve(v.duration));
                v.addEventListener('error', () => resolve(-1));
                v.load();
            })"""
        )
        assert duration > 0
        page.click("button[data-filter='failed']")
        assert page.locator(".card:visible").count() == 1
        assert page.locator(".card:visible .id").inner_text() == "failed"
        page.click("button[data-filter='all']")
        assert page.locator(".card:visible").count() == 6
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        browser.close()
    assert dialogs == []


@pytest.mark.browser
@pytest.mark.skipif(
    chromium() is None, reason="no Chromium on this machine (apt-get install chromium)"
)
def test_large_report_plays_on_click(tmp_path: Path) -> None:
    """Over 50 jobs, cards show lazy posters; clicking one turns it into a playing video."""
    from playwright.sync_api import sync_playwright

    records = finished_batch(tmp_path, n_done=3)
    done = records[0]
    many = [
        record(f"copy-{i}", JobState.DONE, 10 + i, files=done.files, inputs=done.inputs)
        for i in range(60)
    ]
    page_path = write_report(records + many, summary(records + many), tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(page_path.as_uri())
        assert page.locator(".card").count() == 66
        assert page.locator("video").count() == 0
        page.locator("img.poster").first.click()
        duration = page.evaluate(
            """() => new Promise((resolve) => {
                const v = document.querySelector('video');
                if (v.readyState >= 1) { resolve(v.duration); return; }
                v.addEventListener('loadedmetadata', () => resolve(v.duration));
                v.addEventListener('error', () => resolve(-1));
            })"""
        )
        browser.close()
    assert duration > 0
