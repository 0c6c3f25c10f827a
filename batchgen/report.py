"""Results of a batch, from ledger records: ``results.csv`` and a self-contained ``report.html``.

Both are pure functions of the records (plus a summary) and written atomically. The HTML page
is a contact sheet: one card per job in manifest order with its poster, an inline player,
prompt, status and cost; filters by status; no CDN, fonts or scripts from outside, so the
folder can be zipped and opened anywhere from ``file://``. Everything that comes from a
manifest or the service is escaped.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import quote

from .ledger import JobRecord, JobState

CSV_COLUMNS = (
    "id",
    "row",
    "status",
    "request_id",
    "files",
    "seconds",
    "error",
    "attempts",
    "estimated_cost",
    "generation_seconds",
    "changed",
    "in_manifest",
)

BADGE = {
    JobState.DONE: "#1f9d55",
    JobState.SUCCEEDED: "#2b7bb9",
    JobState.QUEUED: "#7a6ff0",
    JobState.RUNNING: "#7a6ff0",
    JobState.SUBMITTING: "#7a6ff0",
    JobState.PENDING: "#8a8f98",
    JobState.UNCERTAIN: "#d97706",
    JobState.FAILED: "#dc2626",
    JobState.CANCELLED: "#6b7280",
}


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """The header of the report."""

    title: str
    counts: dict[str, int]
    total_seconds: int  # video seconds downloaded
    all_seconds: int  # video seconds asked for
    estimated_spend: float
    wall_seconds: float | None
    generated_at: str
    extra: dict[str, str] = field(default_factory=dict)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def results_rows(records: Sequence[JobRecord]) -> list[dict[str, str]]:
    """One dict per job, in manifest order, with the CSV columns."""
    rows = []
    for r in records:
        gen = r.generation_seconds
        rows.append(
            {
                "id": r.id,
                "row": r.row,
                "status": r.state.value,
                "request_id": r.request_id or "",
                "files": "|".join(f.path for f in r.files),
                "seconds": str(r.seconds),
                "error": r.error,
                "attempts": str(r.attempts),
                "estimated_cost": f"{r.estimated_cost:.4f}",
                "generation_seconds": "" if gen is None else f"{gen:.1f}",
                "changed": "yes" if r.changed else "",
                "in_manifest": "yes" if r.in_manifest else "no",
            }
        )
    return rows


def write_results_csv(records: Sequence[JobRecord], path: Path) -> None:
    """``results.csv``: one row per job in manifest order, to merge back into the sheet."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(results_rows(records))
    _write_atomic(path, buffer.getvalue())


def _rel(path: str) -> str:
    return escape(quote(path), quote=True)


def _card(record: JobRecord, lazy: bool) -> str:
    state = record.state
    parts = [f'<article class="card" data-status="{escape(state.value)}">']
    media = ""
    for f in record.files:
        if lazy and f.poster:
            # Many cards: a lazy poster image that turns into a player when clicked.
            media += (
                f'<img class="poster" loading="lazy" alt="{escape(record.id)}" '
                f'src="{_rel(f.poster)}" data-video="{_rel(f.path)}" title="play">'
            )
            continue
        poster = f' poster="{_rel(f.poster)}"' if f.poster else ""
        preload = "none" if lazy else "metadata"
        media += f'<video controls preload="{preload}"{poster} src="{_rel(f.path)}"></video>'

    if not media:
        media = f'<div class="placeholder">{escape(state.value)}</div>'
    parts.append(f'<div class="media">{media}</div>')
    parts.append('<div class="body">')
    parts.append(
        f'<div class="head"><span class="id">{escape(record.id)}</span>'
        f'<span class="badge" style="background:{BADGE[state]}">{escape(state.value)}</span></div>'
    )
    prompt = str(record.inputs.get("prompt", ""))
    parts.append(f'<p class="prompt">{escape(prompt)}</p>')
    shots = record.inputs.get("multi_prompt")
    if isinstance(shots, list) and shots:
        items = "".join(
            f"<li><b>{escape(str(s.get('duration', '')))} s</b> {escape(str(s.get('prompt', '')))}</li>"
            for s in shots
            if isinstance(s, dict)
        )
        parts.append(f'<ol class="shots">{items}</ol>')
    gen = record.generation_seconds
    facts = [
        ("row", record.row),
        ("video", f"{record.seconds} s"),
        ("generation", "–" if gen is None else f"{gen:.0f} s"),
        ("est. cost", f"${record.estimated_cost:.2f}"),
        ("request", record.request_id or "–"),
    ]
    if record.attempts > 1:
        facts.append(("attempts", str(record.attempts)))
    parts.append(
        '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
        + "</dl>"
    )
    if record.error and state is not JobState.DONE:
        parts.append(f'<p class="error">{escape(record.error)}</p>')
    if record.changed:
        parts.append('<p class="note">manifest row changed since it was submitted</p>')
    parts.append("</div></article>")
    return "".join(parts)


