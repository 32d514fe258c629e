"""A raw image collection: a folder or archive, or several merged into one (WHOI's yearly
archives), read lazily in sorted path order.

:func:`open_collection` turns the user's settings (path or glob, layout, root, official split,
frame crop) into an :class:`ImageSource` or :class:`MergedImageSource`, what ingestion and
prediction read. Odd members (macOS resource forks, repeated paths, unsafe or non-regular
entries) are refused and listed in ``skipped``, never read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import pandas as pd

from plankton_kedro.engine.errors import CollectionError

from . import archives
from .frame_crop import FrameCrop
from .layouts import LAYOUTS, SYSTEM_FILES, SkippedFile, is_resource_fork
from .splits import read_split_lists, read_split_table, split_from_lists

_FORK = "macOS resource fork"
_DUPLICATE = "duplicate path, skipped"


@dataclass
class _Index:
    """What a collection holds: files (sorted, top folder stripped), directories and refusals."""

    files: list[tuple[str, Any]]  # (relative path, how the kind reads it)
    dirs: list[str]
    refused: list[SkippedFile]
    top: str | None


DEFAULT_MAX_FILE_MB = 64.0  # larger than any plankton image; bounds memory per file read


class ImageSource:
    """A folder or archive of images. Read-only, lazy.

    The listing is made on first use and cached; `top_folder` and `list_dirs()` trigger it
    (for a compressed tar that is one decompression pass, iteration is a second one).
    With `root`, only files under that sub-folder (after the top folder) belong to the
    collection; the others are counted in `outside_root`. With `split_lists`
    (``{split: [entries]}``), files in no list are never read and are counted in `unlisted`.
    """

    part_column: str | None = None  # a single collection has no parts

    def __init__(
        self,
        location: str | os.PathLike[str],
        name: str | None = None,
        *,
        layout: str = "imagefolder",
        exclude_classes: Sequence[str] = (),
        split_lists: dict[str, list[str]] | None = None,
        root: str | None = None,
        frame_crop: FrameCrop | None = None,
        follow_links: bool = False,
        max_file_mb: float | None = DEFAULT_MAX_FILE_MB,
    ) -> None:
        if layout not in LAYOUTS:
            raise CollectionError(f"{location}: unknown layout '{layout}' ({', '.join(LAYOUTS)})")
        self.layout = layout
        self.exclude_classes = list(exclude_classes)
        self.split_lists = dict(split_lists or {})
        self.root = root.strip("/") if root else None
        self.frame_crop = frame_crop
        self.follow_links = follow_links
        self.max_bytes = None if max_file_mb is None else int(max_file_mb * 1e6)
        self.location = os.fspath(location)
        path = Path(os.path.abspath(Path(self.location).expanduser()))
        self.kind, self._handle = archives.open_location(path)
        self.name = name or archives.default_name(path, self.kind)
        self.skipped: list[SkippedFile] = []
        self.outside_root: list[str] = []
        self.unlisted: list[str] = []
        self._index: _Index | None = None
        self._listing: archives.Listing | None = None

    def __repr__(self) -> str:
        return f"ImageSource(kind={self.kind!r}, location={self.location!r})"

    def signature(self) -> Iterator[str]:
        """One line per file (path, size, CRC or modification time), refused entry and
        folder, from the listing alone: what the ingestion fingerprint hashes."""
        self._get_index()
        listing = self._listing
        for path, _ in sorted(listing.files, key=lambda file: file[0]):
            yield f"{path}\t{listing.sizes.get(path)}\t{listing.stamps.get(path)}"
        for item in sorted(listing.refused, key=lambda item: (item.path, item.reason)):
            yield f"{item.path}\trefused\t{item.reason}"
        yield from (f"{folder}/" for folder in sorted(listing.dirs))

    @property
    def top_folder(self) -> str | None:
        """The single top folder stripped from every path, or None when there is none."""
        return self._get_index().top

    def list_dirs(self) -> list[str]:
        """Relative posix paths of all directories, explicit or implied, top folder stripped."""
        return list(self._get_index().dirs)

    def list_files(self) -> list[str]:
        """Relative posix paths of the files that `iter_files` reads, from the listing alone."""
        return [path for path, _ in self._get_index().files]

    def iter_files(self) -> Iterator[tuple[str, bytes]]:
        """Yield (relative posix path, raw bytes) of every usable regular file, sorted by path.

        Refused entries and unreadable files end up in `self.skipped`, which is rebuilt on
        every iteration.
        """
        index = self._get_index()
        self.skipped[:] = index.refused
        yield from archives.read_members(self.kind, self._handle, index.files, self.skipped)

    def _get_index(self) -> _Index:
        if self._index is None:
            with archives.collector_paused():
                listing = archives.list_members(
                    self.kind,
                    self._handle,
                    follow_links=self.follow_links,
                    max_bytes=self.max_bytes,
                )
                index = _build_index(listing)
            self._listing = listing
            if self.root:
                index, self.outside_root = _within_root(index, self.root, self.location)
            if self.split_lists:
                index, self.unlisted = _listed_only(index, self.split_lists)
            self._index = index
        return self._index


class MergedImageSource:
    """Several collections read as one, e.g. WHOI's yearly archives: every path is prefixed
    with its part's name (the archive or folder name), which the manifest keeps in the
    `part_column` column (``year`` for WHOI). Same interface as :class:`ImageSource`."""

    kind = "merged"

    def __init__(self, parts: list[ImageSource], *, name: str | None, part_column: str) -> None:
        names = [part.name for part in parts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise CollectionError(
                f"parts must have different names (folder or archive names); repeated: {repeated}"
            )
        first = parts[0]
        self.parts = parts
        self.part_column = part_column
        self.name = name or (names[0] if len(names) == 1 else f"{names[0]}…{names[-1]}")
        self.location = [part.location for part in parts]
        self.layout, self.exclude_classes = first.layout, first.exclude_classes
        self.split_lists, self.frame_crop = first.split_lists, first.frame_crop
        self.skipped: list[SkippedFile] = []

    def __repr__(self) -> str:
        return f"MergedImageSource(parts={self.location!r})"

    @property
    def top_folder(self) -> dict[str, str | None]:
        return {part.name: part.top_folder for part in self.parts}

    @property
    def outside_root(self) -> list[str]:
        return [f"{part.name}/{path}" for part in self.parts for path in part.outside_root]

    @property
    def unlisted(self) -> list[str]:
        return [f"{part.name}/{path}" for part in self.parts for path in part.unlisted]

    def list_dirs(self) -> list[str]:
        return [f"{part.name}/{d}" for part in self.parts for d in part.list_dirs()]

    def signature(self) -> Iterator[str]:
        """Every part's :meth:`ImageSource.signature`, each under its part's name."""
        for part in self.parts:
            yield f"[{part.name}]"
            yield from part.signature()

    def list_files(self) -> list[str]:
        return [f"{part.name}/{path}" for part in self.parts for path in part.list_files()]

    def iter_files(self) -> Iterator[tuple[str, bytes]]:
        """Every part's files in turn, as ``(<part>/<relative path>, bytes)``."""
        self.skipped[:] = []
        for part in self.parts:
            for rel_path, data in part.iter_files():
                yield f"{part.name}/{rel_path}", data
            self.skipped += [SkippedFile(f"{part.name}/{s.path}", s.reason) for s in part.skipped]


