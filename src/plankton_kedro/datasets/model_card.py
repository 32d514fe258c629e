"""A versioned Markdown model card."""

from __future__ import annotations

from kedro.io import DatasetError
from kedro_datasets._typing import HTMLPreview

from ._versioned import VersionedFileDataset


class ModelCardDataset(VersionedFileDataset):
    """A model card (a Markdown ``str``) in a ``.md`` file, written atomically; loads back as
    the same string. kedro-viz previews it rendered as HTML."""

    def load(self) -> str:
        with self._fs.open(self._load_path(), mode="rb") as stream:
            return stream.read().decode("utf-8")

    def save(self, data: str) -> None:
        if not isinstance(data, str):
            raise DatasetError(f"a model card to save must be a str, not {type(data).__name__}")
        encoded = data.encode("utf-8")
        self._write_atomically(lambda stream: stream.write(encoded))

    def preview(self) -> HTMLPreview:
        """kedro-viz: the latest version's card as HTML (its tables included)."""
        import markdown

        return HTMLPreview(markdown.markdown(self.load(), extensions=["tables"]))
