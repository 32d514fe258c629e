"""Which trained model the ``predict`` pipeline uses, chosen by one runtime parameter."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError, Version
from kedro_datasets.json import JSONDataset

from ._previews import JSONPreview, checkpoint_preview
from .checkpoint import CheckpointDataset

logger = logging.getLogger(__name__)


class PredictionModelDataset(AbstractDataset[None, dict]):
    """A route's latest (or pinned) fine-tuned model with its calibration, or the ensemble.

    ``model`` is a route namespace (``two_stage``, ``in_domain_seed1``, ``ensemble_vit_b``…)
    optionally pinned as ``two_stage@<version>``, the word ``ensemble`` (the latest
    ensemble), or the path of a checkpoint file. Loads ``{"model": …, "calibration": …}``;
    the calibration (temperature, "unknown" threshold) is the one fitted for that exact
    checkpoint version, or ``None`` when there is none.
    """

    def __init__(self, *, model: str, models_dir: str = "data/06_models", metadata=None):
        self._model = str(model)
        self._models_dir = Path(models_dir)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if self._model.endswith((".pt", ".pth")) and "@" not in self._model:
            if not Path(self._model).is_file():
                raise DatasetError(f"predict_model: no checkpoint file {self._model}")
            return {"model": CheckpointDataset(filepath=self._model).load(), "calibration": None}
        name, _, pinned = self._model.partition("@")
        if name == "ensemble":
            path = self._models_dir / "ensemble" / "ensemble_model.pt"
        else:
            path = self._models_dir / name / "target_model.pt"
        if not path.exists():
            known = sorted(p.parent.name for p in self._models_dir.glob("*/target_model.pt"))
            raise DatasetError(
                f"predict_model={self._model}: no trained model at {path}. Trained models: "
                f"{', '.join(known) or 'none yet (run a route first, e.g. kedro run)'}"
                f"{', ensemble' if (self._models_dir / 'ensemble').exists() else ''}."
            )
        model = CheckpointDataset(filepath=str(path), version=Version(pinned or None, None)).load()
        calibration = None if name == "ensemble" else self._calibration(name, model["version"])
        return {"model": model, "calibration": calibration}

    def _calibration(self, name: str, model_version: str) -> dict[str, Any] | None:
        path = self._models_dir / name / "calibration.json"
        if not path.exists():
            logger.warning("%s has no calibration: no temperature, no 'unknown' label", name)
            return None
        for version in JSONDataset(filepath=str(path), version=Version(None, None)).list_versions(
            full_path=False
        ):
            calibration = JSONDataset(filepath=str(path), version=Version(version, None)).load()
            if calibration.get("checkpoint_version") == model_version:
                return calibration
        logger.warning(
            "no calibration was fitted for %s checkpoint %s (run the evaluation pipeline): "
            "no temperature, no 'unknown' label",
            name,
            model_version,
        )
        return None

    def preview(self) -> JSONPreview:
        """kedro-viz: the model ``predict`` would use now, with its "unknown" threshold."""
        loaded = self.load()
        summary = json.loads(checkpoint_preview(loaded["model"]))
        calibration = loaded["calibration"] or {}
        summary |= {
            "temperature": calibration.get("temperature"),
            "unknown_threshold": calibration.get("rejection_threshold"),
        }
        return JSONPreview(json.dumps(summary))

    def save(self, data: dict) -> None:
        raise DatasetError("PredictionModelDataset is read-only: it selects a trained model")

    def _describe(self) -> dict[str, Any]:
        return {"model": self._model, "models_dir": str(self._models_dir)}
