"""A collection's earlier ingestions, looked up by fingerprint to reuse one (see
:mod:`.fingerprint`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .shards import INDEX_FILE, ShardedImages


@dataclass
class EarlierIngestion:
    """The outputs of one earlier scan of a collection: records, cache and summary."""

    version: str
    records: pd.DataFrame
    images: np.ndarray
    summary: dict[str, Any]


class EarlierIngestions:
    """The saved versions of one collection's scan summary, records and image cache."""

    def __init__(
        self,
        summary: Path | None = None,
        records: Path | None = None,
        image_cache: Path | None = None,
    ) -> None:
        self._summary, self._records, self._image_cache = summary, records, image_cache

    def find(self, fingerprint: str) -> EarlierIngestion | None:
        """The newest complete earlier ingestion with ``fingerprint``, or None."""
        for version in self.versions():
            summary = self._read_summary(version)
            if summary is None or summary.get("fingerprint") != fingerprint:
                continue
            records = self._at(self._records, version)
            images = _open_cache(self._at(self._image_cache, version))
            if images is None or not records.is_file():  # pruned or half-deleted
                continue
            return EarlierIngestion(
                version=version,
                records=pd.read_parquet(records),
                images=images,
                summary=summary,
            )
        return None

    def versions(self) -> list[str]:
        """Version names of the saved summaries, newest first."""
        if self._summary is None or not self._summary.is_dir():
            return []
        return sorted((p.name for p in self._summary.iterdir() if p.is_dir()), reverse=True)

    def _read_summary(self, version: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._at(self._summary, version).read_text())
        except (OSError, ValueError):  # half-deleted or foreign: not reusable
            return None

    @staticmethod
    def _at(path: Path, version: str) -> Path:
        return path / version / path.name


def _open_cache(path: Path) -> np.ndarray | ShardedImages | None:
    """A saved cache: one ``.npy`` file (memory-mapped) or a folder of shards; None when it
    is gone or unreadable."""
    try:
        if path.is_file():
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if (path / INDEX_FILE).is_file():
            return ShardedImages(str(path))
    except (OSError, ValueError):
        pass
    return None


NO_EARLIER_INGESTIONS = EarlierIngestions()  # nothing to reuse (in-memory catalogs, tests)
