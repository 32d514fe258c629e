"""A versioned EcoTaxa import file: a ``.zip`` of TSV + images, or the TSV alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import DatasetError

from plankton_kedro.engine import ecotaxa

from ._previews import TablePreview
from ._versioned import VersionedFileDataset

ImageFactory = Callable[[], Iterable[tuple[str, bytes]]]


class EcoTaxaExportDataset(VersionedFileDataset):
    """Predictions for EcoTaxa (:mod:`plankton_kedro.engine.ecotaxa`), written atomically.

    The file path's extension chooses the form: ``.zip`` holds ``ecotaxa_<stem>.tsv`` and the
    images (what EcoTaxa's import takes as one upload); ``.tsv`` is the table alone, for
    images uploaded separately (its name must start with ``ecotaxa``, or EcoTaxa ignores it).

    ``save`` takes ``{"table": DataFrame, "images": factory, "bit_depth": int | None}``:
    ``table`` as made by :func:`~plankton_kedro.engine.ecotaxa.ecotaxa_table`, ``images``
    (needed for ``.zip``, unused for ``.tsv``) a zero-argument callable returning an iterable
    of ``(rel_path, bytes)``, called once at write time so the images stream into the
    archive (``ImageSource.iter_files`` fits), ``bit_depth`` the instrument's (the model's
    preprocessing record), for 16-bit images converted to 8-bit PNG. ``load`` returns the
    TSV's table (``[f]`` columns as floats).
    """

    def __init__(self, *, filepath: str, **kwargs: Any) -> None:
        name = PurePosixPath(str(filepath)).name
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in (".zip", ".tsv"):
            raise DatasetError(f"an EcoTaxa export is a .zip or a .tsv file, not '{filepath}'")
        if suffix == ".tsv" and not name.startswith("ecotaxa"):
            raise DatasetError(f"EcoTaxa only imports TSV files named ecotaxa*.tsv, not '{name}'")
        stem = PurePosixPath(name).stem
        self._zipped = suffix == ".zip"
        self._tsv_name = f"{stem if stem.startswith('ecotaxa') else 'ecotaxa_' + stem}.tsv"
        super().__init__(filepath=filepath, **kwargs)

    def load(self) -> pd.DataFrame:
        with self._fs.open(self._load_path(), mode="rb") as stream:
            if self._zipped:
                return ecotaxa.read_zip(stream)
            return ecotaxa.read_tsv(stream)

    def save(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping) or not isinstance(data.get("table"), pd.DataFrame):
            raise DatasetError(
                "an EcoTaxa export to save is {'table': DataFrame, 'images': callable}, "
                f"not {type(data).__name__}"
            )
        table, images = data["table"], data.get("images")
        bit_depth = data.get("bit_depth")
        if images is not None and not callable(images):
            raise DatasetError("'images' must be a zero-argument callable returning the images")
        if not self._zipped:
            self._write_atomically(lambda stream: ecotaxa.write_tsv(table, stream))
            return
        if images is None:
            raise DatasetError(f"{self._filepath}: a .zip export needs the images ('images')")
        self._write_atomically(
            lambda stream: ecotaxa.write_zip(
                table, images(), stream, tsv_name=self._tsv_name, bit_depth=bit_depth
            )
        )

    def preview(self, nrows: int = 5) -> TablePreview:
        """kedro-viz: the first rows of the latest export's table."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))
