"""A versioned, self-describing model checkpoint."""

from __future__ import annotations

import io
from typing import Any

import torch
from kedro.io import DatasetError

from ._previews import JSONPreview, checkpoint_preview
from ._versioned import VersionedFileDataset

REQUIRED_KEYS = ("state_dict", "model_name", "class_names", "image_size", "mean", "std", "fill")
ENSEMBLE_KEYS = ("members", "weights", "mode", "class_names", "image_size", "fill")


class CheckpointDataset(VersionedFileDataset):
    """A ``torch.save``'d dict: weights plus everything needed to use them again.

    Saved: ``state_dict``, ``model_name``, ``class_names``, ``image_size``, ``cache_size``,
    ``mean``, ``std``, ``fill``, ``params``, ``history`` and identity fields. Loaded with
    ``torch.load(weights_only=True)`` (tensors and plain Python values only, no pickled
    code); the loaded dict gains ``version``: the catalog version it came from. An ensemble
    (``kind: ensemble``) holds its members' checkpoints, weights, temperatures and mode.
    """

    def load(self) -> dict[str, Any]:
        path = self._load_path()
        with self._fs.open(path, mode="rb") as stream:
            buffer = io.BytesIO(stream.read())
        try:
            checkpoint = torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DatasetError(f"{path} is not a readable checkpoint: {exc}") from exc
        missing = [key for key in _required(checkpoint) if key not in checkpoint]
        if missing:
            raise DatasetError(
                f"{path} is not a plankton-kedro checkpoint (no {', '.join(missing)})"
            )
        checkpoint["version"] = self.resolve_load_version()
        return checkpoint

    def save(self, data: dict[str, Any]) -> None:
        missing = [key for key in _required(data) if key not in data]
        if missing:
            raise DatasetError(f"checkpoint to save lacks {', '.join(missing)}")
        payload = {key: value for key, value in data.items() if key != "version"}
        self._write_atomically(lambda stream: torch.save(payload, stream))

    def preview(self) -> JSONPreview:
        """kedro-viz: model, classes, image size and best score of the latest version."""
        return checkpoint_preview(self.load())


def _required(checkpoint: dict[str, Any]) -> tuple[str, ...]:
    return ENSEMBLE_KEYS if checkpoint.get("kind") == "ensemble" else REQUIRED_KEYS