STYLE = """
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--ink:#1c1f24;--muted:#667085;--line:#e4e7ec}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1b1f25;--ink:#e8eaed;--muted:#9aa3af;--line:#2a3038}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{padding:20px 28px 12px;border-bottom:1px solid var(--line);background:var(--card);position:sticky;top:0;z-index:2}
h1{margin:0 0 6px;font-size:20px}.sub{color:var(--muted);margin:0 0 12px}
.stats{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:12px}.stat{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:6px 12px}
.stat b{display:block;font-size:18px}.stat span{color:var(--muted);font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:6px}.filters button{border:1px solid var(--line);background:var(--card);color:var(--ink);border-radius:999px;padding:4px 12px;cursor:pointer;font:inherit}
.filters button.on{background:var(--ink);color:var(--card)}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px;padding:20px 28px}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;overflow:hidden;display:flex;flex-direction:column;content-visibility:auto;contain-intrinsic-size:auto 420px}
.poster{cursor:pointer}
.card[hidden]{display:none}.media{background:#000;aspect-ratio:16/9;position:relative;overflow:hidden}
.media video,.media img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;display:block}
.media video+video{display:none}
.placeholder{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;color:#9aa3af;text-transform:uppercase;letter-spacing:.1em;font-size:12px}
.body{padding:12px 14px 14px}.head{display:flex;justify-content:space-between;align-items:center;gap:8px}
.id{font-weight:600;font-family:ui-monospace,Menlo,monospace;font-size:13px;overflow-wrap:anywhere}
.badge{color:#fff;border-radius:999px;padding:2px 10px;font-size:12px;white-space:nowrap}
.prompt{margin:8px 0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:9em;overflow:auto}
.shots{margin:0 0 8px;padding-left:20px;color:var(--muted)}.shots b{color:var(--ink)}
.facts{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0;color:var(--muted);font-size:12px}
.facts dd{margin:0;color:var(--ink);overflow-wrap:anywhere}.error{color:#dc2626;margin:8px 0 0;overflow-wrap:anywhere}
.note{color:#d97706;margin:6px 0 0}
"""

SCRIPT = """
document.querySelectorAll('.filters button').forEach(function(b){b.addEventListener('click',function(){
var want=b.dataset.filter;document.querySelectorAll('.filters button').forEach(function(x){x.classList.toggle('on',x===b)});
document.querySelectorAll('.card').forEach(function(c){c.hidden=!(want==='all'||c.dataset.status===want)});});});
document.addEventListener('click',function(e){var img=e.target.closest('img.poster');if(!img)return;
var v=document.createElement('video');v.controls=true;v.autoplay=true;v.poster=img.getAttribute('src');v.src=img.dataset.video;img.replaceWith(v);});
"""


def render_report(records: Sequence[JobRecord], summary: ReportSummary) -> str:
    """The whole report page as a string (pure)."""
    lazy = len(records) > 50
    counts = {k: v for k, v in summary.counts.items() if v}
    total = sum(counts.values())
    wall = "–" if summary.wall_seconds is None else f"{summary.wall_seconds:.0f} s"
    stats = [
        (str(total), "jobs"),
        (str(counts.get("done", 0)), "done"),
        (f"{summary.total_seconds} / {summary.all_seconds} s", "video seconds"),
        (f"${summary.estimated_spend:.2f}", "estimated spend"),
        (wall, "last run wall time"),
    ]
    stats_html = "".join(
        f'<div class="stat"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in stats
    )
    buttons = [f'<button class="on" data-filter="all">All {total}</button>']
    for state in JobState:
        n = counts.get(state.value, 0)
        if n:
            buttons.append(
                f'<button data-filter="{state.value}">{escape(state.value.title())} {n}</button>'
            )
    cards = "\n".join(_card(r, lazy) for r in records if r.in_manifest)
    gone = [r for r in records if not r.in_manifest]
    gone_html = (
        f'<p class="sub">Gone from the manifest: {escape(", ".join(r.id for r in gone))}</p>'
        if gone
        else ""
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(summary.title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(summary.title)}</h1>"
        f'<p class="sub">Generated {escape(summary.generated_at)} by batchgen. '
        "Costs are estimates from published per-second prices.</p>"
        f'<div class="stats">{stats_html}</div><nav class="filters">{"".join(buttons)}</nav>'
        f"{gone_html}</header><main>{cards}</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_report(records: Sequence[JobRecord], summary: ReportSummary, out_dir: Path) -> Path:
    """Write ``out_dir/report.html``; returns its path."""
    path = out_dir / "report.html"
    _write_atomic(path, render_report(records, summary))
    return path
