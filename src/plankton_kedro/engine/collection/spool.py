"""Decoded pixels spooled to disk as they come, so a collection larger than memory can be
ingested: the spool file is a finished ``.npy`` cache, returned memory-mapped."""

from __future__ import annotations

import logging
import struct
import tempfile
import weakref
from pathlib import Path

import numpy as np

from plankton_kedro.engine.atomic import orphaned, process_tag

logger = logging.getLogger(__name__)

SPOOL_PREFIX = ".spool-"


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


class NpySpool:
    """Pixels appended to a ``.spool-*.npy`` file in `folder`, returned memory-mapped.

    The file is a finished ``.npy`` cache: ImageCacheDataset saves it with a hard link
    instead of a copy (no second pass over the pixels, no second copy on disk, which for a
    0.5 TB cache matters). Its name is removed once the memory map is released, or at exit.
    """

    HEADER_BYTES = 128  # fixed, so the final count can be written over the placeholder
    WRITE_BUFFER = 1 << 20  # one write call per ~64 images at 73 px, not one per image

    def __init__(self, folder: str | Path, size: int):
        self.size = size
        remove_orphaned_spools(folder)
        self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in `mapped`)
            dir=folder,
            prefix=f"{SPOOL_PREFIX}{process_tag()}-",
            suffix=".npy",
            delete=False,
            buffering=self.WRITE_BUFFER,
        )
        self._cleanup = weakref.finalize(self, _remove, self.file.name)
        self.file.write(self._header(0))

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def mapped(self, count: int) -> np.ndarray:
        """The pixels as a read-only memory map of the finished ``.npy`` file."""
        self.file.seek(0)
        self.file.write(self._header(count))
        self.file.close()
        self._cleanup.detach()
        if count == 0:
            _remove(self.file.name)
            return np.empty((0, self.size, self.size, 3), dtype=np.uint8)
        images = np.load(self.file.name, mmap_mode="r", allow_pickle=False)
        weakref.finalize(images, _remove, self.file.name)
        return images

    def discard(self) -> None:
        """Close and delete the spool of a scan that failed."""
        self.file.close()
        self._cleanup()

    def _header(self, count: int) -> bytes:
        shape = (count, self.size, self.size, 3)
        header = repr({"descr": "|u1", "fortran_order": False, "shape": shape})
        body = header.ljust(self.HEADER_BYTES - 11).encode("latin1") + b"\n"
        return np.lib.format.magic(1, 0) + struct.pack("<H", len(body)) + body


def remove_orphaned_spools(folder: str | Path) -> None:
    """Delete the spool files of processes of this host that no longer run (a killed
    ingestion: the spool grows with its progress, hundreds of GB on WHOI), with a log line."""
    removed = []
    for path in Path(folder).glob(f"{SPOOL_PREFIX}*.npy"):
        if orphaned(path.name, SPOOL_PREFIX):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        logger.info(
            "%s: removed %d spool file(s) of interrupted ingestions (%s)",
            folder,
            len(removed),
            ", ".join(removed[:3]),
        )
