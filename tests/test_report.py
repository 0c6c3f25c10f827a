"""results.csv and report.html from ledger records; poster frames and durations with PyAV."""

from __future__ import annotations

import csv
import re
import shutil
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from batchgen.ledger import JobRecord, JobState, OutputFile
from batchgen.media import extract_poster, probe_duration
from batchgen.report import (
    CSV_COLUMNS,
    ReportSummary,
    render_report,
    write_report,
    write_results_csv,
)

EVIL = "<script>alert(1)</script>"


# ---- helpers (also used by test_report_browser.py) ------------------------------------------


def make_clip(path: Path, seconds: int = 2, fps: int = 12, tint: int = 0) -> Path:
    """A real small H.264 clip: 320x180, ``fps`` frames a second, ``seconds`` long."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast"}
        for i in range(fps * seconds):
            colour = ((i * 9 + tint) % 256, (90 + tint * 3) % 256, (160 + i * 4) % 256)
            image = Image.new("RGB", (320, 180), colour)
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def record(job_id: str, state: JobState, position: int, **kw: Any) -> JobRecord:
    """A ledger record as the runner leaves it."""
    submitted = state is not JobState.PENDING
    fields: dict[str, Any] = {
        "id": job_id,
        "position": position,
        "row": f"row {position + 2}",
        "model": "kling/kling-3.0/standard/image-to-video",
        "fingerprint": "f",
        "inputs": {"prompt": f"prompt of {job_id}", "start_image_url": "a.png"},
        "seconds": 5,
        "estimated_cost": 0.42,
        "state": state,
        "request_id": f"req_{job_id}" if submitted else None,
        "attempts": 1 if submitted else 0,
        "error": "",
        "queue_position": None,
        "submitted_at": 1000.0 if submitted else None,
        "started_at": 1005.0 if submitted else None,
        "finished_at": 1042.0 if submitted else None,
        "downloaded_at": 1043.0 if state is JobState.DONE else None,
        "files": (),
        "in_manifest": True,
        "changed": False,
    }
    fields.update(kw)
    return JobRecord(**fields)


def finished_batch(out: Path, n_done: int = 3) -> list[JobRecord]:
    """A batch folder with real clips and posters, and one job failed, uncertain and pending."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_done):
        name = f"done-{i}.mp4"
        make_clip(out / name, tint=i * 70)
        poster = f"posters/done-{i}.jpg"
        assert extract_poster(out / name, out / poster)
        size = (out / name).stat().st_size
        files = (OutputFile(name, f"https://cdn.example/{i}.mp4", size, "ab", poster),)
        inputs: dict[str, Any] = {"prompt": EVIL if i == 0 else f"scene {i}"}
        if i == 1:
            inputs["multi_prompt"] = [
                {"prompt": "wide", "duration": 2},
                {"prompt": "close", "duration": 3},
            ]
        records.append(record(f"done-{i}", JobState.DONE, i, files=files, inputs=inputs))
    records.append(record("failed", JobState.FAILED, n_done, error=f"model refused {EVIL}"))
    records.append(record("unsure", JobState.UNCERTAIN, n_done + 1, error="answer lost"))
    records.append(record("waiting", JobState.PENDING, n_done + 2))
    return records


def summary(records: list[JobRecord], wall: float | None = 42.0) -> ReportSummary:
    """A header for the records, as batch.py builds it."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return ReportSummary("batch demo", counts, 15, 30, 1.68, wall, "2026-11-24 23:00:00")


class _Page(HTMLParser):
    """Collects every attribute value and the text of <style> and <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.code: list[str] = []
        self.tags: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_code = tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code.append(data)


def parse(page: str) -> _Page:
    """The page, parsed."""
    parser = _Page()
    parser.feed(page)
    return parser


def card_ids(page: str) -> list[str]:
    """The job ids of the cards, in page order."""
    return re.findall(r'<h2 class="id">([^<]*)</h2>', page)


# ---- report.html ----------------------------------------------------------------------------


def test_script_in_prompt_and_error_is_text(tmp_path: Path) -> None:
    """A <script> in a prompt, an error, an id or a shot is shown as text, never run."""
    records = finished_batch(tmp_path)
    records.append(
        record(
            f"x{EVIL}",
            JobState.FAILED,
            9,
            row=EVIL,
            request_id=f'r"{EVIL}',
            error=EVIL,
            inputs={"prompt": "p", "multi_prompt": [{"prompt": EVIL, "duration": EVIL}]},
        )
    )
    page = render_report(records, summary(records))
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = parse(page)
    assert parsed.tags.count("script") == 1  # batchgen's own, nothing else
    assert "alert" not in "".join(parsed.code)


def test_cards_in_manifest_order_with_status(tmp_path: Path) -> None:
    """One card per job in the order given, each carrying data-status."""
    records = finished_batch(tmp_path)
    page = render_report(records, summary(records))
    assert card_ids(page) == ["done-0", "done-1", "done-2", "failed", "unsure", "waiting"]
    statuses = re.findall(r'<article class="card [^"]*" data-status="([a-z]+)"', page)
    assert statuses == ["done", "done", "done", "failed", "uncertain", "pending"]


