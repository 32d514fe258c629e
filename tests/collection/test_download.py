"""``download``: fresh, resumed, range-less, corrupt, cached and failing transfers.

Every test talks to a tiny HTTP server on 127.0.0.1 started here, never to the network.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from plankton_kedro.engine.collection.download import DownloadError, download, sha256_of

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT_AFTER = 100_000


class FileServer(ThreadingHTTPServer):
    """Serves ``PAYLOAD`` at ``/data.bin`` with switches for range support and early cuts."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PayloadHandler)
        self.ranges = True
        self.fail_after: int | None = None
        self.requests: list[dict[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/data.bin"


class PayloadHandler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        requested = self.headers.get("Range")
        self.server.requests.append({"path": self.path, "range": requested})
        if self.path != "/data.bin":
            self.send_error(404)
            return
        start = int(requested[6:-1]) if requested and self.server.ranges else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(start)

    def _send_body(self, start: int) -> None:
        """Status, headers and body from ``start``; cut after ``fail_after`` bytes if set."""
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.fail_after
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = cut is not None

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server():
    httpd = FileServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "archive.zip"


def _sibling(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def test_fresh_download_verifies_and_renames(server: FileServer, dest: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = download(
        server.url, dest, sha256=PAYLOAD_SHA, chunk_size=64_000, progress=lambda *a: seen.append(a)
    )
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not _sibling(dest, ".part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert {total for _, total in seen} == {len(PAYLOAD)}


def test_interrupted_transfer_resumes_with_range(server: FileServer, dest: Path) -> None:
    server.fail_after = CUT_AFTER
    with pytest.raises(DownloadError, match="interrupted"):
        download(server.url, dest, sha256=PAYLOAD_SHA)
    assert _sibling(dest, ".part").stat().st_size == CUT_AFTER
    assert not dest.exists()

    server.fail_after = None
    download(server.url, dest, sha256=PAYLOAD_SHA)
    assert server.requests[-1]["range"] == f"bytes={CUT_AFTER}-"
    assert sha256_of(dest) == PAYLOAD_SHA


def test_server_without_ranges_restarts_from_zero(server: FileServer, dest: Path) -> None:
    server.fail_after = CUT_AFTER
    with pytest.raises(DownloadError):
        download(server.url, dest, sha256=PAYLOAD_SHA)

    server.fail_after, server.ranges = None, False
    download(server.url, dest, sha256=PAYLOAD_SHA)
    assert server.requests[-1]["range"] == f"bytes={CUT_AFTER}-"
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_is_kept_when_range_is_unsatisfiable(server: FileServer, dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    _sibling(dest, ".part").write_bytes(PAYLOAD)
    download(server.url, dest, sha256=PAYLOAD_SHA)
    assert server.requests[-1]["range"] == f"bytes={len(PAYLOAD)}-"
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_keeps_bad_file(server: FileServer, dest: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(DownloadError) as caught:
        download(server.url, dest, sha256=wrong)
    assert wrong in str(caught.value)
    assert PAYLOAD_SHA in str(caught.value)
    assert _sibling(dest, ".bad").read_bytes() == PAYLOAD
    assert not dest.exists()
    assert not _sibling(dest, ".part").exists()


def test_verified_file_makes_no_request(server: FileServer, dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    assert download(server.url, dest, sha256=PAYLOAD_SHA.upper()) == dest
    assert server.requests == []


def test_existing_file_with_wrong_checksum_is_refused_not_deleted(
    server: FileServer, dest: Path
) -> None:
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"something else")
    with pytest.raises(DownloadError, match="does not match"):
        download(server.url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == b"something else"
    assert server.requests == []


def test_http_error_names_status(server: FileServer, dest: Path) -> None:
    url = server.url.replace("data.bin", "missing.bin")
    with pytest.raises(DownloadError, match="404") as caught:
        download(url, dest)
    assert url in str(caught.value)


def test_unreachable_host_suggests_manual_placement(dest: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="offline or the host is unreachable") as caught:
        download(f"http://127.0.0.1:{port}/data.bin", dest, timeout=5)
    assert f"manually downloaded file at {dest}" in str(caught.value)
