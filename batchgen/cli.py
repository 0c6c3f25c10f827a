"""The ``batchgen`` command: a thin click layer over ``batchgen.batch``.

Each command parses options, builds a ``RunConfig``, calls one library function and maps
errors to exit codes: 0 all done, 1 some failed or uncertain, 2 bad manifest or usage,
3 authentication or credit, 75 incomplete (interrupted, locked, deadline, service unavailable).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from . import __version__
from .batch import (
    EXIT_AUTH_OR_CREDIT,
    EXIT_INCOMPLETE,
    EXIT_USAGE,
    RunSummary,
    batch_status,
    cancel_batch,
    plan_batch,
    report_batch,
    run_batch,
)
from .config import (
    BASE_URL_ENV_VAR,
    DEFAULT_BASE_URL,
    DEFAULT_LIMITS,
    Limits,
    RunConfig,
    Secret,
    check_base_url,
    load_token,
)
from .errors import (
    BatchgenError,
    ConfigError,
    LedgerError,
    LedgerLocked,
    LedgerUnavailable,
    ManifestError,
)
from .ledger import JobState
from .scheduler import JobEvent

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn BatchgenError into a one-paragraph message and its exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            click.echo(f"{len(exc.issues)} problem(s) in the manifest; nothing was sent:", err=True)
            for issue in exc.issues:
                click.echo(f"  {issue}", err=True)
            sys.exit(EXIT_USAGE)
        except (LedgerLocked, LedgerUnavailable) as exc:
            _fail(str(exc), EXIT_INCOMPLETE)
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
        except LedgerError as exc:
            _fail(str(exc), EXIT_USAGE)
        except BatchgenError as exc:
            _fail(f"{type(exc).__name__}: {exc}", EXIT_INCOMPLETE)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchgen")
def cli() -> None:
    """Turn a prompt sheet into finished videos on RunComfy's Model API.

    Validate with `plan`, render with `run` (safe to repeat: it continues where it stopped),
    inspect with `status`, and resubmit failures with `retry`.
    """


def _manifest_options(func: F) -> F:
    func = click.option(
        "--allow-unknown-model",
        is_flag=True,
        help="Pass the fields of a model batchgen does not know through, with a warning.",
    )(func)
    func = click.option(
        "--model", default=None, help="Model id for a CSV/XLSX sheet (default: Kling 3.0 standard)."
    )(func)
    return func


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Batch folder to compare.")
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path), help="Ledger file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_manifest_options
@handle_errors
def plan(
    manifest: Path,
    out_dir: Path | None,
    ledger_path: Path | None,
    as_json: bool,
    model: str | None,
    allow_unknown_model: bool,
) -> None:
    """Validate MANIFEST and show what a run would do and cost. Sends nothing."""
    report = plan_batch(
        manifest,
        out_dir,
        model=model,
        allow_unknown_model=allow_unknown_model,
        ledger_path=ledger_path,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"{report.manifest}: {report.jobs} jobs, model {report.model}")
    click.echo(f"  video seconds       {report.video_seconds}")
    click.echo(f"  estimated cost      ${report.estimated_cost_usd:.2f}  ({report.price_note})")
    if out_dir is not None or ledger_path is not None:
        click.echo(f"  new / not submitted {report.new}")
        click.echo(f"  already done        {report.done}")
        click.echo(f"  in flight           {report.in_flight}")
        click.echo(f"  failed              {report.failed}")
        click.echo(f"  uncertain           {report.uncertain}")
        click.echo(f"  changed since sent  {report.changed}")
        click.echo(f"  gone from manifest  {report.disappeared}")
    click.echo(
        f"  a run would submit  {report.to_submit} jobs, estimated ${report.to_submit_cost_usd:.2f}"
    )


def _run_options(func: F) -> F:
    options = [
        click.option(
            "--out",
            "out_dir",
            required=True,
            type=click.Path(path_type=Path),
            help="Output folder: videos, sidecars, results.csv, report.html, the ledger.",
        ),
        click.option(
            "--ledger",
            "ledger_path",
            type=click.Path(path_type=Path),
            help="Ledger file [default: OUT/.batchgen/ledger.sqlite].",
        ),
        click.option(
            "--rate",
            type=click.FloatRange(min=0.01),
            default=DEFAULT_LIMITS.rate,
            show_default=True,
            help="API requests per second, all endpoints together, for the whole run.",
        ),
        click.option(
            "--max-in-flight",
            type=click.IntRange(min=1),
            default=DEFAULT_LIMITS.max_in_flight,
            show_default=True,
            help="Remote jobs queued or running at once.",
        ),
        click.option(
            "--base-url",
            envvar=BASE_URL_ENV_VAR,
            default=DEFAULT_BASE_URL,
            show_default=True,
            help=f"RunComfy Model API base URL (also ${BASE_URL_ENV_VAR}).",
        ),
        click.option(
            "--token-file",
            type=click.Path(path_type=Path),
            help="Read the API token from this file [default: $RUNCOMFY_API_TOKEN].",
        ),
        click.option(
            "--max-spend",
            type=click.FloatRange(min=0),
            help="USD: stop submitting before this run's estimated spend would pass it.",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=0),
            help="Seconds: then stop waiting, checkpoint, exit 75 (running jobs resume later).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=60.0,
            show_default=True,
            help="Seconds to wait for one HTTP answer; a lost submit answer makes a job uncertain.",
        ),
        click.option(
            "--retry-failed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Resubmit a failed generation up to N times (each try is paid).",
        ),
        click.option(
            "--rerender-changed",
            is_flag=True,
            help="Resubmit jobs whose manifest row changed after they were submitted.",
        ),
        click.option(
            "--emulator",
            "use_emulator",
            is_flag=True,
            help="Start a local RunComfy emulator and run against it (demo, trials).",
        ),
        click.option("--quiet", "-q", is_flag=True, help="Only the summary and errors."),
        click.option("--verbose", "-v", is_flag=True, help="Log every API request."),
    ]
    for option in reversed(options):
        func = option(func)
    return _manifest_options(func)


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@_run_options
@handle_errors
def run(manifest: Path, **options: Any) -> None:
    """Render MANIFEST into --out. Run it again to continue; a finished batch is left alone."""
    _run_command(manifest, options, command="run")


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--failed", is_flag=True, help="Resubmit failed and cancelled jobs.")
@click.option("--uncertain", is_flag=True, help="Resubmit uncertain jobs (may pay twice).")
@_run_options
@handle_errors
def retry(manifest: Path, failed: bool, uncertain: bool, **options: Any) -> None:
    """Resubmit exactly the failed and/or uncertain jobs of a batch (both when neither is given)."""
    if not failed and not uncertain:
        failed = uncertain = True
    _run_command(manifest, options, command="retry", failed=failed, uncertain=uncertain)


def _run_command(
    manifest: Path,
    options: dict[str, Any],
    *,
    command: str,
    failed: bool = False,
    uncertain: bool = False,
) -> None:
    _setup_logging(options["verbose"], options["quiet"])
    with _maybe_emulator(options["use_emulator"]) as emulated:
        if emulated is not None:
            base_url, token = emulated
        else:
            base_url = check_base_url(options["base_url"])
            token = load_token(options["token_file"])
        out_dir: Path = options["out_dir"]
        only: frozenset[str] | None = None
        if command == "retry":
            only = _retry_ids(out_dir, options["ledger_path"], failed, uncertain)
        config = RunConfig(
            out_dir=out_dir,
            ledger_path=options["ledger_path"],
            base_url=base_url,
            limits=Limits(rate=options["rate"], max_in_flight=options["max_in_flight"]),
            max_spend=options["max_spend"],
            deadline=options["deadline"],
            retry_failed=options["retry_failed"],
            rerender_changed=options["rerender_changed"],
            resubmit_failed=failed,
            resubmit_uncertain=uncertain,
            only_ids=only,
            http_timeout=options["timeout"],
        )
        with _progress(quiet=options["quiet"]) as progress:
            summary = asyncio.run(
                run_batch(
                    manifest,
                    config,
                    token=token,
                    model=options["model"],
                    allow_unknown_model=options["allow_unknown_model"],
                    on_event=progress,
                    on_start=progress.start,
                    command=command,
                )
            )
    _print_summary(summary, out_dir)
    sys.exit(summary.exit_code)


def _retry_ids(
    out_dir: Path, ledger_path: Path | None, failed: bool, uncertain: bool
) -> frozenset[str]:
    status = batch_status(out_dir, ledger_path=ledger_path)
    ids: set[str] = set()
    if failed:
        ids.update(j["id"] for j in status["failed"])
    if uncertain:
        ids.update(j["id"] for j in status["uncertain"])
    return frozenset(ids)


@contextlib.contextmanager
def _maybe_emulator(enabled: bool) -> Iterator[tuple[str, Secret] | None]:
    if not enabled:
        yield None
        return
    from .emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(token="emulator-token", gen_seconds=(2.0, 5.0))
    with Emulator(config) as emulator:
        click.echo(f"Emulator running at {emulator.url} (no real service is called)", err=True)
        yield emulator.url, Secret("emulator-token")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if not quiet else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)


class _Progress:
    """What a person watching sees while a batch runs: a tqdm bar on a terminal (jobs settled
    of jobs to do, with submitted, running, done and failed counts), one line per state change
    otherwise (cron logs), nothing with --quiet."""

    SETTLED = frozenset({JobState.DONE, JobState.FAILED, JobState.UNCERTAIN, JobState.CANCELLED})

    def __init__(self, *, quiet: bool, terminal: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm[Any] | None = None
        if not quiet and terminal:
            self.bar = tqdm(desc="jobs", unit="job", file=sys.stderr, dynamic_ncols=True)
        self.latest: dict[str, JobState] = {}
        self.states: Counter[JobState] = Counter()  # of ``latest``, kept up to date per event
        self.submitted = 0

    def start(self, total: int) -> None:
        """The run has work for ``total`` jobs."""
        if self.bar is not None:
            self.bar.reset(total=total)

    def __call__(self, event: JobEvent) -> None:
        if self.quiet:
            return
        if self.bar is None:
            detail = f" {event.detail}" if event.detail else ""
            click.echo(f"{event.job_id} ({event.row}): {event.state.value}{detail}", err=True)
            return
        before = self.latest.get(event.job_id)
        self.latest[event.job_id] = event.state
        if before is not None:
            self.states[before] -= 1
        self.states[event.state] += 1
        if event.state is JobState.QUEUED and before is not JobState.QUEUED:
            self.submitted += 1
        if event.state in self.SETTLED and before not in self.SETTLED:
            self.bar.update(1)
        states = self.states
        failed = sum(states[s] for s in (JobState.FAILED, JobState.UNCERTAIN, JobState.CANCELLED))
        counts = {
            "submitted": self.submitted,
            "running": states[JobState.RUNNING],
            "done": states[JobState.DONE],
            "failed": failed,
        }
        self.bar.set_postfix(counts, refresh=True)

    def close(self) -> None:
        """Leave the bar's last state on the screen."""
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _progress(*, quiet: bool) -> Iterator[_Progress]:
    progress = _Progress(quiet=quiet, terminal=sys.stderr.isatty())
    try:
        yield progress
    finally:
        progress.close()


