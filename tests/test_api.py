"""The RunComfy client: parsing, error mapping, and the submit rule (never pay twice).

HTTP behaviour is driven through ``httpx.MockTransport`` with one small handler per scenario.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import stamina

from batchgen.api import (
    Cancelled,
    Failed,
    NotReady,
    RunComfyClient,
    Succeeded,
    collect_urls,
    parse_result,
    parse_retry_after,
    parse_status,
)
from batchgen.config import Secret
from batchgen.errors import (
    ApiError,
    AuthError,
    ConfigError,
    CreditError,
    InvalidInput,
    NotFound,
    SubmitNotSent,
    SubmitUncertain,
    TransientApiError,
)
from batchgen.throttle import Throttle

TOKEN = "tok-SECRET-api-test"
MODEL = "kling/kling-3.0/standard/image-to-video"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_waiting() -> Iterator[None]:
    """stamina retries without sleeping."""
    stamina.set_testing(True, attempts=4)
    yield
    stamina.set_testing(False)


def client(handler: Handler) -> RunComfyClient:
    """A client whose HTTP goes to ``handler``."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RunComfyClient(
        "https://model-api.runcomfy.net", Secret(TOKEN), throttle=Throttle(1000), http=http
    )


def ok_submit(request: httpx.Request) -> httpx.Response:
    """A service that accepts every submit."""
    return httpx.Response(200, json={"request_id": "req_1", "status_url": "x"})


# ---- pure parsing -------------------------------------------------------------------------


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After is read as seconds or as an HTTP date."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("in_queue", "queued"),
        ("pending", "queued"),
        ("in_progress", "running"),
        ("completed", "terminal"),
        ("failed", "terminal"),
        ("canceled", "terminal"),
    ],
)
def test_status_values(status: str, state: str) -> None:
    """Every status the official clients know maps to queued, running or terminal."""
    assert parse_status({"status": status, "queue_position": 3}).state == state


def test_unknown_status_is_an_error() -> None:
    """An unknown status raises instead of being guessed."""
    with pytest.raises(ApiError, match="unknown status 'exploded'"):
        parse_status({"status": "exploded"})


def test_result_shapes() -> None:
    """Both output shapes and nested outputs give every URL, once, in order."""
    video = parse_result({"status": "succeeded", "output": {"video": "https://f/a.mp4"}})
    videos = parse_result(
        {
            "status": "succeeded",
            "output": {"videos": ["https://f/a.mp4", "https://f/b.mp4"]},
            "cost": 0.42,
        }
    )
    assert video == Succeeded(("https://f/a.mp4",))
    assert videos == Succeeded(("https://f/a.mp4", "https://f/b.mp4"), 0.42)
    nested = {"a": [{"b": "https://x/1"}, "no", "https://x/1"], "c": {"d": "http://x/2"}}
    assert collect_urls(nested) == ("https://x/1", "http://x/2")


def test_result_failures_and_cancel() -> None:
    """Failed keeps the service's error (any JSON); cancelled and unfinished are told apart."""
    assert parse_result({"status": "failed", "error": "model refused the prompt"}) == Failed(
        "model refused the prompt"
    )
    assert "NSFW" in parse_result({"status": "failed", "error": {"code": "NSFW"}}).error  # type: ignore[union-attr]
    assert parse_result({"status": "failed"}) == Failed(
        "generation failed (the service gave no reason)"
    )
    assert parse_result({"status": "cancelled"}) == Cancelled()
    assert parse_result({"status": "completed", "outcome": "cancelled"}) == Cancelled()
    assert isinstance(parse_result({"status": "in_progress"}), NotReady)
    assert isinstance(parse_result({"status": "succeeded", "output": {}}), Failed)


# ---- submit: the paid call ----------------------------------------------------------------


