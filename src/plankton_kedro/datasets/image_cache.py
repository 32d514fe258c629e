"""The versioned uint8 image cache: every image padded, resized and stored once."""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np
from kedro.io import DatasetError

from plankton_kedro.engine.atomic import atomic_path
from plankton_kedro.engine.collection.shards import ShardedImages, write_shards

from ._previews import ImagePreview, image_grid_preview
from ._versioned import VersionedFileDataset


class ImageCacheDataset(VersionedFileDataset):
    """A ``(n, size, size, 3)`` uint8 array, row i = manifest row i.

    By default one ``.npy`` file; local files load memory-mapped (read-only), so a cache
    larger than RAM still works and loading costs nothing until images are read.
    With ``shard_size``, the path is a folder of ``.npy`` shards of that many images (see
    :mod:`plankton_kedro.engine.collection.shards`), read shard by shard in training and streamable
    from any fsspec filesystem. Either kind loads whatever was saved.
    """

    def __init__(self, *, shard_size: int | None = None, **kwargs: Any) -> None:
        if shard_size is not None and shard_size < 1:
            raise DatasetError(f"shard_size must be a positive number of images, got {shard_size}")
        self._shard_size = shard_size
        super().__init__(**kwargs)

    def load(self) -> np.ndarray | ShardedImages:
        path = self._load_path()
        try:
            if self._fs.isdir(path):
                return ShardedImages(path, self._fs)
            if self._protocol == "file":
                return np.load(path, mmap_mode="r", allow_pickle=False)
            with self._fs.open(path, mode="rb") as stream:
                return np.load(stream, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path} is not a readable image cache: {exc}") from exc

    def save(self, data: np.ndarray | ShardedImages) -> None:
        shape = getattr(data, "shape", None)
        if getattr(data, "dtype", None) != np.uint8 or len(shape or ()) != 4 or shape[-1] != 3:
            raise DatasetError(f"image cache must be a 4-d uint8 array, got {type(data)} {shape}")
        if self._shard_size is None:
            if self._link_whole_file(data) or self._save_shards_as_one_file(data):
                return
            self._write_atomically(
                lambda stream: np.save(stream, np.asarray(data), allow_pickle=False)
            )
        else:
            with atomic_path(self._save_path(), self._fs) as folder:
                self._fs.makedirs(folder, exist_ok=True)
                if not self._link_shards(data, folder):
                    write_shards(
                        data,
                        self._shard_size,
                        lambda name: self._fs.open(f"{folder}/{name}", "wb"),
                    )

    def _link_whole_file(self, data: np.ndarray) -> bool:
        """Save a memory map of a whole local ``.npy`` file (the ingestion spool) by a hard
        link, without copying a byte; False when ``data`` is anything else."""
        filename = getattr(data, "filename", None)
        whole_map = isinstance(data, np.memmap) and isinstance(data.base, mmap.mmap)
        if self._protocol != "file" or not whole_map or not filename:  # views are copied
            return False
        target = self._save_path()
        try:
            on_disk = np.load(filename, mmap_mode="r", allow_pickle=False)
            if on_disk.shape != data.shape or on_disk.offset != data.offset:
                return False
            self._fs.makedirs(os.path.dirname(target), exist_ok=True)
            with atomic_path(target, self._fs) as temporary:
                os.link(filename, temporary)
                os.chmod(temporary, 0o644)
        except (OSError, ValueError):  # gone, another filesystem, no hard links: copy
            return False
        return True

    def _save_shards_as_one_file(self, data: np.ndarray | ShardedImages) -> bool:
        """Save a sharded cache as one local ``.npy`` file (a reused ingestion's cache after
        ``shard_size`` was removed) shard by shard into a memory map: never the whole cache
        in memory. False when ``data`` is not sharded or the target is not local."""
        if self._protocol != "file" or not isinstance(data, ShardedImages):
            return False
        target = self._save_path()
        self._fs.makedirs(os.path.dirname(target), exist_ok=True)
        with atomic_path(target, self._fs) as temporary:
            out = np.lib.format.open_memmap(temporary, "w+", np.uint8, data.shape)
            for number in np.unique(data.shard_of_row):
                rows = np.flatnonzero(data.shard_of_row == number)
                out[rows] = data.shard(int(number))[data.offset_of_row[rows]]
            out.flush()
            del out  # closed before the file is renamed into place
        return True

    def _link_shards(self, data: np.ndarray | ShardedImages, folder: str) -> bool:
        """Save a local shard folder cut into shards of this dataset's size (a reused
        ingestion's cache) by hard-linking its files, without copying a byte; False, with
        ``folder`` left empty, when ``data`` is anything else or the links cannot be made."""
        same_cut = isinstance(data, ShardedImages) and data.shard_size == self._shard_size
        if self._protocol != "file" or not (same_cut and data.local):
            return False
        linked: list[str] = []
        try:
            for name in sorted(os.listdir(data.folder)):
                os.link(os.path.join(data.folder, name), os.path.join(folder, name))
                linked.append(name)
        except OSError:  # another filesystem, no hard links: the shards are copied
            for name in linked:  # never write through a link into the earlier version
                os.remove(os.path.join(folder, name))
            return False
        return True

    def preview(self) -> ImagePreview:
        """kedro-viz: a grid of 32 cached images spread over the cache, as the model sees them."""
        return image_grid_preview(self.load())

    def _describe(self) -> dict[str, Any]:
        layout = "one npy" if self._shard_size is None else f"npy shards of {self._shard_size}"
        return {**super()._describe(), "format": f"uint8 (n, size, size, 3), {layout}"}
