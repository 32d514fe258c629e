"""A versioned, self-describing model checkpoint."""

from __future__ import annotations

import io

import torch
from kedro.io import DatasetError

from plankton_kedro.engine.checkpoint import AnyCheckpoint, load_checkpoint
from plankton_kedro.engine.errors import CheckpointError

from ._previews import JSONPreview, checkpoint_preview
from ._versioned import VersionedFileDataset


class CheckpointDataset(VersionedFileDataset):
    """A trained model (:class:`~plankton_kedro.engine.checkpoint.Checkpoint`) or an ensemble,
    ``torch.save``'d as its plain dict: weights plus everything needed to use them again.

    Loaded with ``torch.load(weights_only=True)`` (tensors and plain Python values only, no
    pickled code) and read through the typed schema, older schemas included; the loaded
    checkpoint's ``version`` is the catalog version it came from.
    """

    def load(self) -> AnyCheckpoint:
        path = self._load_path()
        with self._fs.open(path, mode="rb") as stream:
            buffer = io.BytesIO(stream.read())
        if not buffer.getbuffer().nbytes:
            raise DatasetError(
                f"{path} is empty (0 bytes): not a checkpoint; choose another version or retrain"
            )
        try:
            data = torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DatasetError(f"{path} is not a readable checkpoint: {_reason(exc)}") from None
        try:
            checkpoint = load_checkpoint(data, source=path)
        except CheckpointError as exc:
            raise DatasetError(str(exc)) from exc
        checkpoint.version = self.resolve_load_version()
        return checkpoint

    def save(self, data: AnyCheckpoint) -> None:
        if not hasattr(data, "to_dict"):
            raise DatasetError(
                f"a checkpoint to save must be a Checkpoint or EnsembleCheckpoint, not {type(data)}"
            )
        payload = data.to_dict()
        self._write_atomically(lambda stream: torch.save(payload, stream))

    def preview(self) -> JSONPreview:
        """kedro-viz: model, classes, image size and best score of the latest version."""
        return checkpoint_preview(self.load())


def _reason(exc: Exception) -> str:
    """Why torch could not read the file, without torch's advice to load it with
    ``weights_only=False`` (that would run whatever code the file holds)."""
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text:
        return (
            "it holds Python objects other than tensors and plain values, which are never "
            "unpickled here (a file from another program, or not trusted)"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
