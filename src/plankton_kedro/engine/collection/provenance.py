"""How a collection's cache was made, recorded beside it so that training, the checkpoint and
prediction reuse what was applied rather than what the parameters say now.

The record travels in the manifest's metadata (``manifest.attrs["preprocessing"]``, kept in
the Parquet file): manifest and cache are written by the same ingestion run and row-aligned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

COLOUR_MODES = ("rgb",)


@dataclass(frozen=True)
class CachePreprocessing:
    """Side of the cached squares, grey value the padding was filled with, channels stored."""

    cache_size: int
    fill: int
    colour_mode: str = "rgb"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CachePreprocessing:
        return cls(
            cache_size=int(values["cache_size"]),
            fill=int(values["fill"]),
            colour_mode=str(values.get("colour_mode", "rgb")),
        )


def record_preprocessing(frame: pd.DataFrame, preprocessing: CachePreprocessing) -> None:
    """Attach the record to a records table or manifest (in place)."""
    frame.attrs["preprocessing"] = preprocessing.to_dict()


def recorded_preprocessing(manifest: pd.DataFrame) -> CachePreprocessing | None:
    """The record of the ingestion that made this manifest; None for manifests written before
    the record existed."""
    values = manifest.attrs.get("preprocessing")
    return None if values is None else CachePreprocessing.from_dict(values)
