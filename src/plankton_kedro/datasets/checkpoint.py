"""A versioned, self-describing model checkpoint."""

from __future__ import annotations

import io
import warnings

import torch
from kedro.io import DatasetError

from plankton_kedro.engine.checkpoint import AnyCheckpoint, load_checkpoint
from plankton_kedro.engine.errors import CheckpointError

from ._previews import JSONPreview, checkpoint_preview
from ._versioned import VersionedFileDataset

PICKLE_PROTOCOL_MARK = b"\x80"  # a pickle of protocol 2 or later
ZIP_MARK = b"PK"  # torch.save writes a zip archive


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
            with warnings.catch_warnings():  # torch's note on a plain pickle's protocol
                warnings.simplefilter("ignore", UserWarning)
                data = torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = _reason(exc, buffer.getvalue()[:2])
            raise DatasetError(f"{path} is not a readable checkpoint: {reason}") from None
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


def _reason(exc: Exception, head: bytes) -> str:
    """Why torch could not read the file (``head``: its first bytes), in one short sentence
    and without torch's advice to load it with ``weights_only=False`` (that would run
    whatever code the file holds)."""
    text = str(exc)
    if head.startswith(PICKLE_PROTOCOL_MARK):
        return (
            "it is a plain Python pickle, not a PyTorch checkpoint (never unpickled here: "
            "unpickling can run any code)"
        )
    if not head.startswith(ZIP_MARK):
        return "it is not a PyTorch file (corrupt, or another program's format)"
    if "Unsupported global" in text:
        return (
            "it holds Python objects other than tensors and plain values, which are never "
            "unpickled here (a file from another program, or not trusted)"
        )
    if "PytorchStreamReader" in text:
        first = text.strip().splitlines()[0].split(". ")[0]
        return f"the file is truncated or corrupt ({first})"
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
