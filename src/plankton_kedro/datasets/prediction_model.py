"""Which trained model the ``predict`` pipeline uses, chosen by one runtime parameter."""

from __future__ import annotations

import glob
import json
import logging
import re
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError, Version
from kedro_datasets.json import JSONDataset

from plankton_kedro.engine.checkpoint import AnyCheckpoint

from ._previews import JSONPreview, checkpoint_preview
from .checkpoint import CheckpointDataset

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class PredictionModelDataset(AbstractDataset[None, dict]):
    """A run's latest (or pinned) fine-tuned model with its calibration, or the ensemble.

    ``model`` is a run namespace (``two_stage``, ``in_domain_seed1``, ``ensemble_vit_b``…)
    optionally pinned as ``two_stage@<version>``, the word ``ensemble`` (the latest
    ensemble), or the path of a checkpoint file. Where the runs' files are comes from the
    catalog (``conf/base/catalog.yml`` passes the ``{route}.target_model``,
    ``{route}.calibration`` and ``ensemble_model`` file paths with YAML anchors), the run's
    name taking the place of the pattern's placeholder.
    Loads ``{"model": checkpoint, "calibration": dict or None}``; the calibration
    (temperature, "unknown" threshold) is the one fitted for that exact checkpoint version.
    """

    def __init__(
        self,
        *,
        model: str,
        target_model: str,
        calibration: str,
        ensemble_model: str,
        metadata: dict[str, Any] | None = None,
    ):
        for key, template in (("target_model", target_model), ("calibration", calibration)):
            if len(_PLACEHOLDER.findall(template)) != 1:
                raise DatasetError(
                    f"predict_model: {key} must name a run's file with one placeholder, "
                    f"e.g. data/06_models/{{route}}/target_model.pt; got {template}"
                )
        self._model = str(model)
        self._target_model = target_model
        self._calibration = calibration
        self._ensemble_model = ensemble_model
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if self._model.endswith((".pt", ".pth")) and "@" not in self._model:
            if not Path(self._model).is_file():
                raise DatasetError(f"no checkpoint file {self._model}")
            return {"model": CheckpointDataset(filepath=self._model).load(), "calibration": None}
        name, _, pinned = self._model.partition("@")
        path = self._ensemble_model if name == "ensemble" else _for_run(self._target_model, name)
        if not Path(path).exists():
            trained = ", ".join(self._trained_runs()) or "none yet (run a route first: kedro run)"
            ensemble = ", ensemble" if Path(self._ensemble_model).exists() else ""
            raise DatasetError(
                f"predict_model={self._model}: no trained model at {path}. "
                f"Trained models: {trained}{ensemble}."
            )
        model = CheckpointDataset(filepath=path, version=Version(pinned or None, None)).load()
        calibration = None if name == "ensemble" else self._calibration_of(name, model)
        return {"model": model, "calibration": calibration}

    def _trained_runs(self) -> list[str]:
        """Run names that have a fine-tuned model where the catalog puts them."""
        prefix, _, suffix = _PLACEHOLDER.split(self._target_model)
        runs = [
            path[len(prefix) : len(path) - len(suffix)] for path in glob.glob(f"{prefix}*{suffix}")
        ]
        return sorted(run for run in runs if run and "/" not in run)

    def _calibration_of(self, name: str, model: AnyCheckpoint) -> dict[str, Any] | None:
        path = _for_run(self._calibration, name)
        if not Path(path).exists():
            logger.warning("%s has no calibration: no temperature, no 'unknown' label", name)
            return None
        for version in JSONDataset(filepath=path, version=Version(None, None)).list_versions(
            full_path=False
        ):
            calibration = JSONDataset(filepath=path, version=Version(version, None)).load()
            if calibration.get("checkpoint_version") == model.version:
                return calibration
        logger.warning(
            "no calibration was fitted for %s checkpoint %s (run the evaluation pipeline): "
            "no temperature, no 'unknown' label",
            name,
            model.version,
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
        return {"model": self._model, "target_model": self._target_model}


def _for_run(template: str, run: str) -> str:
    return _PLACEHOLDER.sub(run, template)