def open_collection(
    path: str | list[str],
    *,
    name: str | None = None,
    layout: str = "imagefolder",
    root: str | None = None,
    exclude_classes: Sequence[str] = (),
    split_lists: dict[str, str] | None = None,
    split_table: dict[str, str] | None = None,
    part_column: str = "part",
    frame_crop: str | dict[str, Any] | None = None,
    follow_links: bool = False,
    max_file_mb: float | None = DEFAULT_MAX_FILE_MB,
) -> ImageSource | MergedImageSource:
    """The collection the settings describe: one folder or archive, or (a list of paths or a
    glob pattern) several merged into one. ``split_lists`` / ``split_table`` name files with
    the official split; ``frame_crop`` a scale-bar template set (see :mod:`.frame_crop`);
    ``follow_links`` lets a folder's symbolic links point outside it; files larger than
    ``max_file_mb`` (uncompressed; ``None``: no limit) are skipped unread."""
    if split_lists and split_table:
        raise CollectionError("give the official split as split_lists or split_table, not both")
    options = {
        "layout": layout,
        "exclude_classes": exclude_classes,
        "split_lists": read_split_table(**split_table)
        if split_table
        else read_split_lists(split_lists or {}),
        "root": root,
        "frame_crop": FrameCrop.from_setting(frame_crop),
        "follow_links": follow_links,
        "max_file_mb": max_file_mb,
    }
    paths = expand_paths(path)
    if isinstance(path, str) and not glob.has_magic(path):
        return ImageSource(paths[0], name=name, **options)
    parts = [ImageSource(p, **options) for p in paths]
    return MergedImageSource(parts, name=name, part_column=part_column)