def _print_summary(summary: RunSummary, out_dir: Path) -> None:
    click.echo("")
    click.echo(f"batch {out_dir}: {summary.jobs} jobs")
    for state in JobState:
        n = summary.counts.get(state.value, 0)
        if n:
            click.echo(f"  {state.value:<11} {n}")
    click.echo(f"  submitted this run {summary.submitted}, est. ${summary.run_spend:.2f}")
    click.echo(f"  est. spend, whole batch ${summary.total_spend:.2f}")
    if summary.sync is not None:
        if summary.sync.changed:
            click.echo(
                f"  changed since submitted (not re-rendered; --rerender-changed): "
                f"{', '.join(summary.sync.changed)}"
            )
        if summary.sync.disappeared:
            click.echo(f"  gone from the manifest: {', '.join(summary.sync.disappeared)}")
    for record in summary.problems:
        label = "not downloaded" if record.state is JobState.SUCCEEDED else record.state.value
        click.echo(f"  {label}: {record.id} ({record.row}): {record.error}")
    if not summary.api_calls:
        click.echo("  nothing to do: no API call made")
    if summary.message:
        click.echo(f"Stopped: {summary.message}", err=True)
    if summary.exit_code == EXIT_AUTH_OR_CREDIT:
        click.echo(
            "Nothing more was submitted; the ledger is intact. Fix it and run again.", err=True
        )
    click.echo(f"  results: {out_dir / 'results.csv'}  report: {out_dir / 'report.html'}")


