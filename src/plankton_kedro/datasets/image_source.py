"""The Kedro face of a raw image collection; reading it: engine.collection."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from plankton_kedro.engine.collection.scan import RECORD_DTYPES
from plankton_kedro.engine.collection.sources import (
    DEFAULT_MAX_FILE_MB,
    ImageSource,
    MergedImageSource,
    expand_paths,
    open_collection,
)
from plankton_kedro.engine.errors import CollectionError

from ._previews import TablePreview, image_source_preview


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
    ``follow_links``: a folder's symbolic links are followed when they point inside it; with
    ``true`` also when they point elsewhere (otherwise those are skipped and reported).
    ``max_file_mb``: files larger than this (uncompressed, as the folder or the archive header
    says; default 64) are skipped unread and reported; ``null`` lifts the limit.
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
        follow_links: bool = False,
        max_file_mb: float | None = DEFAULT_MAX_FILE_MB,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if split_lists and split_table:
            raise DatasetError("give the official split as split_lists or split_table, not both")
        if part_column in {*RECORD_DTYPES, "split", "split_source"} - {"part"}:
            raise DatasetError(f"part_column '{part_column}' is already a manifest column")
        self._options = {
            "path": path,
            "name": name,
            "layout": layout,
            "root": root,
            "exclude_classes": list(exclude_classes),
            "split_lists": dict(split_lists or {}),
            "split_table": dict(split_table or {}),
            "part_column": part_column,
            "frame_crop": frame_crop,
            "follow_links": follow_links,
            "max_file_mb": max_file_mb,
        }
        self.metadata = metadata

    def load(self) -> ImageSource | MergedImageSource:
        try:
            return open_collection(**self._options)
        except CollectionError as exc:
            raise DatasetError(str(exc)) from exc

    def save(self, data: None) -> None:
        raise DatasetError(
            f"ImageSourceDataset({self._options['path']}) is read-only; it cannot save data"
        )

    def _describe(self) -> dict[str, Any]:
        return {key: self._options[key] for key in ("path", "name", "layout")}

    def _exists(self) -> bool:
        try:
            paths = expand_paths(self._options["path"])
        except CollectionError:
            return False
        return all(Path(path).expanduser().exists() for path in paths)

    def preview(self) -> TablePreview:
        """kedro-viz: image files per class (and official split), from the listing alone."""
        source = self.load()
        parts = getattr(source, "parts", [source])
        paths = [path for part in parts for path in part.list_files()]
        return image_source_preview(paths, source.layout, source.exclude_classes)
