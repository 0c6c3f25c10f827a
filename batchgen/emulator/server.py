"""A RunComfy Model API stand-in: the same four endpoints and JSON, real MP4 files, faults.

It imports nothing from the client side of batchgen. Job states are computed lazily from
timestamps (``time.monotonic``): each job waits ``queue_seconds`` and for a free slot under the
account ``concurrency`` cap, then runs for a seeded-random time within ``gen_seconds``.

Endpoints: ``POST /v1/models/{model}``, ``GET /v1/requests/{id}/status``,
``GET /v1/requests/{id}/result``, ``POST /v1/requests/{id}/cancel``, the file host
``GET /files/{id}/{name}`` (no auth, Range supported), and for tests ``GET /_emulator/stats``
and ``POST /_emulator/config``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.utils
import hashlib
import heapq
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .faults import ENDPOINTS, Faults, Script, ScriptBook
from .video import clip_for, image_from_data_uri, tagged

KNOWN_MODELS = frozenset(
    f"kling/kling-3.0/{tier}/image-to-video" for tier in ("standard", "pro", "4k")
)
PRICE = {"standard": (0.084, 0.126), "pro": (0.112, 0.168), "4k": (0.42, 0.42)}
MAX_DATA_URI_BYTES = 6 * 1024 * 1024
FIELDS = {
    "prompt",
    "start_image_url",
    "duration",
    "generate_audio",
    "negative_prompt",
    "cfg_scale",
    "shot_type",
    "multi_prompt",
    "elements",
    "end_image_url",
}


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves."""

    token: str | None = "emulator-token"  # None: any non-empty token is accepted
    gen_seconds: tuple[float, float] = (0.0, 0.0)
    queue_seconds: float = 0.0
    concurrency: int = 0  # account cap on running jobs; 0 = unlimited
    no_credit: bool = False
    output_shape: str = "video"  # "video", "videos" or "mixed"
    big_file_bytes: int = 0  # > 0: every result is a deterministic blob of this size
    faults: Faults = Faults()
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Submission:
    """A submit that created a job on the emulated service."""

    request_id: str
    model: str
    body: dict[str, Any]
    at: float
    outcome: str  # "accepted", or "accepted_then_502" / "accepted_then_dropped"


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the emulator received."""

    method: str
    path: str
    status: int  # 0 when the connection was dropped
    at: float
    had_auth: bool


@dataclass(frozen=True, slots=True)
class ServedFile:
    """A result file, as the emulator serves it."""

    url: str
    sha256: str
    size: int


@dataclass(slots=True)
class EmulatedJob:
    """One job on the emulated service."""

    request_id: str
    model: str
    body: dict[str, Any]
    created_at: float
    started_at: float
    finished_at: float
    fails: bool
    shape: str
    cancelled_at: float | None = None
    files: list[str] = field(default_factory=list)  # file names, once rendered

    def state(self, now: float) -> str:
        """in_queue, in_progress, succeeded, failed or cancelled at ``now``."""
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.started_at:
            return "in_queue"
        if now < self.finished_at:
            return "in_progress"
        return "failed" if self.fails else "succeeded"


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    body = {"error_code": code, "error_message": message, "message": message, **extra}
    return web.json_response(body, status=status)


def validate(body: object) -> list[dict[str, Any]]:
    """Problems with a Kling 3.0 image-to-video body, as a 422 ``detail`` list."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "body must be a JSON object"}]
    problems: list[dict[str, Any]] = []

    def bad(loc: str, msg: str) -> None:
        problems.append({"loc": ["body", loc], "msg": msg})

    for key in body:
        if key not in FIELDS:
            bad(key, "extra fields not permitted")
    if not isinstance(body.get("prompt"), str) or not body.get("prompt"):
        bad("prompt", "field required")
    image = body.get("start_image_url")
    if not isinstance(image, str) or not image.startswith(("https://", "http://", "data:")):
        bad("start_image_url", "field required: an image URL or data URI")
    elif image.startswith("data:"):
        raw = image_from_data_uri(image)
        if raw is None:
            bad("start_image_url", "unreadable data URI")
        elif len(raw) > MAX_DATA_URI_BYTES:
            bad("start_image_url", "data URI larger than 6 MiB")
    duration = body.get("duration", 10)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 3 <= duration <= 15:
        bad("duration", "duration must be an integer from 3 to 15")
    cfg = body.get("cfg_scale", 0.5)
    if not isinstance(cfg, int | float) or isinstance(cfg, bool) or not 0 <= cfg <= 1:
        bad("cfg_scale", "cfg_scale must be a number from 0 to 1")
    if "generate_audio" in body and not isinstance(body["generate_audio"], bool):
        bad("generate_audio", "must be a boolean")
    if body.get("shot_type", "customize") != "customize":
        bad("shot_type", "must be 'customize'")
    shots = body.get("multi_prompt")
    if shots is not None:
        if not isinstance(shots, list) or not all(isinstance(s, dict) for s in shots):
            bad("multi_prompt", "must be a list of {prompt, duration}")
        elif shots and isinstance(duration, int):
            total = sum(
                s.get("duration", 5) for s in shots if isinstance(s.get("duration", 5), int)
            )
            if total != duration:
                bad("multi_prompt", f"shot durations add up to {total}, not duration {duration}")
    elements = body.get("elements")
    if elements is not None and (not isinstance(elements, list) or len(elements) > 3):
        bad("elements", "at most 3 elements")
    return problems