@cli.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path), help="Ledger file.")
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON document.")
@handle_errors
def status(out_dir: Path, ledger_path: Path | None, as_json: bool) -> None:
    """Counts per state, failed and uncertain jobs with reasons, estimated spend so far."""
    doc = batch_status(out_dir, ledger_path=ledger_path)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"batch {out_dir}: {doc['jobs']} jobs, est. spend ${doc['estimated_spend_usd']:.2f}")
    for state, n in doc["counts"].items():
        if n:
            click.echo(f"  {state:<11} {n}")
    for key in ("failed", "uncertain", "not_downloaded"):
        for job in doc[key]:
            click.echo(f"  {key}: {job['id']} ({job['row']}): {job['error']}")
    if doc["changed"]:
        click.echo(f"  changed since submitted: {', '.join(doc['changed'])}")
    if doc["disappeared"]:
        click.echo(f"  gone from the manifest: {', '.join(doc['disappeared'])}")
    if doc["running_now"]:
        click.echo(f"  a run is going on now: pid {doc['running_now']['pid']}")


@cli.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path), help="Ledger file.")
@click.option("--base-url", envvar=BASE_URL_ENV_VAR, default=DEFAULT_BASE_URL, show_default=True)
@click.option("--token-file", type=click.Path(path_type=Path), help="API token file.")
@handle_errors
def cancel(out_dir: Path, ledger_path: Path | None, base_url: str, token_file: Path | None) -> None:
    """Cancel every queued remote request of the batch in OUT_DIR; running ones finish."""
    results = asyncio.run(
        cancel_batch(
            out_dir,
            token=load_token(token_file),
            base_url=check_base_url(base_url),
            ledger_path=ledger_path,
        )
    )
    if not results:
        click.echo("nothing in flight: no request to cancel")
    for result in results:
        click.echo(f"{result.job_id} {result.request_id}: {result.outcome}")
    report_batch(out_dir, ledger_path=ledger_path)


@cli.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path), help="Ledger file.")
@handle_errors
def report(out_dir: Path, ledger_path: Path | None) -> None:
    """Rewrite OUT_DIR/results.csv and OUT_DIR/report.html from the ledger."""
    path = report_batch(out_dir, ledger_path=ledger_path)
    click.echo(f"wrote {path} and {out_dir / 'report.html'}")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Start the RunComfy emulator on loopback: --host, --port, fault options (see --help)."""
    from .emulator.__main__ import main as emulator_main

    sys.exit(emulator_main(list(ctx.args)))


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    cli()
