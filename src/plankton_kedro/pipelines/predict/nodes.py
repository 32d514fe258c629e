"""Classify a folder or archive of new images; count the classes; list what was skipped."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from plankton_kedro.engine.checkpoint import EnsembleCheckpoint
from plankton_kedro.engine.collection.layouts import nothing_usable
from plankton_kedro.engine.collection.sources import ImageSource, MergedImageSource
from plankton_kedro.engine.config import PredictParams
from plankton_kedro.engine.errors import StageInputError
from plankton_kedro.lazy import lazy_import

classify = lazy_import("plankton_kedro.engine.modelling.classify")

logger = logging.getLogger(__name__)


def predict_images(
    predict_images: ImageSource | MergedImageSource,
    predict_model: dict[str, Any],
    predict: PredictParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """Predictions table, class counts, report (skipped files, speed, model) and embeddings."""
    model, calibration = predict_model["model"], predict_model["calibration"]
    classifier = classify.Classifier(model, calibration)

    def progress(done: int, seconds: float) -> None:
        logger.info("%s: %d files · %.0f images/s", predict_images.name, done, done / seconds)

    result = classify.predict_files(
        classifier,
        predict_images.iter_files(),
        batch_size=predict.batch_size,
        top_k=predict.top_k,
        workers=predict.workers,
        with_embeddings=predict.embeddings,
        progress=progress,
        frame_crop=predict_images.frame_crop,
    )
    skipped = sorted([*predict_images.skipped, *result.skipped], key=lambda s: s.path)
    n = len(result.predictions)
    if n == 0:  # nothing to write: no empty table becomes the newest version
        raise StageInputError(
            f"nothing to classify: {nothing_usable(predict_images.location, len(skipped), skipped)}"
            "; point predict_images at a folder or archive of images"
        )
    counts = classify.class_counts(result.predictions, classifier.class_names)
    report = {
        "source": {
            "location": str(predict_images.location),
            "name": predict_images.name,
            "frame_crop": None
            if predict_images.frame_crop is None
            else list(predict_images.frame_crop.templates),
        },
        "model": {
            "kind": model.kind,
            "route": None if isinstance(model, EnsembleCheckpoint) else model.label,
            "model_name": model.member_names
            if isinstance(model, EnsembleCheckpoint)
            else model.model_name,
            "version": model.version,
            "temperature": classifier.temperatures
            if classifier.is_ensemble
            else classifier.temperatures[0],
            "unknown_threshold": classifier.threshold,
        },
        "images": n,
        "unknown": counts["unknown"],
        "skipped_count": len(skipped),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "seconds": round(result.seconds, 2),
        "images_per_second": round(n / max(result.seconds, 1e-9), 1),
    }
    logger.info(
        "%s: %d images classified (%d unknown), %d files skipped, %.0f images/s",
        predict_images.name,
        n,
        counts["unknown"],
        len(skipped),
        report["images_per_second"],
    )
    counts_table = pd.DataFrame({"label": list(counts), "images": list(counts.values())}).assign(
        fraction=lambda t: t["images"] / max(n, 1)
    )
    return result.predictions, counts_table, report, result.embeddings