class Emulator:
    """The emulated service, running in a background thread on loopback.

    >>> with Emulator(EmulatorConfig(token="t")) as emulator:
    ...     emulator.url  # "http://127.0.0.1:PORT"
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.url = ""
        self.submissions: list[Submission] = []
        self.requests: list[Hit] = []
        self.served_files: dict[str, list[ServedFile]] = {}
        self.download_auth_violations = 0
        self.jobs: dict[str, EmulatedJob] = {}
        self._rng = random.Random(self.config.seed)
        self._scripts = ScriptBook()
        self._window: collections.deque[float] = collections.deque()
        self._slots: list[float] = []  # min-heap of times at which running jobs free a slot
        self._files: dict[str, bytes] = {}  # "<id>/<name>" -> bytes
        self._big_digest: str | None = None
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving in a background thread; returns when the socket is listening."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        self._runner = runner
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start (unless started) and block until interrupted (``python -m batchgen.emulator``)."""
        if self._thread is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ---- control from tests -----------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force."""
        self.configure(faults=faults)

    def configure(self, **changes: Any) -> None:
        """Change config fields at runtime, e.g. ``configure(no_credit=True)``."""
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)

    def fail_next(
        self, endpoint: str, status: int, *, times: int = 1, retry_after: float | None = None
    ) -> None:
        """Answer the next ``times`` calls of ``endpoint`` with ``status``."""
        with self._lock:
            self._scripts.entries.append(Script(endpoint, times, status, retry_after))

    def drop_next(self, endpoint: str, *, times: int = 1) -> None:
        """Drop the connection of the next ``times`` calls of ``endpoint``."""
        with self._lock:
            self._scripts.entries.append(Script(endpoint, times, None))

    def reset_counters(self) -> None:
        """Forget recorded submissions and requests (jobs stay)."""
        with self._lock:
            self.submissions.clear()
            self.requests.clear()
            self.download_auth_violations = 0

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data."""
        with self._lock:
            return {
                "submissions": [
                    {
                        "request_id": s.request_id,
                        "model": s.model,
                        "prompt": s.body.get("prompt"),
                        "outcome": s.outcome,
                    }
                    for s in self.submissions
                ],
                "requests": len(self.requests),
                "requests_by_status": dict(collections.Counter(h.status for h in self.requests)),
                "served_files": {
                    rid: [dataclasses.asdict(f) for f in files]
                    for rid, files in self.served_files.items()
                },
                "download_auth_violations": self.download_auth_violations,
            }

    # ---- the app ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/models/{model:.+}", self._submit)
        app.router.add_get("/v1/requests/{rid}/status", self._status)
        app.router.add_get("/v1/requests/{rid}/result", self._result)
        app.router.add_post("/v1/requests/{rid}/cancel", self._cancel)
        app.router.add_get("/files/{rid}/{name}", self._file)
        app.router.add_get("/_emulator/stats", self._stats)
        app.router.add_post("/_emulator/config", self._configure)
        return app

    def _hit(self, request: web.Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                Hit(
                    request.method,
                    request.path_qs,
                    status,
                    time.monotonic(),
                    "Authorization" in request.headers,
                )
            )

    def _chance(self, p: float) -> bool:
        with self._lock:
            return p > 0 and self._rng.random() < p

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        self._hit(request, 0)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)

    async def _gate(self, request: web.Request, endpoint: str) -> web.StreamResponse | None:
        """Auth, rate limit, scripted and random faults common to every /v1 call."""
        config = self.config
        faults = config.faults
        auth = request.headers.get("Authorization", "")
        if (
            not auth.startswith("Bearer ")
            or not auth[7:].strip()
            or (config.token is not None and auth[7:].strip() != config.token)
        ):
            return _error(401, 400004, "invalid or missing token")
        if faults.rate_limit > 0:
            now = time.monotonic()
            with self._lock:
                while self._window and self._window[0] < now - 1.0:
                    self._window.popleft()
                limited = len(self._window) >= faults.rate_limit
                if not limited:
                    self._window.append(now)
            if limited:
                return self._too_many(1.0)
        with self._lock:
            script = self._scripts.take(endpoint)
        if script is not None:
            if script.status is None:
                return await self._drop(request)
            if script.status == 429:
                return self._too_many(script.retry_after)
            return _error(script.status, 500001, f"scripted HTTP {script.status}")
        if endpoint in faults.endpoints:
            if faults.slow > 0:
                if request.can_read_body:
                    await request.read()  # the service has the request, whatever the client does
                await asyncio.sleep(faults.slow)
            if self._chance(faults.fail_5xx):
                status = 503 if endpoint == "submit" else 500
                return _error(status, 500001, "internal error, please retry")
            if endpoint != "submit" and self._chance(faults.drop):
                return await self._drop(request)
            if endpoint in ("status", "result") and self._chance(faults.bad_json):
                return web.Response(
                    text='{"request_id": "x", "stat', content_type="application/json"
                )
            if endpoint in ("status", "result") and self._chance(faults.error_code_200):
                return _error(200, 500001, "internal error, please retry")
        return None

    def _too_many(self, retry_after: float | None) -> web.Response:
        headers = {}
        if retry_after is not None:
            if self.config.faults.retry_after_http_date:
                headers["Retry-After"] = email.utils.formatdate(
                    time.time() + retry_after, usegmt=True
                )
            else:
                headers["Retry-After"] = str(max(1, int(round(retry_after))))
        body = {"error_code": 429001, "error_message": "rate limit exceeded"}
        return web.json_response(body, status=429, headers=headers)

    async def _answer(
        self, request: web.Request, endpoint: str, handler: Any
    ) -> web.StreamResponse:
        response = await self._gate(request, endpoint)
        if response is None:
            response = await handler(request)
        if response.status != 499:
            self._hit(request, response.status)
        return response

    # ---- endpoints --------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "submit", self._do_submit)

    async def _do_submit(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"].strip("/")
        if self.config.no_credit:
            return _error(402, 400002, "insufficient balance")
        if model not in KNOWN_MODELS:
            return _error(404, 400001, f"unknown model {model!r}")
        try:
            body = await request.json()
        except ValueError:
            return _error(422, 422001, "body is not JSON", detail=[])
        problems = validate(body)
        if problems:
            return _error(422, 422001, "validation error", detail=problems)
        faults = self.config.faults
        drop = "submit" in faults.endpoints and self._chance(faults.drop)
        if drop and not faults.drop_after_accept:
            return await self._drop(request)
        then_502 = self._chance(faults.accept_then_502)
        outcome = (
            "accepted_then_dropped" if drop else "accepted_then_502" if then_502 else "accepted"
        )
        job = self._create(model, body, outcome)
        if drop:
            return await self._drop(request)
        if then_502:
            return _error(502, 502001, "bad gateway")
        base = self.url
        rid = job.request_id
        return web.json_response(
            {
                "request_id": rid,
                "status_url": f"{base}/v1/requests/{rid}/status",
                "result_url": f"{base}/v1/requests/{rid}/result",
                "cancel_url": f"{base}/v1/requests/{rid}/cancel",
            }
        )

    def _create(self, model: str, body: dict[str, Any], outcome: str) -> EmulatedJob:
        config = self.config
        now = time.monotonic()
        with self._lock:
            rid = "req_" + uuid.UUID(int=self._rng.getrandbits(128)).hex
            low, high = config.gen_seconds
            gen = self._rng.uniform(low, high) if high > low else low
            ready = now + config.queue_seconds
            start = ready
            if config.concurrency > 0:
                while len(self._slots) >= config.concurrency:
                    start = max(ready, heapq.heappop(self._slots))
                heapq.heappush(self._slots, start + gen)
            fails = self._chance(config.faults.fail_generation)
            shape = config.output_shape
            if shape == "mixed":
                shape = "video" if len(self.jobs) % 2 == 0 else "videos"
            job = EmulatedJob(rid, model, body, now, start, start + gen, fails, shape)
            self.jobs[rid] = job
            self.submissions.append(Submission(rid, model, body, now, outcome))
        return job

    def _job(self, request: web.Request) -> EmulatedJob | None:
        with self._lock:
            return self.jobs.get(request.match_info["rid"])

    def _status_body(self, job: EmulatedJob, now: float) -> dict[str, Any]:
        state = job.state(now)
        base = f"{self.url}/v1/requests/{job.request_id}"
        body: dict[str, Any] = {
            "request_id": job.request_id,
            "status": state if state in ("in_queue", "in_progress") else "completed",
            "status_url": f"{base}/status",
            "result_url": f"{base}/result",
        }
        if state == "cancelled":
            body["outcome"] = "cancelled"
        if state == "in_queue":
            with self._lock:
                ahead = sum(
                    1
                    for other in self.jobs.values()
                    if other.cancelled_at is None and now < other.started_at < job.started_at
                )
            body["queue_position"] = ahead + 1
        return body

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "status", self._do_status)

    async def _do_status(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return _error(404, 404001, "request not found or expired")
        return web.json_response(self._status_body(job, time.monotonic()))

    async def _result(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "result", self._do_result)

    async def _do_result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return _error(404, 404001, "request not found or expired")
        now = time.monotonic()
        state = job.state(now)
        body: dict[str, Any] = {"request_id": job.request_id, "status": state}
        if state in ("in_queue", "in_progress"):
            return web.json_response(body)
        created = time.time() - (now - job.created_at)
        body["created_at"] = _iso(created)
        body["finished_at"] = _iso(created + (job.finished_at - job.created_at))
        if state == "failed":
            body["error"] = "model refused the prompt"
        elif state == "succeeded":
            urls = await self._files_for(job)
            body["output"] = {"video": urls[0]} if job.shape == "video" else {"videos": urls}
            if request.query.get("include_cost") == "true":
                body["cost"] = self._cost(job)
        return web.json_response(body)

    def _cost(self, job: EmulatedJob) -> float:
        tier = job.model.split("/")[2] if job.model.count("/") >= 3 else "standard"
        plain, audio = PRICE.get(tier, PRICE["standard"])
        rate = audio if job.body.get("generate_audio", True) else plain
        return round(rate * int(job.body.get("duration", 10)), 4)

    async def _files_for(self, job: EmulatedJob) -> list[str]:
        """Render (once) and register the job's result file; its URLs."""
        if not job.files:
            name = "output.mp4"
            key = f"{job.request_id}/{name}"
            if self.config.big_file_bytes > 0:
                size = self.config.big_file_bytes
                digest = await asyncio.get_running_loop().run_in_executor(None, self._big_sha, size)
            else:
                image = image_from_data_uri(str(job.body.get("start_image_url", "")))
                duration = int(job.body.get("duration", 10))
                clip = await asyncio.get_running_loop().run_in_executor(
                    None, clip_for, image, duration
                )
                data = tagged(clip, job.request_id)
                size, digest = len(data), hashlib.sha256(data).hexdigest()
            with self._lock:
                if not job.files:
                    if self.config.big_file_bytes <= 0:
                        self._files[key] = data
                    job.files.append(name)
                    url = f"{self.url}/files/{key}"
                    self.served_files[job.request_id] = [ServedFile(url, digest, size)]
        return [f"{self.url}/files/{job.request_id}/{name}" for name in job.files]

    def _big_sha(self, size: int) -> str:
        if self._big_digest is None:
            digest = hashlib.sha256()
            for chunk in _blob_chunks(0, size):
                digest.update(chunk)
            self._big_digest = digest.hexdigest()
        return self._big_digest

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "cancel", self._do_cancel)

    async def _do_cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job is None:
            return _error(404, 404001, "request not found or expired")
        now = time.monotonic()
        with self._lock:
            state = job.state(now)
            if state == "in_queue":
                job.cancelled_at = now
                outcome = "cancelled"
            else:
                outcome = "cancelled" if state == "cancelled" else "not_cancellable"
        body = {"request_id": job.request_id, "status": "completed", "outcome": outcome}
        return web.json_response(body, status=202)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            with self._lock:
                self.download_auth_violations += 1
        rid, name = request.match_info["rid"], request.match_info["name"]
        key = f"{rid}/{name}"
        with self._lock:
            data = self._files.get(key)
            job = self.jobs.get(rid)
        big = self.config.big_file_bytes
        if data is None and not (big > 0 and job is not None and job.files):
            self._hit(request, 404)
            return web.Response(status=404, text="no such file")
        size = len(data) if data is not None else big
        start = 0
        range_header = request.headers.get("Range", "")
        if range_header.startswith("bytes=") and range_header[6:].split("-")[0].isdigit():
            start = int(range_header[6:].split("-")[0])
            if start >= size:
                self._hit(request, 416)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206 if start else 200
        response = web.StreamResponse(status=status)
        response.content_type = "video/mp4"
        response.content_length = size - start
        response.headers["Accept-Ranges"] = "bytes"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await response.prepare(request)
        faults = self.config.faults
        cut_at = size
        if self._chance(faults.truncate_download):
            cut_at = start + max(1, (size - start) // 2)
        self._hit(request, status)
        chunks = _slices(data, start, cut_at) if data is not None else _blob_chunks(start, cut_at)
        for chunk in chunks:
            await response.write(chunk)
            if faults.slow_download > 0:
                await asyncio.sleep(len(chunk) / faults.slow_download)
        if cut_at < size:
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _configure(self, request: web.Request) -> web.StreamResponse:
        changes = await request.json()
        faults = changes.pop("faults", None)
        if faults is not None:
            if "endpoints" in faults:
                faults["endpoints"] = frozenset(faults["endpoints"]) & ENDPOINTS
            changes["faults"] = Faults(**faults)
        if "gen_seconds" in changes:
            changes["gen_seconds"] = tuple(changes["gen_seconds"])
        self.configure(**changes)
        return web.json_response({"ok": True})


def _slices(data: bytes, start: int, stop: int, size: int = 256 * 1024) -> list[bytes]:
    return [data[i : min(i + size, stop)] for i in range(start, stop, size)]


_PATTERN = hashlib.sha256(b"batchgen").digest() * 4096  # 128 KiB, deterministic


def _blob_chunks(start: int, stop: int) -> Any:
    """Bytes ``start``..``stop`` of the big deterministic blob, in chunks, never all at once."""
    period = len(_PATTERN)
    position = start
    while position < stop:
        offset = position % period
        chunk = _PATTERN[offset : offset + min(period - offset, stop - position)]
        yield chunk
        position += len(chunk)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def dump(data: object) -> str:
    """JSON for humans."""
    return json.dumps(data, indent=2)
