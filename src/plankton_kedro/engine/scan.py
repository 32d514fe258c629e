"""Validate every file of an image collection and build its uint8 image cache.

Plain library code: the source is duck-typed (anything with `iter_files()`, `list_dirs()` and
`skipped`), so folders, archives and test doubles are scanned the same way.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from posixpath import splitext
from typing import Any, Protocol

import numpy as np
import pandas as pd

from plankton_kedro.engine.imaging import ImageDecodeError, load_image, pad_and_resize, to_rgb

IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
}
# Lower-cased names of files that operating systems drop into folders.
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
RECORD_DTYPES = {
    "rel_path": str,
    "label": str,
    "width": "int64",
    "height": "int64",
    "mode": str,
    "bytes": "int64",
    "sha1": str,
}


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the data set, and why."""

    path: str
    reason: str


class FileSource(Protocol):
    """What `scan_images` needs from a collection of files."""

    skipped: list[SkippedFile]

    def iter_files(self) -> Iterator[tuple[str, bytes]]: ...

    def list_dirs(self) -> list[str]: ...


@dataclass
class ScanResult:
    """Usable images (records + pixels, row-aligned) and everything that was left out."""

    records: pd.DataFrame
    images: np.ndarray
    skipped: list[SkippedFile]
    empty_classes: list[str]
    n_files: int


_Used = tuple[dict[str, Any], np.ndarray]


def scan_images(
    source: FileSource,
    *,
    size: int,
    fill: int = 255,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    spool_dir: str | Path | None = None,
) -> ScanResult:
    """Decode every image of `source` into (size, size, 3) uint8, listing each file left out.

    `progress` is called after each file with the number of files handled so far. With
    `workers` > 1 files are decoded on threads; results and order are the same as with one.
    With `spool_dir`, pixels go to an anonymous temporary file there as they are decoded and
    come back memory-mapped, so a collection larger than memory can be ingested.
    """
    rows: list[dict[str, Any]] = []
    rejected: list[SkippedFile] = []
    # the returned memory map keeps the (already unlinked) file open: no context manager
    spool = tempfile.TemporaryFile(dir=spool_dir) if spool_dir is not None else None  # noqa: SIM115
    in_memory: list[np.ndarray] = []
    decoded = decode_files(source.iter_files(), size=size, fill=fill, workers=workers)
    for count, outcome in enumerate(decoded, 1):
        if isinstance(outcome, SkippedFile):
            rejected.append(outcome)
        else:
            rows.append(outcome[0])
            if spool is None:
                in_memory.append(outcome[1])
            else:
                spool.write(np.ascontiguousarray(outcome[1]).tobytes())
        if progress is not None:
            progress(count)
    labels = {row["label"] for row in rows}
    skipped = sorted([*source.skipped, *rejected], key=lambda item: item.path)
    return ScanResult(
        records=_records(rows),
        images=_stack(in_memory, size) if spool is None else _mapped(spool, len(rows), size),
        skipped=skipped,
        empty_classes=_empty_classes(source.list_dirs(), rejected, labels),
        n_files=len(rows) + len(skipped),
    )


def _mapped(spool, count: int, size: int) -> np.ndarray:
    """The spooled pixels as a read-only memory map (the file vanishes when it is released)."""
    spool.flush()
    if count == 0:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    return np.memmap(spool, dtype=np.uint8, mode="r", shape=(count, size, size, 3))


def decode_files(
    files: Iterable[tuple[str, bytes]],
    *,
    size: int,
    fill: int = 255,
    workers: int = 1,
    labelled: bool = True,
) -> Iterator[SkippedFile | _Used]:
    """Examine files one at a time, in order: a (record, pixels) pair or a SkippedFile each.

    Streaming: only a few files are in flight, so collections larger than memory can be
    processed. ``labelled=False`` (prediction) accepts images outside class folders.
    """
    if size < 1 or workers < 1:
        raise ValueError(f"size and workers must be >= 1, got size={size}, workers={workers}")
    examine = partial(_examine, size=size, fill=fill, labelled=labelled)
    yield from _ordered_map(examine, files, workers)


def _skip_reason(rel_path: str, labelled: bool = True) -> str | None:
    """Why a file cannot be an image of a class, judged from its path alone; None if it may be."""
    name = rel_path.rsplit("/", 1)[-1]
    if name.lower() in SYSTEM_FILES:
        return "not an image file (system file)"
    extension = splitext(name)[1].lower()
    if not extension:
        return "not an image file (no extension)"
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image file (extension '{extension}')"
    if labelled and "/" not in rel_path:
        return "not inside a class folder"
    return None


def _examine(
    item: tuple[str, bytes], *, size: int, fill: int, labelled: bool = True
) -> SkippedFile | _Used:
    """Decode one file into its record and pixels, or say why it is skipped."""
    rel_path, data = item
    reason = _skip_reason(rel_path, labelled)
    if reason is not None:
        return SkippedFile(rel_path, reason)
    try:
        img = load_image(data)
        pixels = pad_and_resize(to_rgb(img, fill=fill), size, fill)
    except ImageDecodeError as exc:
        return SkippedFile(rel_path, str(exc))
    row = {
        "rel_path": rel_path,
        "label": rel_path.split("/", 1)[0] if labelled else "",
        "width": img.width,
        "height": img.height,
        "mode": img.mode,
        "bytes": len(data),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
    }
    return row, pixels


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """map(fn, items) on `workers` threads, in input order, with few items in flight at once."""
    if workers == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with fixed columns and dtypes, also when empty."""
    columns = {col: [row[col] for row in rows] for col in RECORD_DTYPES}
    return pd.DataFrame(columns).astype(RECORD_DTYPES)


def _stack(arrays: list[np.ndarray], size: int) -> np.ndarray:
    if not arrays:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    return np.stack(arrays)


def _empty_classes(dirs: list[str], rejected: list[SkippedFile], used: set[str]) -> list[str]:
    """Class folders (from directories and rejected class files) that kept no usable image."""
    classes = {d.split("/", 1)[0] for d in dirs}
    classes |= {s.path.split("/", 1)[0] for s in rejected if "/" in s.path}
    return sorted(classes - used)
