"""Read an ImageFolder-style collection in place from a folder or a zip / tar archive, or from
several of them merged into one collection (WHOI's yearly archives).

Nothing is ever unpacked to disk: archive members are read into memory one at a time, unsafe or
odd members are refused and listed in `ImageSource.skipped`, never extracted.
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from plankton_kedro.engine.frame_crop import FrameCrop
from plankton_kedro.engine.scan import (
    LAYOUTS,
    OFFICIAL_SPLITS,
    RECORD_DTYPES,
    SYSTEM_FILES,
    SkippedFile,
)
from plankton_kedro.engine.splits import split_from_lists

from ._previews import TablePreview, image_source_preview

__all__ = ["ImageSource", "ImageSourceDataset", "MergedImageSource", "SkippedFile"]

ARCHIVE_SUFFIXES = {
    ".tar.gz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
    ".tgz": "tar",
    ".tar": "tar",
    ".zip": "zip",
}
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE = "unsafe path in archive, refused"
_NOT_REGULAR = "not a regular file"
_FORK = "macOS resource fork"
_DUPLICATE = "duplicate path, skipped"
# Spellings of official split names found in split tables.
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class _Index:
    """What a collection holds: files (sorted, top folder stripped), directories and refusals."""

    files: list[tuple[str, Any]]  # (relative path, how the kind reads it)
    dirs: list[str]
    refused: list[SkippedFile]
    top: str | None


@dataclass
class _Listing:
    """Raw paths found by one kind of source, before top-folder detection."""

    files: list[tuple[str, Any]] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)
    refused: list[SkippedFile] = field(default_factory=list)


class ImageSource:
    """A folder or archive of images; what ImageSourceDataset.load() returns. Read-only, lazy.

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
    ) -> None:
        if layout not in LAYOUTS:
            raise DatasetError(f"{location}: unknown layout '{layout}' ({', '.join(LAYOUTS)})")
        self.layout = layout
        self.exclude_classes = list(exclude_classes)
        self.split_lists = dict(split_lists or {})
        self.root = root.strip("/") if root else None
        self.frame_crop = frame_crop
        self.location = os.fspath(location)
        self._path = Path(os.path.abspath(Path(self.location).expanduser()))
        self.kind = _kind_of(self._path)
        self._opened = _open(self._path, self.kind)
        self.name = name or _default_name(self._path, self.kind)
        self.skipped: list[SkippedFile] = []
        self.outside_root: list[str] = []
        self.unlisted: list[str] = []
        self._index: _Index | None = None

    def __repr__(self) -> str:
        return f"ImageSource(kind={self.kind!r}, location={self.location!r})"

    @property
    def top_folder(self) -> str | None:
        """The single top folder stripped from every path, or None when there is none."""
        return self._get_index().top

    def list_dirs(self) -> list[str]:
        """Relative posix paths of all directories, explicit or implied, top folder stripped."""
        return list(self._get_index().dirs)

    def iter_files(self) -> Iterator[tuple[str, bytes]]:
        """Yield (relative posix path, raw bytes) of every usable regular file, sorted by path.

        Refused entries and unreadable files end up in `self.skipped`, which is rebuilt on
        every iteration.
        """
        index = self._get_index()
        self.skipped[:] = index.refused
        read = _KINDS[self.kind][1]
        yield from read(self._opened, index.files, self.skipped)

    def _get_index(self) -> _Index:
        if self._index is None:
            index = _build_index(_KINDS[self.kind][0](self._opened))
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
            raise DatasetError(
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

    def iter_files(self) -> Iterator[tuple[str, bytes]]:
        """Every part's files in turn, as ``(<part>/<relative path>, bytes)``."""
        self.skipped[:] = []
        for part in self.parts:
            for rel_path, data in part.iter_files():
                yield f"{part.name}/{rel_path}", data
            self.skipped += [SkippedFile(f"{part.name}/{s.path}", s.reason) for s in part.skipped]


class ImageSourceDataset(AbstractDataset[None, "ImageSource | MergedImageSource"]):
    """Kedro dataset: a folder or .zip/.tar/.tar.gz/.tgz archive of class folders, read in place.

    ``path``: one folder or archive; a list of them, or a glob pattern (``/data/whoi/*.zip``),
    merges them into one collection whose manifest names each image's part in the
    ``part_column`` column (e.g. ``year``).
    ``layout``: ``imagefolder`` (``[top/]<class>/<image>``, split made at ingestion),
    ``split_folders`` (``[top/]<train|val|test>/<class>/<image>``: the data set's official
    split is kept) or ``unlabelled``. ``root``: the sub-folder holding the class folders
    (``imgs`` in ZooScanNet). ``exclude_classes``: exact class names to leave out.
    ``split_lists``: ``{train|val|test: path of a text file}`` with the data set's official
    file lists (one image path per line, e.g. ZooLake's), which then define the split;
    ``split_table``: ``{path: CSV file, key: column naming the image, split: column}``, the
    same as one table. ``frame_crop``: ``zooscan`` (shipped scale-bar template) or
    ``{templates: [PNG paths], threshold: 0.8}`` removes a scale bar before resizing.
    """

    def __init__(  # noqa: PLR0913 - one option per catalog key
        self,
        *,
        path: str | list[str],
        name: str | None = None,
        layout: str = "imagefolder",
        root: str | None = None,
        exclude_classes: Sequence[str] = (),
        split_lists: dict[str, str] | None = None,
        split_table: dict[str, str] | None = None,
        part_column: str = "part",
        frame_crop: str | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if split_lists and split_table:
            raise DatasetError("give the official split as split_lists or split_table, not both")
        if part_column in {*RECORD_DTYPES, "split", "split_source"} - {"part"}:
            raise DatasetError(f"part_column '{part_column}' is already a manifest column")
        self._path = path
        self._name = name
        self._layout = layout
        self._root = root
        self._exclude = list(exclude_classes)
        self._split_lists = dict(split_lists or {})
        self._split_table = dict(split_table or {})
        self._part_column = part_column
        self._frame_crop = frame_crop
        self.metadata = metadata

    def load(self) -> ImageSource | MergedImageSource:
        try:
            frame_crop = FrameCrop.from_setting(self._frame_crop)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        if self._split_table:
            split_lists = _read_split_table(**self._split_table)
        else:
            split_lists = _read_split_lists(self._split_lists)
        options = {
            "layout": self._layout,
            "exclude_classes": self._exclude,
            "split_lists": split_lists,
            "root": self._root,
            "frame_crop": frame_crop,
        }
        paths = _expand_paths(self._path)
        if isinstance(self._path, str) and not glob.has_magic(self._path):
            return ImageSource(paths[0], name=self._name, **options)
        parts = [ImageSource(path, **options) for path in paths]
        return MergedImageSource(parts, name=self._name, part_column=self._part_column)

    def save(self, data: None) -> None:
        raise DatasetError(f"ImageSourceDataset({self._path}) is read-only; it cannot save data")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "name": self._name, "layout": self._layout}

    def _exists(self) -> bool:
        try:
            return all(Path(path).expanduser().exists() for path in _expand_paths(self._path))
        except DatasetError:
            return False

    def preview(self) -> TablePreview:
        """kedro-viz: image files per class (and official split), from the listing alone."""
        source = self.load()
        parts = getattr(source, "parts", [source])
        paths = [path for part in parts for path, _ in part._get_index().files]
        return image_source_preview(paths, source.layout, source.exclude_classes)


def _expand_paths(path: str | list[str]) -> list[str]:
    """One path, a list of paths, or a glob pattern -> sorted list of paths (never empty)."""
    if isinstance(path, str) and glob.has_magic(path):
        paths = sorted(glob.glob(os.path.expanduser(path)))
        if not paths:
            raise DatasetError(f"no folder or archive matches {path}")
        return paths
    paths = [path] if isinstance(path, str) else [os.fspath(p) for p in path]
    if not paths:
        raise DatasetError("path: the list of folders or archives is empty")
    return paths


def _read_split_table(path: str, key: str, split: str = "split") -> dict[str, list[str]]:
    """``{split: [image keys]}`` from a CSV table (``.csv`` or ``.csv.gz``) with one row per
    image: a ``key`` column (path, file name or file name without extension) and a ``split``
    column (train/val/test; training/valid/validation/testing are understood)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetError(f"split_table: {path} does not exist")
    try:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"split_table: {path} is not a readable CSV table ({exc})") from exc
    missing = [column for column in (key, split) if column not in table.columns]
    if missing:
        raise DatasetError(
            f"split_table: {path} has no column {missing}; its columns: {list(table.columns)}"
        )
    names = table[split].str.strip().str.lower()
    unknown = sorted(set(names) - set(_SPLIT_NAMES))
    if unknown:
        raise DatasetError(
            f"split_table: {path} column '{split}' has values {unknown[:5]} that are not "
            "train/val/test"
        )
    lists: dict[str, list[str]] = {}
    for entry, name in zip(table[key], names, strict=True):
        lists.setdefault(_SPLIT_NAMES[name], []).append(entry)
    return lists


def _read_split_lists(paths: dict[str, str]) -> dict[str, list[str]]:
    """``{split: [entries]}`` from official split list files, with clear errors."""
    lists = {}
    for split, path in paths.items():
        if split not in OFFICIAL_SPLITS:
            raise DatasetError(f"split_lists: '{split}' is not one of {', '.join(OFFICIAL_SPLITS)}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise DatasetError(f"split_lists: the {split} list {path} does not exist")
        lists[split] = file.read_text(encoding="utf-8", errors="replace").splitlines()
    return lists


def _within_root(index: _Index, root: str, location: str) -> tuple[_Index, list[str]]:
    """The index restricted to files under ``root/`` (stripped); the other files' paths."""
    prefix = f"{root}/"
    inside = [(p[len(prefix) :], key) for p, key in index.files if p.startswith(prefix)]
    if not inside:
        tops = sorted({p.split("/", 1)[0] for p, _ in index.files if "/" in p})
        raise DatasetError(f"{location}: no file under root '{root}'; top-level folders: {tops}")
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


# --- opening ---------------------------------------------------------------------------------


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    suffix = _archive_suffix(path)
    if not path.is_file() or suffix is None:
        raise DatasetError(f"{path} is neither a folder nor a .zip/.tar/.tar.gz/.tgz archive")
    return ARCHIVE_SUFFIXES[suffix]


def _archive_suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _default_name(path: Path, kind: str) -> str:
    """Folder name, or the archive file name without its archive suffix."""
    suffix = _archive_suffix(path) if kind != "folder" else None
    return path.name[: -len(suffix)] if suffix else path.name


def _open(path: Path, kind: str) -> Path | zipfile.ZipFile:
    """Check that the folder or archive can be read, so a bad path fails at load time; what
    listing and reading use: a zip stays open (its directory, ≈ 3 µs per member to parse, is
    parsed once), a folder or tar is reopened by path."""
    try:
        if kind == "folder":
            with os.scandir(path):
                pass
        elif kind == "zip":
            return zipfile.ZipFile(path)  # noqa: SIM115 - closed when the source is released
        else:
            with tarfile.open(path, "r:*"):
                pass
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DatasetError(f"{path} is not a valid {kind} archive ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    return path


# --- listing ---------------------------------------------------------------------------------


def _list_folder(root: Path) -> _Listing:
    """Walk the folder (following symlinks, each real directory once)."""
    listing = _Listing()
    seen: set[str] = set()

    def unreadable(exc: OSError) -> None:
        rel = Path(exc.filename).relative_to(root).as_posix()
        listing.refused.append(SkippedFile(rel, f"cannot read folder ({exc.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir != ".":
            listing.dirs.add(rel_dir)
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if os.path.isfile(full):
                listing.files.append((rel, full))
            else:
                listing.refused.append(SkippedFile(rel, _NOT_REGULAR))
    return listing


def _list_zip(archive: zipfile.ZipFile) -> _Listing:
    listing = _Listing()
    for info in archive.infolist():
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        _add_member(listing, info.filename, info, is_dir=info.is_dir(), regular=not is_link)
    return listing


def _list_tar(path: Path) -> _Listing:
    """Read all member headers (one pass; the data of a compressed tar is decompressed)."""
    listing = _Listing()
    with _tar_errors(path), tarfile.open(path, "r:*") as archive:
        for number, member in enumerate(archive):
            regular = member.isfile()
            _add_member(listing, member.name, number, is_dir=member.isdir(), regular=regular)
    return listing


def _add_member(listing: _Listing, name: str, key: Any, *, is_dir: bool, regular: bool) -> None:
    """Record one archive member, refusing unsafe paths and links / devices."""
    path = _safe_member_path(name)
    if path is None:
        if not is_dir:
            listing.refused.append(SkippedFile(name, _UNSAFE))
    elif is_dir:
        if path:
            listing.dirs.add(path)
    elif regular:
        listing.files.append((path, key))
    else:
        listing.refused.append(SkippedFile(path, _NOT_REGULAR))


def _safe_member_path(name: str) -> str | None:
    """Normalised relative posix path, or None for absolute, drive-letter or '..' paths."""
    name = name.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or _DRIVE.match(name) or ".." in parts:
        return None
    return "/".join(part for part in parts if part not in ("", "."))


# --- index: resource forks, top folder, directories ------------------------------------------


def _build_index(listing: _Listing) -> _Index:
    forks = [(p, k) for p, k in listing.files if _is_fork(p)]
    files = [(p, k) for p, k in listing.files if not _is_fork(p)]
    top = _detect_top([p for p, _ in files])
    refused = listing.refused + [SkippedFile(_strip(p, top), _FORK) for p, _ in forks]
    dirs = {d for p, _ in listing.files for d in _parents(p)} | listing.dirs
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
    for path, key in sorted(files, key=lambda file: (_strip(file[0], top), file[0])):
        rel = _strip(path, top)
        if rel in unique:
            refused.append(SkippedFile(rel, _DUPLICATE))
        else:
            unique[rel] = key
    return list(unique.items())


def _is_fork(path: str) -> bool:
    """macOS metadata: anything under __MACOSX/ or an AppleDouble '._name' file."""
    return path.split("/", 1)[0] == "__MACOSX" or path.rsplit("/", 1)[-1].startswith("._")


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


# --- reading ---------------------------------------------------------------------------------


def _read_folder(
    _root: Path, files: list[tuple[str, str]], skipped: list[SkippedFile]
) -> Iterator[tuple[str, bytes]]:
    for rel, full in files:
        try:
            data = Path(full).read_bytes()
        except OSError as exc:
            skipped.append(SkippedFile(rel, f"cannot read file ({exc.strerror or exc})"))
            continue
        yield rel, data


def _read_zip(
    archive: zipfile.ZipFile, files: list[tuple[str, zipfile.ZipInfo]], skipped: list[SkippedFile]
) -> Iterator[tuple[str, bytes]]:
    for rel, info in files:
        try:
            data = archive.read(info)
        except Exception as exc:  # bad CRC, encryption, unsupported compression, ...
            skipped.append(SkippedFile(rel, f"cannot read from archive ({exc})"))
            continue
        yield rel, data


def _read_tar(
    path: Path, files: list[tuple[str, int]], _skipped: list[SkippedFile]
) -> Iterator[tuple[str, bytes]]:
    """One sequential pass; members stored out of sorted order wait in memory for their turn.

    A member that cannot be read means the stream is broken: that is an archive error.
    """
    order = iter(files)
    wanted = {number for _, number in files}
    ready: dict[int, bytes] = {}
    upcoming = next(order, None)
    with _tar_errors(path), tarfile.open(path, "r|*") as archive:
        for number, member in enumerate(archive):
            if number in wanted:
                ready[number] = archive.extractfile(member).read()
            while upcoming is not None and upcoming[1] in ready:
                yield upcoming[0], ready.pop(upcoming[1])
                upcoming = next(order, None)


@contextmanager
def _tar_errors(path: Path) -> Iterator[None]:
    """Turn a tar stream that cannot be read to the end into a DatasetError naming the archive."""
    try:
        yield
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({exc})") from exc


# kind -> (list what `_open` returned, read files from it)
_KINDS: dict[str, tuple[Callable[..., _Listing], Callable[..., Iterator[tuple[str, bytes]]]]] = {
    "folder": (_list_folder, _read_folder),
    "zip": (_list_zip, _read_zip),
    "tar": (_list_tar, _read_tar),
}
