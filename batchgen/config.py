"""Run settings: small frozen objects with named defaults, and the API token.

Flow: CLI options -> one ``RunConfig`` -> passed down explicitly. Nothing here is global.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"
DEFAULT_MODEL = "kling/kling-3.0/standard/image-to-video"
TOKEN_ENV_VARS = ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN")
BASE_URL_ENV_VAR = "RUNCOMFY_BASE_URL"


class Secret:
    """A token that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself: only for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def load_token(token_file: Path | None = None, environ: dict[str, str] | None = None) -> Secret:
    """The API token from ``token_file``, else RUNCOMFY_API_TOKEN or RUNCOMFY_TOKEN."""
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {token_file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"token file {token_file} is empty")
        return Secret(value)
    for name in TOKEN_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return Secret(value)
    raise ConfigError(
        "no API token: set RUNCOMFY_API_TOKEN (copy it from your RunComfy profile) "
        "or pass --token-file"
    )


def is_loopback(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """Refuse to send the token anywhere but https, or plain http on loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url.rstrip("/")
    raise ConfigError(
        f"base URL {url!r} is not https: the token is only sent over https (or to loopback)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How hard batchgen may press the service."""

    #: API requests per second, submits, polls and cancels together, shared by the whole run.
    rate: float = 2.0
    #: Remote jobs queued or running at once.
    max_in_flight: int = 8


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class PollPolicy:
    """How often to ask the service about a running job."""

    #: First status check after a submit when nothing has been learnt yet (seconds).
    first: float = 2.0
    #: Never wait longer than this between two checks of one job (seconds).
    cap: float = 30.0
    #: Once some jobs have finished: between checks, wait this fraction of the time the job has
    #: been running (the first check waits until the earliest finish seen so far).
    fraction: float = 0.15
    #: Before any job has finished: the same fraction, larger, to find the generation time fast.
    cold_fraction: float = 0.5
    #: Never check one job more often than this (seconds).
    floor: float = 1.0
    #: Give up waiting for a single job after this long (seconds); it stays in the ledger.
    job_timeout: float = 3600.0


DEFAULT_POLL = PollPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything one ``run`` needs besides the manifest."""

    out_dir: Path
    ledger_path: Path | None = None  # default: out_dir/.batchgen/ledger.sqlite
    base_url: str = DEFAULT_BASE_URL
    limits: Limits = DEFAULT_LIMITS
    poll: PollPolicy = DEFAULT_POLL
    max_spend: float | None = None  # USD; stop submitting before the estimate would pass it
    deadline: float | None = None  # seconds; stop waiting, checkpoint, exit 75
    retry_failed: int = 0  # extra paid attempts per failed generation
    rerender_changed: bool = False
    resubmit_uncertain: bool = False  # retry --uncertain, or on_uncertain: resubmit
    resubmit_failed: bool = False  # retry --failed
    only_ids: frozenset[str] | None = None  # retry restricts the run to these jobs
    max_download_bytes: int = 2 * 1024**3
    http_timeout: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_file(self) -> Path:
        """Where the ledger lives."""
        return self.ledger_path or self.out_dir / ".batchgen" / "ledger.sqlite"
