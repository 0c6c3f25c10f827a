"""The emulator speaks RunComfy's endpoints and JSON, serves real MP4s, and injects faults."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import av
import httpx
import pytest

from batchgen.emulator import Emulator, Faults

from .conftest import ROOT, TOKEN

MODEL = "kling/kling-3.0/standard/image-to-video"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"prompt": "a lighthouse", "start_image_url": "https://x.example/a.png", "duration": 3}


def submit(
    emulator: Emulator, body: dict[str, object] | None = None, **kw: object
) -> httpx.Response:
    """POST a job."""
    return httpx.post(
        f"{emulator.url}/v1/models/{MODEL}",
        json=body or BODY,
        headers=AUTH,
        timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def get(emulator: Emulator, path: str) -> httpx.Response:
    """GET an API path."""
    return httpx.get(f"{emulator.url}{path}", headers=AUTH, timeout=10)


def test_submit_status_result_download(emulator: Emulator) -> None:
    """The happy path, with the documented JSON shapes and a playable MP4 of the right length."""
    answer = submit(emulator).json()
    rid = answer["request_id"]
    assert answer["status_url"] == f"{emulator.url}/v1/requests/{rid}/status"
    assert answer["cancel_url"].endswith(f"/v1/requests/{rid}/cancel")
    status = get(emulator, f"/v1/requests/{rid}/status").json()
    assert status["status"] == "completed"
    result = get(emulator, f"/v1/requests/{rid}/result?include_cost=true").json()
    assert result["status"] == "succeeded"
    assert result["cost"] == pytest.approx(0.126 * 3)
    assert result["created_at"].endswith("Z")
    url = result["output"]["video"]
    data = httpx.get(url).content
    assert hashlib.sha256(data).hexdigest() == emulator.served_files[rid][0].sha256
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.width == 320
        assert float(container.duration or 0) / av.time_base == pytest.approx(3.0, abs=0.2)


def test_clip_is_made_from_the_start_image(emulator: Emulator) -> None:
    """A data: URI start image becomes the clip's first frame (not the stock picture)."""
    image = (ROOT / "samples" / "lighthouse.png").read_bytes()
    body = {**BODY, "start_image_url": "data:image/png;base64," + base64.b64encode(image).decode()}
    rid = submit(emulator, body).json()["request_id"]
    url = get(emulator, f"/v1/requests/{rid}/result").json()["output"]["video"]
    with av.open(io.BytesIO(httpx.get(url).content)) as container:
        frame = next(container.decode(video=0)).to_image()
    assert frame.size == (320, 180)
    r, g, b = frame.getpixel((5, 5))
    assert r > b  # the sample's warm sky, not the stock clip's blue


def test_videos_list_shape(make_emulator: Callable[..., Emulator]) -> None:
    """output_shape=videos answers with a list."""
    emulator = make_emulator(output_shape="videos")
    rid = submit(emulator).json()["request_id"]
    output = get(emulator, f"/v1/requests/{rid}/result").json()["output"]
    assert isinstance(output["videos"], list) and len(output["videos"]) == 1


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer nope"}, 401)]
)
def test_wrong_token_is_401(emulator: Emulator, headers: dict[str, str], status: int) -> None:
    """A missing or wrong token gets 401 with error_code 400004."""
    answer = httpx.post(f"{emulator.url}/v1/models/{MODEL}", json=BODY, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error_code"] == 400004


def test_no_credit_is_402(make_emulator: Callable[..., Emulator]) -> None:
    """No credit: 402 with error_code 400002, and no job."""
    emulator = make_emulator(no_credit=True)
    answer = submit(emulator)
    assert (answer.status_code, answer.json()["error_code"]) == (402, 400002)
    assert emulator.submissions == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**BODY, "duration": 20}, "duration"),
        ({**BODY, "multi_prompt": [{"prompt": "a", "duration": 4}]}, "multi_prompt"),
        ({**BODY, "colour": "red"}, "colour"),
        ({"start_image_url": "https://x.example/a.png"}, "prompt"),
    ],
)
def test_invalid_input_is_422_with_detail(
    emulator: Emulator, body: dict[str, object], loc: str
) -> None:
    """Schema violations get 422 with a detail array naming the field."""
    answer = submit(emulator, body)
    assert answer.status_code == 422
    assert any(loc in d["loc"] for d in answer.json()["detail"])


def test_unknown_ids_and_models_are_404(emulator: Emulator) -> None:
    """Unknown request id: 404001; unknown model: 400001."""
    assert get(emulator, "/v1/requests/req_nope/status").json()["error_code"] == 404001
    answer = httpx.post(f"{emulator.url}/v1/models/acme/x", json=BODY, headers=AUTH)
    assert (answer.status_code, answer.json()["error_code"]) == (404, 400001)


def test_queue_positions_and_cancel(make_emulator: Callable[..., Emulator]) -> None:
    """Under a concurrency cap extra jobs queue with positions; only queued ones cancel."""
    emulator = make_emulator(concurrency=1, gen_seconds=(30.0, 30.0))
    rids = [submit(emulator).json()["request_id"] for _ in range(3)]
    states = [get(emulator, f"/v1/requests/{r}/status").json() for r in rids]
    assert [s["status"] for s in states] == ["in_progress", "in_queue", "in_queue"]
    assert [s.get("queue_position") for s in states] == [None, 1, 2]
    cancel = [
        httpx.post(f"{emulator.url}/v1/requests/{r}/cancel", headers=AUTH).json()["outcome"]
        for r in rids[:2]
    ]
    assert cancel == ["not_cancellable", "cancelled"]
    assert get(emulator, f"/v1/requests/{rids[1]}/result").json()["status"] == "cancelled"


