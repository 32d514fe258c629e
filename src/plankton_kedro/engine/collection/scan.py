"""Validate every file of an image collection and build its uint8 image cache.

Plain library code: the source is duck-typed (anything with `iter_files()`, `list_dirs()` and
`skipped`), so folders, archives and test doubles are scanned the same way.
"""

from __future__ import annotations

import gc
import hashlib
import math
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .frame_crop import FrameCrop
from .imaging import ImageDecodeError, load_image
from .layouts import LAYOUTS, SkippedFile, class_of_folder, label_and_split, skip_reason
from .preprocessing import CachePreprocessing, prepare
from .spool import NpySpool

RECORD_DTYPES = {
    "rel_path": str,
    "label": str,
    "official_split": str,
    "part": str,
    "width": "int64",
    "height": "int64",
    "mode": str,
    "bytes": "int64",
    "sha1": str,
    "frame_cropped": bool,  # a scale bar was found and removed (frame_crop)
    "background": "int64",  # grey level of the image's border, as cached (0-255)
    "colour": bool,  # its bands differ (a colour image)
    "bits": "int64",  # bits its brightest raw pixel needs (8 for 8-bit images)
}


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
    excluded: dict[str, int] = field(default_factory=dict)


_Used = tuple[dict[str, Any], np.ndarray]


def scan_images(
    source: FileSource,
    *,
    preprocessing: CachePreprocessing,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    spool_dir: str | Path | None = None,
    layout: str = "imagefolder",
    exclude_classes: Iterable[str] = (),
    parted: bool = False,
    frame_crop: FrameCrop | None = None,
) -> ScanResult:
    """Decode every image of `source` into cache squares as `preprocessing` says, listing each
    file left out.

    `progress` is called after each file with the number of files handled so far. With
    `workers` > 1 files are decoded in that many processes; results and order are the same
    as with one.
    With `spool_dir`, pixels go to a temporary ``.npy`` file there as they are decoded and
    come back memory-mapped, so a collection larger than memory can be ingested.
    `layout` (see LAYOUTS) says where labels and official splits are; images of the classes
    in `exclude_classes` (exact names) are left out and counted per class. `parted`: paths
    start with the name of the part they come from (kept in the `part` column). `frame_crop`:
    remove a scale bar by template matching before padding (see frame_crop).
    """
    excluded_names = set(exclude_classes)
    excluded: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    rejected: list[SkippedFile] = []
    size = preprocessing.cache_size
    spool = NpySpool(spool_dir, size) if spool_dir is not None else None
    in_memory: list[np.ndarray] = []
    decoded = decode_files(
        source.iter_files(),
        preprocessing=preprocessing,
        workers=workers,
        layout=layout,
        parted=parted,
        frame_crop=frame_crop,
    )
    try:
        for count, outcome in enumerate(decoded, 1):
            if isinstance(outcome, SkippedFile):
                rejected.append(outcome)
            elif outcome[0]["label"] in excluded_names:
                excluded[outcome[0]["label"]] = excluded.get(outcome[0]["label"], 0) + 1
            else:
                rows.append(outcome[0])
                if spool is None:
                    in_memory.append(outcome[1])
                else:
                    spool.write(np.ascontiguousarray(outcome[1]).data)
            if progress is not None:
                progress(count)
    except BaseException:
        if spool is not None:  # a broken archive or an interrupt: no half-written spool left
            spool.discard()
        raise
    labels = {row["label"] for row in rows}
    skipped = sorted([*source.skipped, *rejected], key=lambda item: item.path)
    return ScanResult(
        records=_records(rows),
        images=_stack(in_memory, size) if spool is None else spool.mapped(len(rows)),
        skipped=skipped,
        empty_classes=_empty_classes(
            source.list_dirs(), rejected, labels | excluded_names, layout, parted
        ),
        n_files=len(rows) + len(skipped) + sum(excluded.values()),
        excluded=dict(sorted(excluded.items())),
    )


