"""Publish a file or folder only once it is complete: write beside the target, then rename.

Every writer of the project goes through :func:`atomic_path`, so a crash or a kill at any
moment leaves either the previous file or the new one, never a half-written artefact that a
later load would pick up; what remains of the attempt is a ``*.tmp-*`` name that no loader
reads.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
from fsspec import AbstractFileSystem

TEMPORARY_MARK = ".tmp-"


@contextmanager
def atomic_path(
    target: str | os.PathLike[str], fs: AbstractFileSystem | None = None
) -> Iterator[str]:
    """A temporary path beside ``target`` to write (a file or a folder) inside the block.

    On success it is renamed to ``target`` (replacing it); on failure it is removed and
    ``target`` is left as it was. ``fs``: any fsspec filesystem (default: the local disk).
    """
    fs = fs or fsspec.filesystem("file")
    target = os.fspath(target)
    temporary = f"{target}{TEMPORARY_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield temporary
        fs.mv(temporary, target, recursive=fs.isdir(temporary))
    finally:
        if fs.exists(temporary):
            fs.rm(temporary, recursive=True)
    fs.invalidate_cache(target)