def test_scripted_429_has_retry_after(emulator: Emulator) -> None:
    """fail_next(429) answers with Retry-After; then the service works again."""
    emulator.fail_next("submit", 429, times=1, retry_after=2)
    first = submit(emulator)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert submit(emulator).status_code == 200


def test_server_rate_limit(make_emulator: Callable[..., Emulator]) -> None:
    """Over the per-second limit, 429 with Retry-After."""
    emulator = make_emulator(faults=Faults(rate_limit=3))
    codes = [get(emulator, "/v1/requests/req_x/status").status_code for _ in range(6)]
    assert 429 in codes and codes[:3] == [404, 404, 404]


def test_http_date_retry_after(make_emulator: Callable[..., Emulator]) -> None:
    """Retry-After can be sent as an HTTP date."""
    emulator = make_emulator(faults=Faults(rate_limit=1, retry_after_http_date=True))
    get(emulator, "/v1/requests/req_x/status")
    answer = get(emulator, "/v1/requests/req_x/status")
    assert answer.status_code == 429 and answer.headers["Retry-After"].endswith("GMT")


def test_dropped_connection(emulator: Emulator) -> None:
    """drop_next closes the connection without an answer."""
    emulator.drop_next("status")
    with pytest.raises(httpx.TransportError):
        get(emulator, "/v1/requests/req_x/status")


def test_faults_on_polls(make_emulator: Callable[..., Emulator]) -> None:
    """bad JSON and HTTP 200 with error_code are produced on GETs."""
    emulator = make_emulator(faults=Faults(bad_json=1.0))
    answer = get(emulator, "/v1/requests/req_x/status")
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    emulator.set_faults(Faults(error_code_200=1.0))
    answer = get(emulator, "/v1/requests/req_x/status")
    assert answer.status_code == 200 and answer.json()["error_code"] == 500001


def test_accept_then_502_creates_the_job(make_emulator: Callable[..., Emulator]) -> None:
    """502 after the job was accepted: the client sees an error, the service has the job."""
    emulator = make_emulator(faults=Faults(accept_then_502=1.0))
    assert submit(emulator).status_code == 502
    assert len(emulator.submissions) == 1


def test_5xx_on_submit_creates_no_job(make_emulator: Callable[..., Emulator]) -> None:
    """A 503 on submit says the job was not taken."""
    emulator = make_emulator(faults=Faults(fail_5xx=1.0))
    answer = submit(emulator)
    assert answer.status_code == 503 and answer.json()["error_code"] == 500001
    assert emulator.submissions == []


def test_failed_generation(make_emulator: Callable[..., Emulator]) -> None:
    """fail_generation ends the job failed with the service's error."""
    emulator = make_emulator(faults=Faults(fail_generation=1.0))
    rid = submit(emulator).json()["request_id"]
    result = get(emulator, f"/v1/requests/{rid}/result").json()
    assert result == {**result, "status": "failed", "error": "model refused the prompt"}


def test_truncated_download_then_range(make_emulator: Callable[..., Emulator]) -> None:
    """A truncated download closes early; a Range request gets the rest (206)."""
    emulator = make_emulator(faults=Faults(truncate_download=1.0))
    rid = submit(emulator).json()["request_id"]
    url = get(emulator, f"/v1/requests/{rid}/result").json()["output"]["video"]
    size = emulator.served_files[rid][0].size
    with pytest.raises(httpx.TransportError):
        httpx.get(url)
    emulator.set_faults(Faults())
    tail = httpx.get(url, headers={"Range": f"bytes={size - 100}-"})
    assert tail.status_code == 206 and len(tail.content) == 100
    assert tail.headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
    assert emulator.download_auth_violations == 0
    httpx.get(url, headers=AUTH)
    assert emulator.download_auth_violations == 1


def test_generation_time_and_stats(make_emulator: Callable[..., Emulator]) -> None:
    """Jobs run for gen_seconds; the stats endpoint reports what happened."""
    emulator = make_emulator(gen_seconds=(0.5, 0.5))
    rid = submit(emulator).json()["request_id"]
    assert get(emulator, f"/v1/requests/{rid}/result").json()["status"] == "in_progress"
    time.sleep(0.6)
    assert get(emulator, f"/v1/requests/{rid}/result").json()["status"] == "succeeded"
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    assert stats["submissions"][0]["request_id"] == rid
    assert rid in stats["served_files"]
    httpx.post(f"{emulator.url}/_emulator/config", json={"no_credit": True})
    assert submit(emulator).status_code == 402


def test_command_line_starts_a_server(tmp_path: Path) -> None:
    """`python -m batchgen.emulator --port 0` serves until stopped."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgen.emulator", "--port", "0", "--token", "t"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = line.split()[3]
        answer = httpx.post(
            f"{url}/v1/models/{MODEL}", json=BODY, headers={"Authorization": "Bearer t"}
        )
        assert answer.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
