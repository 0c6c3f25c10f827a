"""report.html in headless Chromium from file://: cards, H.264 playback, filters, no script runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchgen.ledger import JobRecord, JobState
from batchgen.report import write_report

from .conftest import ROOT
from .test_report import EVIL, finished_batch, record, summary

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

# Resolves once a video has its metadata: its duration, or -1 when it cannot be decoded.
DURATION_JS = """(v) => new Promise((resolve) => {
    if (v.readyState >= 1) { resolve(v.duration); return; }
    v.addEventListener('loadedmetadata', () => resolve(v.duration));
    v.addEventListener('error', () => resolve(-1));
    setTimeout(() => resolve(-2), 10000);
})"""

# Resolves with the playing position after half a second of playback (-1 when it will not play).
PLAYED_JS = """(v) => new Promise((resolve) => {
    const check = () => setTimeout(() => resolve(v.currentTime), 500);
    if (!v.paused) { check(); return; }
    v.addEventListener('playing', check, {once: true});
    v.addEventListener('error', () => resolve(-1));
    setTimeout(() => resolve(-2), 10000);
})"""


def chromium() -> str | None:
    """A Chromium binary: $BATCHGEN_CHROMIUM, chromium, chromium-browser or /usr/bin/chromium."""
    candidates = (
        os.environ.get("BATCHGEN_CHROMIUM"),
        "chromium",
        "chromium-browser",
        "/usr/bin/chromium",
    )
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium() is None,
        reason="no Chromium binary (chromium, chromium-browser, /usr/bin/chromium or "
        "$BATCHGEN_CHROMIUM); apt-get install chromium",
    ),
]


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str], list[str]]]:
    """A fresh headless Chromium page, the alert dialogs it opened and the URLs it asked for."""
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})

        def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda r: requests.append(r.url))
        try:
            yield page, dialogs, requests
        finally:
            browser.close()


def batch_with_evil_prompt(out: Path) -> list[JobRecord]:
    """A finished batch: 3 done (real clips, posters), failed, uncertain, pending; a <script>."""
    records = finished_batch(out)
    assert records[0].inputs["prompt"] == EVIL and EVIL in records[3].error
    return records


def test_report_in_chromium(tmp_path: Path, browser_page: Any) -> None:
    """Cards counted, an H.264 clip loads and plays, no alert fires, a filter hides the rest."""
    page, dialogs, requests = browser_page
    records = batch_with_evil_prompt(tmp_path)
    path = write_report(records, summary(records), tmp_path)
    page.goto(path.as_uri())
    assert page.locator("article.card").count() == len(records) == 6
    assert page.locator("article.card[data-status='done'] video").count() == 3

    video = page.locator("video").first
    assert video.evaluate(DURATION_JS) == pytest.approx(2.0, abs=0.1)
    page.locator(".play").first.click()  # the poster cover turns into the playing player
    assert video.evaluate(PLAYED_JS) > 0
    assert page.locator(".frame.playing").count() == 1

    assert page.get_by_text(EVIL).count() == 2  # the prompt and the error, as text
    page.wait_for_timeout(200)
    assert dialogs == []
    assert page.evaluate("document.querySelectorAll('script').length") == 1

    page.click("button[data-filter='failed']")
    visible = page.locator("article.card:visible")
    assert visible.count() == 1 and visible.locator(".id").inner_text() == "failed"
    assert page.locator("button[data-filter='failed']").get_attribute("aria-pressed") == "true"
    page.click("button[data-filter='done']")
    assert page.locator("article.card:visible").count() == 3
    assert page.locator("article.card:visible[data-status='done']").count() == 3
    page.click("button[data-filter='all']")
    assert page.locator("article.card:visible").count() == 6

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert all(url.startswith("file://") for url in requests), requests


def test_large_report_stays_lazy_and_plays(tmp_path: Path, browser_page: Any) -> None:
    """Over 50 jobs, videos load nothing until a poster is clicked; then the clip plays."""
    page, dialogs, requests = browser_page
    records = batch_with_evil_prompt(tmp_path)
    done = records[0]
    records += [
        record(f"copy-{i}", JobState.DONE, 10 + i, files=done.files, inputs=done.inputs)
        for i in range(60)
    ]
    path = write_report(records, summary(records), tmp_path)
    page.goto(path.as_uri())
    assert page.locator("article.card").count() == 66
    assert page.evaluate("[...document.querySelectorAll('video')].every(v => v.preload === 'none')")
    assert not any(url.endswith(".mp4") for url in requests)
    card = page.locator("article.card").nth(10)
    card.scroll_into_view_if_needed()
    card.locator(".play").click()
    assert card.locator("video").evaluate(PLAYED_JS) > 0
    assert card.locator("video").evaluate("v => v.poster").endswith("posters/done-0.jpg")
    assert dialogs == []
