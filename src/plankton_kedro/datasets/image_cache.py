"""The versioned uint8 image cache: every image padded, resized and stored once."""

from __future__ import annotations

from typing import Any

import numpy as np
from kedro.io import DatasetError

from ._versioned import VersionedFileDataset


class ImageCacheDataset(VersionedFileDataset):
    """A ``(n, size, size, 3)`` uint8 array in ``.npy`` format, row i = manifest row i.

    Local files load memory-mapped (read-only), so a cache larger than RAM still works and
    loading costs nothing until images are read.
    """

    def load(self) -> np.ndarray:
        path = self._load_path()
        try:
            if self._protocol == "file":
                return np.load(path, mmap_mode="r", allow_pickle=False)
            with self._fs.open(path, mode="rb") as stream:
                return np.load(stream, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path} is not a readable image cache: {exc}") from exc

    def save(self, data: np.ndarray) -> None:
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4:
            shape = getattr(data, "shape", None)
            raise DatasetError(f"image cache must be a 4-d uint8 array, got {type(data)} {shape}")
        self._write_atomically(lambda stream: np.save(stream, data, allow_pickle=False))

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "format": "npy uint8 (n, size, size, 3)"}