def decode_files(
    files: Iterable[tuple[str, bytes]],
    *,
    preprocessing: CachePreprocessing,
    workers: int = 1,
    layout: str = "imagefolder",
    parted: bool = False,
    frame_crop: FrameCrop | None = None,
) -> Iterator[SkippedFile | _Used]:
    """Examine files one at a time, in order: a (record, pixels) pair or a SkippedFile each.

    Streaming: only a few files are in flight, so collections larger than memory can be
    processed. ``layout="unlabelled"`` (prediction) accepts images in any folder.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' (use one of {', '.join(LAYOUTS)})")
    if preprocessing.cache_size < 1 or workers < 1:
        raise ValueError(
            f"size and workers must be >= 1, got size={preprocessing.cache_size}, workers={workers}"
        )
    examine = partial(
        _examine,
        preprocessing=preprocessing,
        layout=layout,
        parted=parted,
        frame_crop=frame_crop,
    )
    yield from _ordered_map(examine, files, workers)


def _examine(
    item: tuple[str, bytes],
    *,
    preprocessing: CachePreprocessing,
    layout: str = "imagefolder",
    parted: bool = False,
    frame_crop: FrameCrop | None = None,
) -> SkippedFile | _Used:
    """Decode one file into its record and pixels, or say why it is skipped."""
    rel_path, data = item
    part, in_part = rel_path.split("/", 1) if parted else ("", rel_path)
    reason = skip_reason(in_part, layout)
    if reason is not None:
        return SkippedFile(rel_path, reason)
    try:
        img = load_image(data)
        pixels, facts, cropped = prepare(img, preprocessing, frame_crop)
    except ImageDecodeError as exc:
        return SkippedFile(rel_path, str(exc))
    row = {
        "rel_path": rel_path,
        **label_and_split(in_part, layout),
        "part": part,
        "width": img.width,
        "height": img.height,
        "mode": img.mode,
        "bytes": len(data),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        "frame_cropped": cropped,
        "background": facts.background,
        "colour": facts.colour,
        "bits": facts.bits,
    }
    return row, pixels


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """map(fn, items) on `workers` processes, in input order, with few items in flight at once.

    Decoding small images is mostly Python and holds the GIL, so threads do not scale
    (measured: 2 threads 0.9x one); processes do. Items travel in chunks of `CHUNK_FILES` to
    amortise the inter-process traffic, at most `CHUNKS_IN_FLIGHT` per process.
    """
    if workers == 1:
        yield from map(fn, items)
        return
    # Objects that exist before the fork are frozen out of the collector while the workers
    # run: a collection would write to their pages, which parent and workers share
    # copy-on-write, and copy them (a parent holding torch and Kedro has many).
    gc.freeze()
    try:
        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            pending: deque = deque()
            iterator = iter(items)
            while chunk := list(islice(iterator, CHUNK_FILES)):
                pending.append(pool.submit(_map_chunk, fn, chunk))
                if len(pending) >= CHUNKS_IN_FLIGHT * workers:
                    yield from _unpacked(*pending.popleft().result())
            while pending:
                yield from _unpacked(*pending.popleft().result())
    finally:
        gc.unfreeze()


# Files per task sent to a decoding process, and tasks queued per process so that workers
# never wait while the parent writes results (measured best of 16-256 x 2-8 on NDSB).
CHUNK_FILES = 64
CHUNKS_IN_FLIGHT = 4


def _map_chunk(fn: Callable, chunk: list) -> tuple[list, bytes]:
    """``fn`` over a chunk of files (in a worker process). The pixels of the chunk's usable
    files travel back as one byte string, each outcome keeping its array's shape: one buffer
    to pickle instead of an array per file (measured: a third of the transfer's CPU time)."""
    outcomes = [fn(item) for item in chunk]
    pixels = b"".join(o[1] for o in outcomes if not isinstance(o, SkippedFile))
    shapes = [o if isinstance(o, SkippedFile) else (o[0], o[1].shape) for o in outcomes]
    return shapes, pixels


def _unpacked(outcomes: list, pixels: bytes) -> Iterator[SkippedFile | _Used]:
    """A chunk's outcomes as ``fn`` returned them, each array a read-only view of ``pixels``."""
    offset = 0
    for outcome in outcomes:
        if isinstance(outcome, SkippedFile):
            yield outcome
            continue
        row, shape = outcome
        count = math.prod(shape)
        yield row, np.frombuffer(pixels, np.uint8, count, offset).reshape(shape)
        offset += count


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork where the platform has it (workers start in milliseconds and only run PIL and
    hashlib); the platform's default (spawn) elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with fixed columns and dtypes, also when empty."""
    columns = {col: [row[col] for row in rows] for col in RECORD_DTYPES}
    return pd.DataFrame(columns).astype(RECORD_DTYPES)


def _stack(arrays: list[np.ndarray], size: int) -> np.ndarray:
    if not arrays:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    return np.stack(arrays)


def _empty_classes(
    dirs: list[str],
    rejected: list[SkippedFile],
    used: set[str],
    layout: str = "imagefolder",
    parted: bool = False,
) -> list[str]:
    """Class folders (from directories and rejected class files) that kept no usable image."""
    candidates = [(d, False) for d in dirs] + [(r.path, True) for r in rejected]
    classes = set()
    for path, is_file in candidates:
        in_part = "/".join(path.split("/")[1:]) if parted else path
        label = class_of_folder(in_part, layout, is_file=is_file) if in_part else None
        if label is not None:
            classes.add(label)
    return sorted(classes - used)
