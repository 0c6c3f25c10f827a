"""Results of a batch, from ledger records: ``results.csv`` and a self-contained ``report.html``.

Both are pure functions of the records (plus a summary) and written atomically. The HTML page
is a contact sheet: one card per job in manifest order with its poster, an inline player,
prompt, status and cost; filters by status; no CDN, fonts or scripts from outside, so the
folder can be zipped and opened anywhere from ``file://``. Everything that comes from a
manifest or the service is escaped; every file path is a URL-quoted relative link.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
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

#: Badge colour of each state (one hue per meaning: green done, red failed, amber uncertain...).
BADGE = {
    JobState.DONE: "#16a34a",
    JobState.SUCCEEDED: "#0891b2",
    JobState.QUEUED: "#7c3aed",
    JobState.RUNNING: "#2563eb",
    JobState.SUBMITTING: "#7c3aed",
    JobState.PENDING: "#64748b",
    JobState.UNCERTAIN: "#d97706",
    JobState.FAILED: "#dc2626",
    JobState.CANCELLED: "#78716c",
}

#: Order of the filter buttons and header counts: what needs attention first after "done".
STATE_ORDER = (
    JobState.DONE,
    JobState.FAILED,
    JobState.UNCERTAIN,
    JobState.PENDING,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.CANCELLED,
)

#: Above this many cards, videos load nothing, not even their poster, until played.
LAZY_AFTER = 50


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """The header of the report: counts per state, seconds, spend, wall time."""

    title: str
    counts: dict[str, int]  # jobs per state value (jobs still in the manifest)
    total_seconds: int  # video seconds of done jobs
    all_seconds: int  # video seconds of every job
    estimated_spend: float  # USD, estimated cost of every submission made (attempts > 0)
    wall_seconds: float | None  # wall time of the last run
    generated_at: str
    extra: dict[str, str] = field(default_factory=dict)  # more header figures, label -> value


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- results.csv ----------------------------------------------------------------------------


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


# ---- report.html ----------------------------------------------------------------------------


def _rel(path: str) -> str:
    """A relative file path as a quoted URL, safe inside a double-quoted attribute."""
    return escape(quote(path.replace(os.sep, "/")), quote=True)


def _duration(seconds: float | None) -> str:
    """``42 s``, ``3 m 05 s``, ``1 h 02 m``; an en dash when unknown."""
    if seconds is None or seconds < 0:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} m"


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def _text(value: Any) -> str:
    return escape("" if value is None else str(value))


def _media(record: JobRecord, lazy: bool) -> str:
    """The players of a job (one per file), or a placeholder saying why there is none."""
    if not record.files:
        label = {
            JobState.FAILED: "no video: failed",
            JobState.UNCERTAIN: "no video: uncertain",
            JobState.CANCELLED: "no video: cancelled",
            JobState.SUCCEEDED: "not downloaded yet",
        }.get(record.state, f"no video yet: {record.state.value}")
        return f'<div class="frame empty"><span>{escape(label)}</span></div>'
    preload = "none" if lazy else "metadata"
    several = len(record.files) > 1
    parts = []
    for number, f in enumerate(record.files, start=1):
        name = f"{record.id} ({number}/{len(record.files)})" if several else record.id
        # Many cards: the player's poster waits for a click (eager posters slow the page).
        poster_name = "data-poster" if lazy else "poster"
        poster_attr = f' {poster_name}="{_rel(f.poster)}"' if f.poster else ""
        # A poster: a lazy image on a play button covers the player until it is clicked.
        cover = (
            f'<button class="play" type="button" aria-label="Play {escape(name, quote=True)}">'
            f'<img loading="lazy" decoding="async" alt="" src="{_rel(f.poster)}">'
            '<span class="icon"></span></button>'
            if f.poster
            else ""
        )
        parts.append(
            '<div class="frame">'
            f'<video controls playsinline preload="{preload}"{poster_attr} src="{_rel(f.path)}">'
            f'<a href="{_rel(f.path)}">{_text(f.path)}</a></video>{cover}</div>'
        )
        if several:
            parts.append(f'<div class="fname">{_text(f.path)}</div>')
    return "".join(parts)


def _shots(record: JobRecord) -> str:
    shots = record.inputs.get("multi_prompt")
    if not isinstance(shots, list) or not shots:
        return ""
    items = []
    for shot in shots:
        if isinstance(shot, dict):
            duration, prompt = shot.get("duration"), shot.get("prompt")
        else:
            duration, prompt = None, shot
        length = "" if duration in (None, "") else f"{_text(duration)} s"
        items.append(f"<li><b>{length}</b><span>{_text(prompt)}</span></li>")
    return f'<ol class="shots">{"".join(items)}</ol>'


def _card(record: JobRecord, lazy: bool) -> str:
    """One job's card."""
    state = record.state.value
    gone = "" if record.in_manifest else ' data-gone="1"'
    gen = record.generation_seconds
    facts = [
        ("Video", f"{record.seconds} s"),
        ("Generation", _duration(gen)),
        ("Est. cost", escape(_money(record.estimated_cost))),
    ]
    request = f"<code>{_text(record.request_id)}</code>" if record.request_id else "–"
    if record.attempts > 1:
        request += f" · {record.attempts} attempts"
    tags = []
    if record.changed:
        tags.append('<span class="tag warn">changed since sent</span>')
    if not record.in_manifest:
        tags.append('<span class="tag">gone from manifest</span>')
    tags_html = f'<div class="tags">{"".join(tags)}</div>' if tags else ""
    error = ""
    if record.error and record.state is not JobState.DONE:
        error = f'<p class="error e-{state}">{_text(record.error)}</p>'
    prompt = record.inputs.get("prompt")
    prompt_html = f'<p class="prompt">{_text(prompt)}</p>' if prompt else ""
    return (
        f'<article class="card s-{state}" data-status="{state}"{gone}>'
        f"{_media(record, lazy)}"
        '<div class="body"><div class="head">'
        f'<div class="who"><h2 class="id">{_text(record.id)}</h2>'
        f'<span class="row">{_text(record.row)}</span></div>'
        f'<span class="badge">{state}</span></div>'
        f"{tags_html}"
        f"{prompt_html}{_shots(record)}{error}"
        '<dl class="facts">'
        + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
        + f'<div class="wide"><dt>Request</dt><dd>{request}</dd></div>'
        + "</dl></div></article>"
    )


