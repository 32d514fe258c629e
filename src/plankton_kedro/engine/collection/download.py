"""Fetch a public data set archive: resumable, SHA-256 verified, atomically put in place.

The transfer goes to ``<destination>.part`` and resumes from it with an HTTP range request,
so an interrupted download of a large archive does not start over. Only a verified file (or,
with no checksum configured, a complete one) is renamed to ``<destination>``; a file that
fails verification is kept as ``<destination>.bad`` so the next call starts afresh. Uses the
standard library only (``urllib``) so it adds no dependency.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from plankton_kedro.engine.errors import DownloadError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]

LOG_INTERVAL_S = 5.0


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large archives need little memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    destination: Path | str,
    *,
    sha256: str | None = None,
    timeout: float = 30.0,
    chunk_size: int = 1 << 20,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` to ``destination`` (verified against ``sha256`` when given).

    An existing ``destination`` is returned without any request when it matches (or no
    checksum is configured). ``progress(bytes_so_far, total_or_None)`` is called after each
    chunk; without it, progress is logged every few seconds. Raises ``DownloadError``.
    """
    dest = Path(destination)
    expected = sha256.strip().lower() if sha256 else None
    if dest.exists():
        return _existing(dest, expected)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _sibling(dest, ".part")
    _fetch(url, dest, part, timeout, chunk_size, progress or _progress_logger(url))
    _install(url, dest, part, expected)
    return dest


def _existing(dest: Path, expected: str | None) -> Path:
    """Reuse a file already in place; refuse (never delete) one that fails verification."""
    if expected is None:
        logger.info("%s already there (no SHA-256 configured to verify it)", dest)
        return dest
    actual = sha256_of(dest)
    if actual != expected:
        raise DownloadError(
            f"{dest} already exists but its SHA-256 {actual} does not match the configured "
            f"{expected}. Delete it to download it again, or correct the configured checksum."
        )
    logger.info("%s already there, verified", dest)
    return dest


def _sibling(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def _fetch(
    url: str, dest: Path, part: Path, timeout: float, chunk_size: int, progress: Progress
) -> None:
    """Bring ``part`` to the full remote content, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, dest, offset, timeout)
    if response is None:
        return
    with response:
        if response.status != 206:
            offset = 0  # the server ignored the range: start over
        total = _total_size(url, response, offset)
        with part.open("ab" if offset else "wb") as sink:
            received = _copy(url, dest, response, sink, offset, chunk_size, total, progress)
    if total is not None and received < total:
        raise _interrupted(url, dest, received, total, "connection closed early")


def _open(url: str, dest: Path, offset: int, timeout: float) -> HTTPResponse | None:
    """The response for the missing bytes; ``None`` when the ``.part`` is already complete."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                _check_complete(url, exc.headers.get("Content-Range"), offset)
                return None
            raise DownloadError(f"HTTP {exc.code} ({exc.reason}) fetching {url}") from exc
    except (OSError, HTTPException) as exc:
        raise DownloadError(
            f"Could not reach {url} ({_reason(exc)}): this machine looks offline or the host is "
            f"unreachable. Alternatively place a manually downloaded file at {dest} "
            "(it will be verified)."
        ) from exc


def _check_complete(url: str, content_range: str | None, offset: int) -> None:
    """A 416 means the ``.part`` holds everything, unless the server reports another size."""
    size = (content_range or "").rpartition("/")[2]
    if size.isdigit() and int(size) != offset:
        raise DownloadError(
            f"The partial download of {url} ({offset} bytes) does not match the remote "
            f"size ({size} bytes); delete the .part file and run again."
        )


def _total_size(url: str, response: HTTPResponse, offset: int) -> int | None:
    """Full size of the remote file, from ``Content-Range`` (206) or ``Content-Length``."""
    if offset:
        span, _, size = response.headers.get("Content-Range", "").rpartition("/")
        if not span.startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url} answered the range request from {offset} with {span!r}")
        return int(size) if size.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _copy(
    url: str,
    dest: Path,
    response: HTTPResponse,
    sink: BinaryIO,
    received: int,
    chunk_size: int,
    total: int | None,
    progress: Progress,
) -> int:
    """Stream the body into ``sink``; returns the bytes the ``.part`` then holds."""
    while True:
        try:
            chunk = response.read(chunk_size)
        except (OSError, HTTPException) as exc:
            raise _interrupted(url, dest, received, total, _reason(exc)) from exc
        if not chunk:
            return received
        sink.write(chunk)
        received += len(chunk)
        progress(received, total)


def _interrupted(
    url: str, dest: Path, received: int, total: int | None, reason: str
) -> DownloadError:
    """The error for a transfer cut short; the ``.part`` keeps what arrived for resuming."""
    return DownloadError(
        f"Download of {url} was interrupted after {received} of {total or '?'} bytes "
        f"({reason}); run again to resume, or place a manually downloaded file at {dest} "
        "(it will be verified)."
    )


def _reason(exc: BaseException) -> str:
    """A short cause for messages (``URLError`` wraps the socket error in ``reason``)."""
    return str(getattr(exc, "reason", None) or exc) or type(exc).__name__


def _install(url: str, dest: Path, part: Path, expected: str | None) -> None:
    """Verify the finished ``.part`` and rename it into place (or aside as ``.bad``)."""
    actual = sha256_of(part)
    if expected is None:
        logger.warning(
            "%s is unverified (no SHA-256 configured); its SHA-256 is %s, pin it to verify it",
            dest,
            actual,
        )
    elif actual != expected:
        bad = _sibling(dest, ".bad")
        os.replace(part, bad)
        raise DownloadError(
            f"Checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}. "
            f"The file was kept as {bad}; the next run downloads it afresh."
        )
    os.replace(part, dest)
    logger.info("Downloaded %s", dest)


def _progress_logger(url: str) -> Progress:
    """A progress callback that logs at most every ``LOG_INTERVAL_S`` seconds."""
    last = time.monotonic()

    def report(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= LOG_INTERVAL_S:
            last = now
            share = f" ({100 * done / total:.0f}%)" if total else ""
            logger.info("%s: %.1f MB%s", url, done / 1e6, share)

    return report
