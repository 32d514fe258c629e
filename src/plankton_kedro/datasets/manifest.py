"""The versioned image manifest: a Parquet table that knows which version it is."""

from __future__ import annotations

import pandas as pd
from kedro_datasets.pandas import ParquetDataset

from ._previews import TablePreview, manifest_preview


class ManifestDataset(ParquetDataset):
    """``pandas.ParquetDataset`` whose loaded frame carries ``attrs["version"]``.

    The version travels with the table into the nodes, so checkpoints and metrics can name
    the exact manifest they were computed from.
    """

    def load(self) -> pd.DataFrame:
        frame = super().load()
        frame.attrs["version"] = self.resolve_load_version()
        return frame

    def preview(self) -> TablePreview:
        """kedro-viz: images per class and split (instead of the first rows)."""
        return manifest_preview(self.load())