def test_counts_and_header(tmp_path: Path) -> None:
    """Filter buttons and header count jobs per state; seconds, spend and wall time shown."""
    records = finished_batch(tmp_path)
    page = render_report(records, summary(records, wall=3725.0))
    assert re.search(r'data-filter="all">All <em>6</em>', page)
    assert re.search(r'data-filter="done"><i></i>Done <em>3</em>', page)
    assert re.search(r'data-filter="failed"><i></i>Failed <em>1</em>', page)
    assert re.search(r'data-filter="uncertain"><i></i>Uncertain <em>1</em>', page)
    assert re.search(r'data-filter="pending"><i></i>Pending <em>1</em>', page)
    assert 'data-filter="running"' not in page  # no button for an empty state
    assert "<b>3 / 6</b>" in page and "15 / 30 s" in page
    assert "$1.68" in page and "1 h 02 m" in page
    assert "<b>1</b> failed" in page


def test_multi_prompt_shots_shown(tmp_path: Path) -> None:
    """Each shot of a multi-prompt job is listed with its duration."""
    records = finished_batch(tmp_path)
    page = render_report(records, summary(records))
    assert "<li><b>2 s</b><span>wide</span></li><li><b>3 s</b><span>close</span></li>" in page


def test_card_facts(tmp_path: Path) -> None:
    """A card shows video seconds, generation time, estimated cost, request id and error."""
    rec = record("j", JobState.FAILED, 0, error="boom", attempts=2, estimated_cost=1.5)
    page = render_report([rec], summary([rec]))
    assert "<dd>5 s</dd>" in page and "<dd>42 s</dd>" in page and "<dd>$1.50</dd>" in page
    assert "<code>req_j</code> · 2 attempts" in page
    assert '<p class="error e-failed">boom</p>' in page
    done = record("d", JobState.DONE, 0, error="a stale download error")
    assert "stale" not in render_report([done], summary([done]))


def test_paths_are_relative_and_url_quoted() -> None:
    """File names with spaces, quotes, #, ? and accents become safe relative URLs."""
    name = 'a b"#?é&.mp4'
    files = (OutputFile(name, "https://cdn/x", 1, "x", "posters/a b.jpg"),)
    rec = record("a", JobState.DONE, 0, files=files)
    page = render_report([rec], summary([rec]))
    assert 'src="a%20b%22%23%3F%C3%A9%26.mp4"' in page
    assert 'poster="posters/a%20b.jpg"' in page
    assert '<img loading="lazy" decoding="async" alt="" src="posters/a%20b.jpg">' in page
    assert '<video controls playsinline preload="metadata"' in page


def test_several_files_several_players() -> None:
    """A job with two files gets two players; a file without poster gets no cover image."""
    files = (
        OutputFile("one.mp4", "u", 1, "x", "posters/one.jpg"),
        OutputFile("two.mp4", "u", 1, "x", ""),
    )
    rec = record("two", JobState.DONE, 0, files=files)
    page = render_report([rec], summary([rec]))
    assert page.count("<video ") == 2 and page.count("<img ") == 1
    assert 'aria-label="Play two (1/2)"' in page


def test_page_is_self_contained(tmp_path: Path) -> None:
    """Nothing the page loads is remote; URLs in job data appear only as text."""
    records = finished_batch(tmp_path)
    records.append(
        record("link", JobState.FAILED, 9, error="see https://status.example/x for details")
    )
    records[0] = record(
        "web", JobState.DONE, 0, inputs={"prompt": "like http://example.com/ref.mp4"}
    )
    page = render_report(records, summary(records))
    parsed = parse(page)
    for tag, name, value in parsed.attrs:
        assert not re.match(r"\s*(https?:|//|data:|javascript:)", value, re.I), (tag, name, value)
    code = "".join(parsed.code)
    assert "http" not in code and "@import" not in code and "url(" not in code
    assert "<link" not in page and "<iframe" not in page
    outside_text = re.sub(r'<p class="(prompt|error[^"]*)">[^<]*</p>', "", page)
    assert "http" not in outside_text


def test_many_jobs_load_lazily(tmp_path: Path) -> None:
    """Over 50 jobs, videos preload nothing and posters load lazily; 1,000 render fast."""
    files = (OutputFile("v.mp4", "u", 1, "x", "posters/v.jpg"),)
    few = [record(f"j{i}", JobState.DONE, i, files=files) for i in range(50)]
    assert 'preload="none"' not in render_report(few, summary(few))
    many = [record(f"j{i}", JobState.DONE, i, files=files) for i in range(1000)]
    started = time.perf_counter()
    page = render_report(many, summary(many))
    assert time.perf_counter() - started < 1.0
    assert page.count('preload="none"') == 1000 and 'preload="metadata"' not in page
    assert page.count('loading="lazy"') == 1000
    assert page.count('data-poster="posters/v.jpg"') == 1000 and ' poster="' not in page


