"""What a path inside a collection means: is it an image, and which class and split is it?

The reading rules in one place: the raw-collection readers (:mod:`.sources`) decide which
paths belong to a collection, :mod:`.scan` asks this module what each of them is.
"""

from __future__ import annotations

from dataclasses import dataclass
from posixpath import splitext

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
# How a collection's paths carry labels (and official splits):
#   imagefolder:   [top/]<class>/<image>             stratified split made at ingestion
#   split_folders: [top/]<split>/<class>/<image>     the data set's official train/val/test
#   unlabelled:    any nesting, no labels            (prediction)
# A collection merged from several parts (e.g. WHOI's yearly archives) prefixes every path
# with its part: <part>/<path as above>.
LAYOUTS = ("imagefolder", "split_folders", "unlabelled")
OFFICIAL_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the data set, and why."""

    path: str
    reason: str


def nothing_usable(location: object, n_files: int, skipped: list[SkippedFile]) -> str:
    """Why a collection gave no image, for an error message: empty, or the first skips."""
    if n_files == 0:
        return f"{location} holds no files"
    listed = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"no usable image among the {n_files} files of {location} ({listed}{more})"


def skip_reason(rel_path: str, layout: str = "imagefolder") -> str | None:
    """Why a file cannot be an image of a class, judged from its path alone; None if it may be."""
    name = rel_path.rsplit("/", 1)[-1]
    if name.lower() in SYSTEM_FILES:
        return "not an image file (system file)"
    extension = splitext(name)[1].lower()
    if not extension:
        return "not an image file (no extension)"
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image file (extension '{extension}')"
    parts = rel_path.split("/")
    if layout == "split_folders":
        if parts[0] not in OFFICIAL_SPLITS:
            return f"not inside a {'/'.join(OFFICIAL_SPLITS)} folder"
        if len(parts) < 3:
            return "not inside a class folder"
    elif layout == "imagefolder" and len(parts) < 2:
        return "not inside a class folder"
    return None


def label_and_split(rel_path: str, layout: str) -> dict[str, str]:
    """The class (``""`` when unlabelled) and official split (``""`` when none) of a path."""
    parts = rel_path.split("/")
    if layout == "split_folders":
        return {"label": parts[1], "official_split": parts[0]}
    return {"label": parts[0] if layout == "imagefolder" else "", "official_split": ""}


def class_of_folder(path: str, layout: str, *, is_file: bool) -> str | None:
    """The class a directory (or a file's folder) stands for, or None when it is no class
    folder: ``<class>`` (imagefolder) or ``<split>/<class>`` (split_folders)."""
    if layout == "unlabelled":
        return None
    depth = 1 if layout == "split_folders" else 0  # where the class name sits in a path
    parts = path.split("/")
    if len(parts) < depth + 1 + is_file:
        return None
    if depth and parts[0] not in OFFICIAL_SPLITS:
        return None
    return parts[depth]


def is_resource_fork(path: str) -> bool:
    """macOS metadata: anything under __MACOSX/ or an AppleDouble '._name' file."""
    return path.split("/", 1)[0] == "__MACOSX" or path.rsplit("/", 1)[-1].startswith("._")
