"""Downloads against a real file server on loopback: resume, verify, never leak auth."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import stamina

from batchgen.download import download
from batchgen.errors import DownloadError

DATA = bytes(range(256)) * 4096  # 1 MiB


class FileServer:
    """Serves DATA at /file; can cut the first responses short; records requests."""

    def __init__(self) -> None:
        self.cuts = 0
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(dict(self.headers))
                if self.path != "/file":
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                body = DATA[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
                self.end_headers()
                if server.cuts > 0:
                    server.cuts -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A file server on loopback."""
    srv = FileServer()
    yield srv
    srv.httpd.shutdown()


@pytest.fixture(autouse=True)
def no_waiting() -> Iterator[None]:
    """Retries without sleeping."""
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


async def test_full_download_is_verified(server: FileServer, tmp_path: Path) -> None:
    """The file lands under its final name with the right size and sha256, no .part left."""
    async with httpx.AsyncClient() as http:
        got = await download(http, f"{server.url}/file", tmp_path / "a.mp4", job_id="j")
    assert got.size == len(DATA)
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()
    assert (tmp_path / "a.mp4").read_bytes() == DATA
    assert not list(tmp_path.glob("*.part"))
    assert all("Authorization" not in r for r in server.requests)


async def test_cut_download_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    """A connection cut twice is resumed with Range requests, and the result is intact."""
    server.cuts = 2
    async with httpx.AsyncClient() as http:
        got = await download(http, f"{server.url}/file", tmp_path / "a.mp4", job_id="j")
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()
    assert [r.get("Range") for r in server.requests][1:] != [None, None]
    assert any(r.get("Range", "").startswith("bytes=") for r in server.requests)


async def test_existing_verified_file_is_not_fetched(server: FileServer, tmp_path: Path) -> None:
    """A file already there with the recorded sha256 costs no request."""
    dest = tmp_path / "a.mp4"
    dest.write_bytes(DATA)
    async with httpx.AsyncClient() as http:
        got = await download(
            http,
            f"{server.url}/file",
            dest,
            job_id="j",
            expected_sha256=hashlib.sha256(DATA).hexdigest(),
        )
    assert got.size == len(DATA)
    assert server.requests == []


async def test_size_cap(server: FileServer, tmp_path: Path) -> None:
    """A file over the cap is refused."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadError, match="cap"):
            await download(
                http, f"{server.url}/file", tmp_path / "a.mp4", job_id="j", max_bytes=1000
            )


async def test_missing_file_is_a_clear_error(server: FileServer, tmp_path: Path) -> None:
    """An expired URL (404) names the job and says so."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadError, match="job j: .*HTTP 404"):
            await download(http, f"{server.url}/gone", tmp_path / "a.mp4", job_id="j")


async def test_non_http_url_is_refused(tmp_path: Path) -> None:
    """Only http(s) URLs are fetched."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(DownloadError, match="non-http"):
            await download(http, "file:///etc/passwd", tmp_path / "a.mp4", job_id="j")