def expand_paths(path: str | list[str]) -> list[str]:
    """One path, a list of paths, or a glob pattern -> sorted list of paths (never empty)."""
    if isinstance(path, str) and glob.has_magic(path):
        paths = sorted(glob.glob(os.path.expanduser(path)))
        if not paths:
            raise CollectionError(f"no folder or archive matches {path}")
        return paths
    paths = [path] if isinstance(path, str) else [os.fspath(p) for p in path]
    if not paths:
        raise CollectionError("path: the list of folders or archives is empty")
    return paths


def _within_root(index: _Index, root: str, location: str) -> tuple[_Index, list[str]]:
    """The index restricted to files under ``root/`` (stripped); the other files' paths."""
    prefix = f"{root}/"
    inside = [(p[len(prefix) :], key) for p, key in index.files if p.startswith(prefix)]
    if not inside:
        tops = sorted({p.split("/", 1)[0] for p, _ in index.files if "/" in p})
        raise CollectionError(f"{location}: no file under root '{root}'; top-level folders: {tops}")
    outside = [p for p, _ in index.files if not p.startswith(prefix)]
    dirs = [d[len(prefix) :] for d in index.dirs if d.startswith(prefix)]
    refused = [
        SkippedFile(item.path[len(prefix) :], item.reason)
        for item in index.refused
        if item.path.startswith(prefix)
    ]
    return _Index(files=inside, dirs=dirs, refused=refused, top=index.top), outside


def _listed_only(index: _Index, lists: dict[str, list[str]]) -> tuple[_Index, list[str]]:
    """The index restricted to files named in the official split lists; the others' paths."""
    paths = pd.Series([p for p, _ in index.files], dtype=str)
    listed = (split_from_lists(paths, lists) != "").tolist()
    kept = [file for file, ok in zip(index.files, listed, strict=True) if ok]
    unlisted = [p for (p, _), ok in zip(index.files, listed, strict=True) if not ok]
    return _Index(files=kept, dirs=index.dirs, refused=index.refused, top=index.top), unlisted


# --- index: resource forks, top folder, directories ------------------------------------------


def _build_index(listing: archives.Listing) -> _Index:
    forks = [(p, k) for p, k in listing.files if is_resource_fork(p)]
    files = [(p, k) for p, k in listing.files if not is_resource_fork(p)]
    top = _detect_top([p for p, _ in files])
    refused = listing.refused + [SkippedFile(_strip(p, top), _FORK) for p, _ in forks]
    folders = {path.rpartition("/")[0] for path, _ in listing.files} - {""}  # each once
    dirs = {d for folder in folders for d in [*_parents(folder), folder]} | listing.dirs
    return _Index(
        files=_sorted_unique(files, top, refused),
        dirs=sorted(_strip(d, top) for d in dirs if _is_collection_dir(d, top)),
        refused=refused,
        top=top,
    )


def _sorted_unique(
    files: list[tuple[str, Any]], top: str | None, refused: list[SkippedFile]
) -> list[tuple[str, Any]]:
    """Files sorted by relative path; a repeated path (archive duplicate) is refused."""
    unique: dict[str, Any] = {}
    stripped = sorted(((_strip(path, top), path, key) for path, key in files), key=itemgetter(0, 1))
    for rel, _, key in stripped:
        if rel in unique:
            refused.append(SkippedFile(rel, _DUPLICATE))
        else:
            unique[rel] = key
    return list(unique.items())


def _detect_top(paths: list[str]) -> str | None:
    """The single first-level folder holding every file in class subfolders, if there is one."""
    relevant = [p for p in paths if "/" in p or p.lower() not in SYSTEM_FILES]
    tops = {p.split("/", 1)[0] for p in relevant}
    if len(tops) != 1 or not all("/" in p for p in relevant):
        return None
    return tops.pop() if any(p.count("/") >= 2 for p in relevant) else None


def _strip(path: str, top: str | None) -> str:
    prefix = f"{top}/"
    return path[len(prefix) :] if top and path.startswith(prefix) else path


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _is_collection_dir(path: str, top: str | None) -> bool:
    """Inside the collection (under the top folder if any) and not macOS metadata."""
    if path.split("/", 1)[0] == "__MACOSX":
        return False
    return top is None or path.startswith(f"{top}/")