async def test_submit_sends_model_path_and_bearer() -> None:
    """The model id goes unencoded into the path; the token only in the Authorization header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok_submit(request)

    async with client(handler) as api:
        submission = await api.submit(MODEL, {"prompt": "a"}, job_id="j")
    assert submission.request_id == "req_1"
    assert seen[0].url.path == f"/v1/models/{MODEL}"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen[0].content) == {"prompt": "a"}


async def test_refused_connection_is_retried_then_not_sent() -> None:
    """Connection refused: certainly not sent, so retried; in the end SubmitNotSent."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with client(handler) as api:
        with pytest.raises(SubmitNotSent):
            await api.submit(MODEL, {}, job_id="j")
    assert calls == 4


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
        lambda r: (_ for _ in ()).throw(httpx.RemoteProtocolError("reset", request=r)),
        lambda r: httpx.Response(502),
        lambda r: httpx.Response(504),
        lambda r: httpx.Response(500, json={"error_message": "boom"}),
        lambda r: httpx.Response(200, text="{not json"),
        lambda r: httpx.Response(200, json={"status_url": "x"}),
    ],
    ids=["read-timeout", "reset", "502", "504", "500", "bad-json", "no-request-id"],
)
async def test_lost_answers_are_uncertain_and_sent_once(
    failure: Callable[[httpx.Request], httpx.Response],
) -> None:
    """A submit whose answer was lost raises SubmitUncertain after exactly one POST."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return failure(request)

    async with client(handler) as api:
        with pytest.raises(SubmitUncertain):
            await api.submit(MODEL, {}, job_id="j")
    assert calls == 1


async def test_429_and_503_are_retried_then_accepted() -> None:
    """429 (with Retry-After) and 503 mean not taken: retried, then accepted once."""
    answers = [
        httpx.Response(429, headers={"Retry-After": "0"}, json={"error_message": "slow down"}),
        httpx.Response(503, json={"error_code": 500001}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else ok_submit(request)

    async with client(handler) as api:
        assert (await api.submit(MODEL, {}, job_id="j")).request_id == "req_1"
    assert answers == []


@pytest.mark.parametrize(
    ("response", "error", "words"),
    [
        (httpx.Response(401, json={"error_code": 400004}), AuthError, "token"),
        (httpx.Response(403), AuthError, "token"),
        (httpx.Response(402, json={"message": "no money"}), CreditError, "credit"),
        (httpx.Response(400, json={"error_code": 400002}), CreditError, "credit"),
        (httpx.Response(200, json={"error_code": 400004}), AuthError, "token"),
        (
            httpx.Response(422, json={"error_message": "bad", "detail": [{"loc": ["duration"]}]}),
            InvalidInput,
            "duration",
        ),
    ],
    ids=["401", "403", "402", "400002", "200-with-400004", "422"],
)
async def test_permanent_answers(
    response: httpx.Response, error: type[Exception], words: str
) -> None:
    """Auth, credit and input errors are mapped, named, never retried."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return response

    async with client(handler) as api:
        with pytest.raises(error) as info:
            await api.submit(MODEL, {}, job_id="hero-1")
    assert calls == 1
    assert words in str(info.value).lower()
    assert "hero-1" in str(info.value)
    assert TOKEN not in str(info.value)


# ---- GETs: safe to retry ------------------------------------------------------------------


async def test_polls_retry_transient_answers() -> None:
    """5xx, resets, bad JSON and 200-with-error_code on a GET are retried."""
    answers: list[Callable[[httpx.Request], httpx.Response]] = [
        lambda r: httpx.Response(500),
        lambda r: (_ for _ in ()).throw(httpx.ReadError("reset", request=r)),
        lambda r: httpx.Response(200, text="{oops"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)(request)
        return httpx.Response(200, json={"status": "in_progress"})

    async with client(handler) as api:
        status = await api.status("req_1", job_id="j")
    assert status.state == "running"


async def test_polls_give_up_after_attempts() -> None:
    """A GET that keeps failing ends in TransientApiError, not a hang."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error_code": 500001, "error_message": "internal"})

    async with client(handler) as api:
        with pytest.raises(TransientApiError):
            await api.result("req_1", job_id="j")


async def test_unknown_request_is_not_found() -> None:
    """404 on a poll means the request expired or never existed."""
    async with client(lambda r: httpx.Response(404, json={"error_code": 404001})) as api:
        with pytest.raises(NotFound):
            await api.status("req_x", job_id="j")


async def test_cancel_outcomes() -> None:
    """Cancel reports cancelled or not_cancellable."""
    outcomes = iter(["cancelled", "not_cancellable"])

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path.endswith("/cancel")
        return httpx.Response(202, json={"status": "completed", "outcome": next(outcomes)})

    async with client(handler) as api:
        assert await api.cancel("req_1", job_id="j") == "cancelled"
        assert await api.cancel("req_2", job_id="j") == "not_cancellable"


def test_token_only_over_https_or_loopback() -> None:
    """http:// is refused unless the host is loopback; the client's repr hides the token."""
    with pytest.raises(ConfigError):
        RunComfyClient("http://model-api.example.com", Secret(TOKEN), throttle=Throttle(1))
    api = RunComfyClient("http://127.0.0.1:8787", Secret(TOKEN), throttle=Throttle(1))
    assert TOKEN not in repr(api)
    assert TOKEN not in repr(Secret(TOKEN)) and TOKEN not in str(Secret(TOKEN))
