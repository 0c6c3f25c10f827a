"""The RunComfy Model API client: submit, status, result, cancel.

The one place where HTTP answers and httpx exceptions become batchgen errors (``errors.py``).
Every attempt first waits for the shared ``Throttle``. GETs and cancels are retried with
stamina; the paid submit POST is retried only when it certainly never reached the service,
and otherwise raises ``SubmitUncertain`` (see ``submit``).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal, NoReturn

import httpx
import stamina

from .config import Secret, check_base_url
from .errors import (
    ApiError,
    AuthError,
    CreditError,
    InvalidInput,
    NotFound,
    RateLimited,
    SubmitNotSent,
    SubmitUncertain,
    TransientApiError,
)
from .throttle import Throttle

log = logging.getLogger("batchgen.api")

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
QUEUED = frozenset({"in_queue", "queued", "pending", "waiting", "starting"})
RUNNING = frozenset({"in_progress", "processing", "running"})
TERMINAL = frozenset({"completed", "succeeded", "failed", "cancelled", "canceled", "error"})
AUTH_CODES = frozenset({400004})
CREDIT_CODES = frozenset({400002, 10001})
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class Submission:
    """The service accepted a job."""

    request_id: str


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """A job's status as ``/status`` (or an unfinished ``/result``) reports it."""

    state: Literal["queued", "running", "terminal"]
    raw: str
    queue_position: int | None = None


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The job produced files; ``urls`` are every http(s) URL found in ``output``."""

    urls: tuple[str, ...]
    cost: float | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The generation failed; ``error`` is the service's explanation as text."""

    error: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The job was cancelled before it ran."""


@dataclass(frozen=True, slots=True)
class NotReady:
    """``/result`` answered before the job finished."""

    status: RemoteStatus


Outcome = Succeeded | Failed | Cancelled | NotReady


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_status(data: dict[str, Any], *, job_id: str = "") -> RemoteStatus:
    """The one place a status string becomes a ``RemoteStatus``; unknown ones are errors."""
    raw = str(data.get("status", "")).lower()
    position = data.get("queue_position")
    queue_position = position if isinstance(position, int) else None
    if raw in QUEUED:
        return RemoteStatus("queued", raw, queue_position)
    if raw in RUNNING:
        return RemoteStatus("running", raw)
    if raw in TERMINAL:
        return RemoteStatus("terminal", raw)
    raise ApiError(f"the service reported an unknown status {raw!r}", job_id=job_id)


def collect_urls(value: object) -> tuple[str, ...]:
    """Every http(s) URL in a JSON value, depth first, without duplicates, in order."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            if node.startswith(("https://", "http://")) and node not in found:
                found.append(node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return tuple(found)


def parse_result(data: dict[str, Any], *, job_id: str = "") -> Outcome:
    """The one place a ``/result`` body becomes an ``Outcome``."""
    raw = str(data.get("status", "")).lower()
    if raw == "succeeded" or (raw == "completed" and "output" in data):
        urls = collect_urls(data.get("output"))
        if not urls:
            return Failed("the service reported success but returned no output file")
        cost = data.get("cost")
        return Succeeded(urls, float(cost) if isinstance(cost, int | float) else None)
    if raw in ("failed", "error"):
        error = data.get("error")
        if error in (None, "", {}, []):
            return Failed("generation failed (the service gave no reason)")
        return Failed(error if isinstance(error, str) else json.dumps(error))
    if raw in ("cancelled", "canceled"):
        return Cancelled()
    if raw == "completed":
        outcome = str(data.get("outcome", "")).lower()
        if outcome in ("cancelled", "canceled"):
            return Cancelled()
        return Failed("the service reported completion without an output")
    return NotReady(parse_status(data, job_id=job_id))


def error_message(data: object) -> str:
    """The service's explanation, from whichever field it used."""
    if not isinstance(data, dict):
        return ""
    for key in ("error_message", "message", "error", "detail"):
        value = data.get(key)
        if value not in (None, "", [], {}):
            text = value if isinstance(value, str) else json.dumps(value)
            if key != "detail" and data.get("detail"):
                text += f" ({json.dumps(data['detail'])})"
            return text
    return ""


def raise_for_answer(
    status: int, data: object, headers: httpx.Headers | None, *, job_id: str
) -> NoReturn:
    """Map an error answer (HTTP status, or HTTP 200 carrying ``error_code``) to an exception."""
    code = data.get("error_code") if isinstance(data, dict) else None
    code = code if isinstance(code, int) else None
    said = error_message(data) or f"HTTP {status}"
    kw: dict[str, Any] = {"job_id": job_id, "status": status, "error_code": code}
    if status in (401, 403) or code in AUTH_CODES:
        raise AuthError(
            f"the token was refused ({said}): check RUNCOMFY_API_TOKEN or --token-file; "
            "a regenerated token revokes the old one",
            **kw,
        )
    if status == 402 or code in CREDIT_CODES:
        raise CreditError(f"no credit left on the RunComfy account ({said}): top up", **kw)
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after") if headers else None)
        raise RateLimited(f"rate limited ({said})", retry_after=retry_after, **kw)
    if status == 404:
        raise NotFound(f"not found ({said})", **kw)
    if status in (400, 413, 422):
        detail = data.get("detail") if isinstance(data, dict) else None
        raise InvalidInput(f"the service refused the inputs: {said}", detail=detail, **kw)
    if status == 408 or status >= 500 or code == 500001:
        raise TransientApiError(f"service error ({said})", **kw)
    raise ApiError(f"unexpected answer ({said})", **kw)


def _transient(exc: Exception) -> bool | float:
    """stamina's hook: retry transient errors; for a 429, wait what the service said."""
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else True
    return isinstance(exc, TransientApiError | httpx.TransportError)


class RunComfyClient:
    """Talks to ``base_url`` (https, or http on loopback) with ``token``.

    >>> async with RunComfyClient(url, token, throttle=Throttle(2)) as client:
    ...     submission = await client.submit(model, body, job_id="hero-01")
    """

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        throttle: Throttle,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | None = None,
        get_attempts: int = 6,
        submit_attempts: int = 4,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self._token = token
        self.throttle = throttle
        self._owns_http = http is None
        # No default headers: the Authorization header is added per request, so this client
        # can never leak it to a file host.
        self._http = http or httpx.AsyncClient(timeout=timeout or DEFAULT_TIMEOUT)
        self.get_attempts = get_attempts
        self.submit_attempts = submit_attempts
        self._user_agent = f"batchgen/{version('batchgen')}"

    async def __aenter__(self) -> RunComfyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"RunComfyClient({self.base_url!r}, token=Secret('********'))"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.reveal()}",
            "User-Agent": self._user_agent,
            "Accept": "application/json",
        }

    async def _send(
        self,
        method: str,
        path: str,
        *,
        job_id: str,
        body: object = None,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One attempt: throttle, send, decode, map errors. Transport errors propagate raw."""
        await self.throttle.acquire()
        if before_send is not None:
            before_send()
        started = time.monotonic()
        response = await self._http.request(
            method, self.base_url + path, headers=self._headers(), json=body
        )
        log.info(
            "HTTP %s %s -> %s (%.2f s)",
            method,
            path,
            response.status_code,
            time.monotonic() - started,
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            self.throttle.on_rate_limited(retry_after)
        if response.status_code >= 300:
            raise_for_answer(response.status_code, data, response.headers, job_id=job_id)
        if not isinstance(data, dict):
            raise TransientApiError(
                f"unreadable answer from {method} {path} (HTTP {response.status_code})",
                job_id=job_id,
                status=response.status_code,
            )
        if "error_code" in data:
            raise_for_answer(response.status_code, data, response.headers, job_id=job_id)
        self.throttle.on_success()
        return data

    async def _get(self, path: str, *, job_id: str, method: str = "GET") -> dict[str, Any]:
        """A safe call, retried with backoff on transient errors and 429s."""
        async for attempt in stamina.retry_context(
            on=_transient, attempts=self.get_attempts, wait_initial=0.5, wait_max=15.0
        ):
            with attempt:
                try:
                    return await self._send(method, path, job_id=job_id)
                except httpx.TransportError as exc:
                    raise TransientApiError(
                        f"{method} {path}: {type(exc).__name__}", job_id=job_id
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def submit(
        self,
        model: str,
        body: dict[str, Any],
        *,
        job_id: str,
        before_send: Callable[[], None] | None = None,
    ) -> Submission:
        """Submit a paid job. Never sends it twice unless the first certainly did not arrive.

        ``before_send`` runs right before each attempt leaves, after the throttle let it go
        (the caller commits its intent there, so a run stopped while waiting owes nothing).

        Raises ``SubmitNotSent`` after retrying errors that prove the request never reached the
        service (connection refused, 429, 503), ``SubmitUncertain`` when the
        answer was lost (timeout, reset, 502/504/500, unreadable answer), ``AuthError``,
        ``CreditError``, ``InvalidInput``.
        """
        path = f"/v1/models/{model.strip('/')}"
        last: Exception | None = None
        for attempt in range(1, self.submit_attempts + 1):
            try:
                data = await self._send(
                    "POST", path, job_id=job_id, body=body, before_send=before_send
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = SubmitNotSent(f"could not connect: {type(exc).__name__}", job_id=job_id)
                wait = min(2.0**attempt, 20.0)
            except RateLimited as exc:
                last = SubmitNotSent(str(exc), job_id=job_id, status=429)
                wait = 0.0  # the throttle already holds every request back for Retry-After
            except TransientApiError as exc:
                if exc.status == 503:
                    last = SubmitNotSent(str(exc), job_id=job_id, status=503)
                    wait = min(2.0**attempt, 20.0)
                else:
                    raise SubmitUncertain(
                        f"the answer to the submit was lost ({exc}); the job may exist",
                        job_id=job_id,
                        status=exc.status,
                    ) from exc
            except httpx.TransportError as exc:
                raise SubmitUncertain(
                    f"the connection failed after the submit was sent ({type(exc).__name__});"
                    " the job may exist",
                    job_id=job_id,
                ) from exc
            else:
                request_id = data.get("request_id")
                if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
                    raise SubmitUncertain(
                        "the service accepted the submit without a usable request id "
                        f"({request_id!r})",
                        job_id=job_id,
                    )
                return Submission(request_id)
            if attempt < self.submit_attempts:
                await _sleep(wait)
        assert last is not None
        raise last

    async def status(self, request_id: str, *, job_id: str) -> RemoteStatus:
        """``GET /v1/requests/{id}/status``."""
        data = await self._get(f"/v1/requests/{request_id}/status", job_id=job_id)
        return parse_status(data, job_id=job_id)

    async def result(self, request_id: str, *, job_id: str) -> Outcome:
        """``GET /v1/requests/{id}/result?include_cost=true``."""
        data = await self._get(f"/v1/requests/{request_id}/result?include_cost=true", job_id=job_id)
        return parse_result(data, job_id=job_id)

    async def cancel(self, request_id: str, *, job_id: str) -> str:
        """``POST /v1/requests/{id}/cancel``: ``"cancelled"`` or ``"not_cancellable"``."""
        data = await self._get(f"/v1/requests/{request_id}/cancel", job_id=job_id, method="POST")
        outcome = str(data.get("outcome", "")).lower()
        if outcome in ("cancelled", "canceled"):
            return "cancelled"
        return "not_cancellable"


async def _sleep(seconds: float) -> None:
    # Honours stamina's testing switch, so failure-path tests do not wait.
    if seconds > 0 and not stamina.is_testing():
        await asyncio.sleep(seconds)