def test_gone_jobs_and_empty_batch() -> None:
    """A job gone from the manifest is marked and filterable; an empty batch still renders."""
    recs = [record("here", JobState.DONE, 0), record("gone", JobState.DONE, 1, in_manifest=False)]
    page = render_report(recs, summary(recs))
    assert 'data-gone="1"' in page and "Gone from manifest <em>1</em>" in page
    empty = render_report([], ReportSummary("empty", {}, 0, 0, 0.0, None, "now"))
    assert "No jobs in this batch yet." in empty and "<b>–</b>" in empty


def test_write_report_is_atomic(tmp_path: Path) -> None:
    """write_report replaces report.html whole and leaves no temporary file."""
    records = finished_batch(tmp_path)
    (tmp_path / "report.html").write_text("old", encoding="utf-8")
    path = write_report(records, summary(records), tmp_path)
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8") == render_report(records, summary(records))
    assert not list(tmp_path.glob(".*tmp"))


# ---- results.csv ----------------------------------------------------------------------------


def test_results_csv_columns_order_and_round_trip(tmp_path: Path) -> None:
    """One row per job in manifest order, documented columns, values survive the csv module."""
    records = finished_batch(tmp_path)
    tricky = 'quote " comma , newline\n and é ✓'
    records.append(record("tricky", JobState.FAILED, 9, error=tricky, row="row, 11"))
    two = (OutputFile("a.mp4", "u", 1, "x"), OutputFile("b c.mp4", "u", 1, "x"))
    records.append(record("two", JobState.DONE, 10, files=two, attempts=2, changed=True))
    path = tmp_path / "results.csv"
    path.write_text("stale", encoding="utf-8")
    write_results_csv(records, path)
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # plain UTF-8, no BOM
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert CSV_COLUMNS[:8] == (
        "id",
        "row",
        "status",
        "request_id",
        "files",
        "seconds",
        "error",
        "attempts",
    )
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert rows[0]["files"] == "done-0.mp4" and rows[0]["generation_seconds"] == "42.0"
    assert rows[0]["status"] == "done" and rows[0]["request_id"] == "req_done-0"
    assert rows[3]["error"] == f"model refused {EVIL}"
    assert rows[5]["request_id"] == "" and rows[5]["generation_seconds"] == ""
    assert rows[6]["error"] == tricky and rows[6]["row"] == "row, 11"
    assert rows[7]["files"] == "a.mp4|b c.mp4" and rows[7]["attempts"] == "2"
    assert rows[7]["changed"] == "yes" and rows[7]["in_manifest"] == "yes"
    assert rows[7]["estimated_cost"] == "0.4200"
    assert not list(tmp_path.glob(".*tmp"))


# ---- media ----------------------------------------------------------------------------------


def test_poster_and_duration_of_a_real_clip(tmp_path: Path) -> None:
    """A 2 s H.264 clip gives a 320 px JPEG poster and its duration, each in well under 100 ms."""
    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    poster = tmp_path / "posters" / "c.jpg"
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert extract_poster(clip, poster)
        timings.append(time.perf_counter() - started)
    with Image.open(poster) as image:
        assert image.format == "JPEG" and image.size == (320, 180)
    assert extract_poster(clip, tmp_path / "small.jpg", width=160)
    with Image.open(tmp_path / "small.jpg") as image:
        assert image.size == (160, 90)
    started = time.perf_counter()
    assert probe_duration(clip) == pytest.approx(2.0, abs=0.1)
    assert time.perf_counter() - started < 0.1
    assert min(timings) < 0.1
    assert not list(poster.parent.glob(".*tmp"))


def test_poster_frame_is_near_half_a_second(tmp_path: Path) -> None:
    """The poster shows the frame at about 0.5 s, not the first one."""
    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    assert extract_poster(clip, tmp_path / "p.jpg")
    with Image.open(tmp_path / "p.jpg") as image:
        red = image.convert("RGB").getpixel((160, 90))
    assert isinstance(red, tuple)
    assert abs(red[0] - 6 * 9) < 20  # frame 6 of 12 fps: red = 6 * 9


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 1000, b"garbage, not a video", "truncated"],
    ids=["empty", "zeros", "text", "truncated"],
)
def test_corrupt_file_gives_no_poster_and_no_duration(tmp_path: Path, content: object) -> None:
    """An undecodable file: extract_poster returns False, probe_duration None; nothing raised."""
    broken = tmp_path / "broken.mp4"
    if content == "truncated":
        make_clip(tmp_path / "whole.mp4")
        shutil.copy(tmp_path / "whole.mp4", broken)
        broken.write_bytes(broken.read_bytes()[:2000])  # moov atom (at the end) cut off
    else:
        assert isinstance(content, bytes)
        broken.write_bytes(content)
    assert extract_poster(broken, tmp_path / "b.jpg") is False
    assert not (tmp_path / "b.jpg").exists()
    assert probe_duration(broken) is None
    assert extract_poster(tmp_path / "missing.mp4", tmp_path / "m.jpg") is False
    assert probe_duration(tmp_path / "missing.mp4") is None
