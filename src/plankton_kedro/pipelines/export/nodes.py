"""Export the chosen model to ONNX and check ONNX Runtime against torch on the same images."""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

import numpy as np

from plankton_kedro.engine.config import ExportParams
from plankton_kedro.engine.errors import PlanktonUserError
from plankton_kedro.lazy import lazy_import

export = lazy_import("plankton_kedro.engine.modelling.export")
classify = lazy_import("plankton_kedro.engine.modelling.classify")
onnx_runtime = lazy_import("plankton_kedro.engine.onnx_runtime")

logger = logging.getLogger(__name__)


class ExportMismatchError(PlanktonUserError):
    """ONNX Runtime's probabilities differ from torch's beyond the tolerance."""


def export_model(predict_model: dict[str, Any], export_params: ExportParams) -> tuple[bytes, dict]:
    """The ONNX model and its sidecar, with the measured torch / ONNX Runtime difference."""
    model, calibration = predict_model["model"], predict_model["calibration"]
    onnx_bytes, sidecar = export.export_onnx(model, calibration)
    difference = parity(onnx_bytes, sidecar, classify.Classifier(model, calibration), export_params)
    sidecar["parity"] = {
        "images": export_params.parity_images,
        "max_abs_difference": difference,
        "onnxruntime": version("onnxruntime"),
    }
    logger.info(
        "exported %s (%.1f MB): ONNX Runtime and torch probabilities differ by at most %.1e "
        "on %d images",
        sidecar["model"]["run"] or "ensemble",
        len(onnx_bytes) / 1e6,
        difference,
        export_params.parity_images,
    )
    return onnx_bytes, sidecar


def parity(onnx_bytes: bytes, sidecar: dict, classifier, export_params: ExportParams) -> float:
    """Largest |p_torch - p_onnx| over seeded random images; an error above the tolerance."""
    size = sidecar["preprocessing"]["cache_size"]
    images = np.random.default_rng(0).integers(
        0, 256, (export_params.parity_images, size, size, 3), dtype=np.uint8
    )
    expected, _ = classifier(images)
    got = onnx_runtime.OnnxClassifier(onnx_bytes, sidecar).probabilities(images)
    difference = float(np.abs(expected - got).max())
    if difference > export_params.tolerance:
        raise ExportMismatchError(
            f"the exported model's probabilities differ from torch's by {difference:.2e} "
            f"(tolerance {export_params.tolerance:g}); the ONNX file is not usable as it is"
        )
    return difference