def _state_css() -> str:
    return "".join(f".s-{s.value}{{--c:{colour}}}" for s, colour in BADGE.items())


STYLE = """
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--soft:#f9fafb;--accent:#111827}
@media (prefers-color-scheme:dark){:root{--bg:#0d1015;--card:#161a21;--ink:#e5e7eb;--muted:#9ca3af;--line:#262c36;--soft:#1c212a;--accent:#e5e7eb}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;background:var(--bg);color:var(--ink);-webkit-font-smoothing:antialiased}
header{background:var(--card);border-bottom:1px solid var(--line);padding:22px 32px 0}
.top{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:4px 24px}
h1{margin:0;font-size:22px;font-weight:650;letter-spacing:-.01em}
.sub{margin:0;color:var(--muted);font-size:13px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:18px 0 16px}
.stat{background:var(--soft);border:1px solid var(--line);border-radius:12px;padding:10px 14px}
.stat b{display:block;font-size:20px;font-weight:650;font-variant-numeric:tabular-nums;letter-spacing:-.01em}
.stat span{color:var(--muted);font-size:12px}
.bar{display:flex;gap:2px;height:8px;border-radius:99px;overflow:hidden;background:var(--line)}
.bar i{display:block;background:var(--c,var(--muted))}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;padding:10px 0 16px;font-size:13px;color:var(--muted)}
.legend span{display:inline-flex;align-items:center;gap:6px}.legend b{color:var(--ink);font-weight:600;font-variant-numeric:tabular-nums}
.legend i{width:8px;height:8px;border-radius:50%;background:var(--c,var(--muted))}
.filters{position:sticky;top:0;z-index:5;display:flex;flex-wrap:wrap;gap:8px;padding:12px 32px;background:color-mix(in srgb,var(--bg) 88%,transparent);backdrop-filter:blur(8px);border-bottom:1px solid var(--line)}
.filters button{display:inline-flex;align-items:center;gap:7px;border:1px solid var(--line);background:var(--card);color:var(--ink);border-radius:99px;padding:5px 13px;cursor:pointer;font:inherit;font-size:13px}
.filters button:hover{border-color:var(--muted)}
.filters button i{width:8px;height:8px;border-radius:50%;background:var(--c,var(--muted))}
.filters button em{font-style:normal;color:var(--muted);font-variant-numeric:tabular-nums}
.filters button.on{background:var(--accent);border-color:var(--accent);color:var(--card)}
.filters button.on em{color:inherit;opacity:.75}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:20px;padding:24px 32px 48px}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;overflow:hidden;display:flex;flex-direction:column;box-shadow:0 1px 2px rgba(16,24,40,.05);content-visibility:auto;contain-intrinsic-size:auto 460px}
.card[hidden]{display:none}
.frame{position:relative;aspect-ratio:16/9;background:#0b0d10;overflow:hidden}
.frame video,.frame .play,.frame .play img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;display:block}
.frame .play{border:0;padding:0;margin:0;background:#0b0d10;cursor:pointer}
.frame .play .icon{position:absolute;left:50%;top:50%;width:52px;height:52px;margin:-26px 0 0 -26px;border-radius:50%;background:rgba(0,0,0,.55);box-shadow:0 0 0 1px rgba(255,255,255,.25);transition:transform .15s,background .15s}
.frame .play .icon::after{content:"";position:absolute;left:21px;top:16px;border-style:solid;border-width:10px 0 10px 16px;border-color:transparent transparent transparent #fff}
.frame .play:hover .icon,.frame .play:focus-visible .icon{transform:scale(1.08);background:rgba(0,0,0,.75)}
.frame.playing .play{display:none}
.frame.empty{display:flex;align-items:center;justify-content:center;background:repeating-linear-gradient(135deg,color-mix(in srgb,var(--c) 10%,var(--soft)) 0 12px,var(--soft) 12px 24px)}
.frame.empty span{color:var(--c);font-size:12px;font-weight:600;letter-spacing:.08em;text-transform:uppercase}
.fname{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--muted);padding:4px 16px;border-bottom:1px solid var(--line);overflow-wrap:anywhere}
.body{padding:14px 16px 16px;display:flex;flex-direction:column;gap:10px;flex:1}
.head{display:flex;justify-content:space-between;align-items:flex-start;gap:10px}
.who{min-width:0}.row{display:block;color:var(--muted);font-size:12px}
.id{margin:0;font:600 13px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.badge{flex:none;color:var(--c);background:color-mix(in srgb,var(--c) 13%,transparent);border:1px solid color-mix(in srgb,var(--c) 35%,transparent);border-radius:99px;padding:1px 10px;font-size:12px;font-weight:600;text-transform:capitalize}
.tags{display:flex;flex-wrap:wrap;gap:6px}.tag{font-size:11px;border-radius:6px;padding:1px 7px;background:var(--soft);border:1px solid var(--line);color:var(--muted)}
.tag.warn{color:#b45309;border-color:color-mix(in srgb,#d97706 40%,transparent)}
.prompt{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:7.5em;overflow:auto}
.shots{margin:0;padding:0;list-style:none;display:flex;flex-direction:column;gap:4px;font-size:13px;counter-reset:shot}
.shots li{display:flex;gap:8px;padding:6px 8px;border-radius:8px;background:var(--soft);border:1px solid var(--line);counter-increment:shot}
.shots li::before{content:counter(shot);color:var(--muted);font-variant-numeric:tabular-nums}
.shots b{flex:none;font-weight:600;font-variant-numeric:tabular-nums}.shots span{overflow-wrap:anywhere}
.error{margin:0;padding:8px 10px;border-radius:8px;font-size:13px;overflow-wrap:anywhere;white-space:pre-wrap;color:var(--c);background:color-mix(in srgb,var(--c) 9%,transparent);border:1px solid color-mix(in srgb,var(--c) 30%,transparent)}
.facts{margin:auto 0 0;display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:8px 12px;padding-top:10px;border-top:1px solid var(--line);font-size:12px}
.facts div{min-width:0}.facts dt{color:var(--muted);white-space:nowrap}.facts dd{margin:0;font-variant-numeric:tabular-nums;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.facts .wide{grid-column:1/-1}.facts code{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.empty-note{grid-column:1/-1;text-align:center;color:var(--muted);padding:48px 0}
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 32px 32px}
@media (max-width:600px){header{padding:16px 16px 0}.filters{padding:10px 16px}main{padding:16px;gap:14px}}
"""

