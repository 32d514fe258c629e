"""Publish a file or folder only once it is complete: write beside the target, then rename.

Every writer of the project goes through :func:`atomic_path`, so a crash or a kill at any
moment leaves either the previous file or the new one, never a half-written artefact that a
later load would pick up; what remains of the attempt is a ``*.tmp-<host>_<pid>-*`` name
that no loader reads, and that :func:`remove_orphaned_temporaries` deletes once its process is
gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    temporary = f"{target}{TEMPORARY_MARK}{process_tag()}-{uuid.uuid4().hex[:8]}"
    try:
        yield temporary
        fs.mv(temporary, target, recursive=fs.isdir(temporary))
    finally:
        if fs.exists(temporary):
            fs.rm(temporary, recursive=True)
    fs.invalidate_cache(target)


def process_tag() -> str:
    """``<host>_<pid>``: which process a temporary name belongs to (hosts may share a disk)."""
    return f"{_host()}_{os.getpid()}"


def orphaned(name: str, prefix: str) -> bool:
    """Whether ``name`` (``…<prefix><host>_<pid>-…``) belongs to a process of this host that
    no longer runs."""
    tag = name.split(prefix, 1)[1] if prefix in name else ""
    host, _, rest = tag.rpartition("_")
    pid = rest.split("-", 1)[0]
    return host == _host() and pid.isdigit() and not _alive(int(pid))


def remove_orphaned_temporaries(root: str | os.PathLike[str]) -> list[str]:
    """Delete the ``*.tmp-*`` files and folders under ``root`` that killed processes of this
    host left; the paths removed (relative to ``root``)."""
    root = Path(root)
    removed = []
    for folder, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if TEMPORARY_MARK in name and orphaned(name, TEMPORARY_MARK):
                path = Path(folder) / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    dirnames.remove(name)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path.relative_to(root).as_posix())
    return removed


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
