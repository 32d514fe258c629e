"""The Kedro face of a collection's earlier ingestions (:mod:`..engine.collection.earlier`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from plankton_kedro.engine.collection.earlier import EarlierIngestions


class EarlierIngestionsDataset(AbstractDataset[None, EarlierIngestions]):
    """The earlier versions of an ingestion's ``scan_summary``, ``records`` and
    ``image_cache`` (local files; the same paths as those catalog entries), loaded as an
    :class:`EarlierIngestions` the scan node looks its fingerprint up in."""

    def __init__(
        self,
        *,
        summary: str,
        records: str,
        image_cache: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._paths = {"summary": summary, "records": records, "image_cache": image_cache}
        self.metadata = metadata

    def load(self) -> EarlierIngestions:
        return EarlierIngestions(**{key: Path(path) for key, path in self._paths.items()})

    def save(self, data: Any) -> None:
        raise DatasetError("earlier ingestions are read-only: they are the versions already saved")

    def _describe(self) -> dict[str, Any]:
        return dict(self._paths)