SCRIPT = """
(function(){var main=document.querySelector('main'),buttons=document.querySelectorAll('.filters button');
function show(want){for(var i=0;i<buttons.length;i++){var b=buttons[i];b.classList.toggle('on',b.dataset.filter===want);b.setAttribute('aria-pressed',b.dataset.filter===want)}
var cards=main.children;for(var j=0;j<cards.length;j++){var c=cards[j];if(!c.dataset.status)continue;
c.hidden=!(want==='all'||(want==='gone'?c.dataset.gone==='1':c.dataset.status===want))}}
document.querySelector('.filters').addEventListener('click',function(e){var b=e.target.closest('button');if(b)show(b.dataset.filter)});
main.addEventListener('click',function(e){var p=e.target.closest('.play');if(!p)return;var f=p.parentNode,v=f.querySelector('video');
f.classList.add('playing');if(v.dataset.poster&&!v.poster)v.poster=v.dataset.poster;v.preload='auto';var r=v.play();if(r&&r.catch)r.catch(function(){});v.focus()});
})();
"""


def _header(records: Sequence[JobRecord], summary: ReportSummary) -> str:
    counts = {k: v for k, v in summary.counts.items() if v}
    total = sum(counts.values())
    done = counts.get(JobState.DONE.value, 0)
    stats = [
        (f"{done:,} / {total:,}", "jobs done"),
        (f"{summary.total_seconds:,} / {summary.all_seconds:,} s", "video seconds, done / all"),
        (_money(summary.estimated_spend), "estimated spend"),
        (_duration(summary.wall_seconds), "last run, wall time"),
    ]
    stats += [(value, label) for label, value in summary.extra.items()]
    stats_html = "".join(
        f'<div class="stat"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in stats
    )
    known = {s.value for s in JobState}
    ordered = [(s.value, counts[s.value]) for s in STATE_ORDER if counts.get(s.value)]
    ordered += [(k, n) for k, n in counts.items() if k not in known]
    bar = "".join(f'<i class="s-{escape(k, quote=True)}" style="flex:{n}"></i>' for k, n in ordered)
    legend = "".join(
        f'<span class="s-{escape(k, quote=True)}"><i></i><b>{n:,}</b> {escape(k)}</span>'
        for k, n in ordered
    )
    return (
        f'<header><div class="top"><h1>{escape(summary.title)}</h1>'
        f'<p class="sub">Generated {escape(summary.generated_at)} by batchgen · costs are '
        "estimates from published per-second prices</p></div>"
        f'<div class="stats">{stats_html}</div>'
        f'<div class="bar" aria-hidden="true">{bar}</div>'
        f'<div class="legend" aria-label="jobs per state">{legend}</div></header>'
    )


def _filters(records: Sequence[JobRecord]) -> str:
    shown = Counter(r.state for r in records)
    buttons = [
        f'<button type="button" class="on" aria-pressed="true" data-filter="all">'
        f"All <em>{len(records):,}</em></button>"
    ]
    for state in STATE_ORDER:
        if shown.get(state):
            buttons.append(
                f'<button type="button" class="s-{state.value}" aria-pressed="false" '
                f'data-filter="{state.value}"><i></i>{state.value.title()} '
                f"<em>{shown[state]:,}</em></button>"
            )
    gone = sum(not r.in_manifest for r in records)
    if gone:
        buttons.append(
            f'<button type="button" aria-pressed="false" data-filter="gone"><i></i>'
            f"Gone from manifest <em>{gone:,}</em></button>"
        )
    return f'<nav class="filters" aria-label="filter by status">{"".join(buttons)}</nav>'


def render_report(records: Sequence[JobRecord], summary: ReportSummary) -> str:
    """The whole report page as a string (pure): header, filters, one card per job in order."""
    lazy = len(records) > LAZY_AFTER
    cards = "\n".join(_card(r, lazy) for r in records)
    if not records:
        cards = '<p class="empty-note">No jobs in this batch yet.</p>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(summary.title)}</title><style>{STYLE}{_state_css()}</style></head>"
        f"<body>{_header(records, summary)}{_filters(records)}<main>{cards}</main>"
        f"<footer>{len(records):,} jobs · files are linked relative to this page</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(records: Sequence[JobRecord], summary: ReportSummary, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` atomically; returns its path."""
    path = out_dir / "report.html"
    _write_atomic(path, render_report(records, summary))
    return path
