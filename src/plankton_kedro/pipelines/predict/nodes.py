"""Classify a folder or archive of new images; count the classes (raw and corrected for the
classifier's errors, per sample); list what was skipped; write the EcoTaxa import file."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import EnsembleCheckpoint
from plankton_kedro.engine.collection.layouts import nothing_usable
from plankton_kedro.engine.collection.sources import ImageSource, MergedImageSource
from plankton_kedro.engine.config import PredictParams
from plankton_kedro.engine.errors import StageInputError
from plankton_kedro.lazy import lazy_import

classify = lazy_import("plankton_kedro.engine.modelling.classify")
quantification = lazy_import("plankton_kedro.engine.analysis.quantification")
ecotaxa = lazy_import("plankton_kedro.engine.ecotaxa")

logger = logging.getLogger(__name__)


def predict_images(
    predict_images: ImageSource | MergedImageSource,
    predict_model: dict[str, Any],
    predict: PredictParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame, np.ndarray]:
    """Predictions table (with each image's sample), class counts, report (skipped files,
    speed, model), embeddings, and the probabilities for the abundance estimates."""
    model, calibration = predict_model["model"], predict_model["calibration"]
    classifier = classify.Classifier(model, calibration, rejection=predict.rejection)

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
    predictions = result.predictions
    predictions.insert(
        1, "sample", sample_names(predictions["rel_path"], predict_images.name, predict.samples)
    )
    counts = classify.class_counts(predictions, classifier.class_names)
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
            "unknown_thresholds_per_class": classifier.class_thresholds,
        },
        "images": n,
        "samples": int(predictions["sample"].nunique()),
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
    return predictions, counts_table, report, result.embeddings, result.probabilities


def sample_names(paths: pd.Series, source_name: str, samples: str) -> pd.Series:
    """The sample of each image: its folder inside the source (images at the top: the
    source's name), or the source's name for all with ``samples=one``."""
    if samples == "one":
        return pd.Series(source_name, index=paths.index)
    folders = paths.map(lambda path: str(PurePosixPath(path).parent))
    return folders.where(folders != ".", source_name)


def estimate_abundance(
    predictions: pd.DataFrame,
    probabilities: np.ndarray,
    predict_model: dict[str, Any],
    predict: PredictParams,
) -> tuple[pd.DataFrame, Any]:
    """Per sample and class: raw counts and counts corrected for the model's errors as
    measured on its validation split (ACC, PACC, EM), with bootstrap intervals; and a bar
    plot of them."""
    model = predict_model["model"]
    fitted = classify.fitted_for(model, predict_model["calibration"]).get("quantification")
    if fitted is None:
        logger.warning(
            "abundance: %s has no validation statistics (run the evaluation pipeline for it): "
            "raw counts only, no corrected estimates",
            model.label,
        )
    quantifier = None if fitted is None else quantification.Quantifier.from_fitted(fitted)
    settings = predict.abundance
    table = quantification.abundance_table(
        probabilities.astype(np.float64),
        predictions["sample"].to_numpy(),
        model.class_names,
        quantifier,
        replicates=settings.bootstrap,
        confidence=settings.confidence,
        seed=settings.seed,
        recommended=None if fitted is None else fitted.get("recommended"),
    )
    clipped = table.loc[table["clipped"]].groupby("method")["sample"].nunique()
    for method, samples in clipped.items():
        logger.warning(
            "abundance: %s gave negative counts for some classes in %d of %d samples: clipped "
            "to 0 and renormalised (column clipped)",
            quantification.METHOD_LABELS[method],
            samples,
            table["sample"].nunique(),
        )
    if quantifier is not None and len(quantifier.never_predicted):
        never = [model.class_names[i] for i in quantifier.never_predicted]
        logger.warning(
            "abundance: the model predicted no validation image as %s: ACC cannot tell how "
            "many there are (its answer for them is one of many); read EM or the raw count",
            ", ".join(never),
        )
    if quantifier is not None and len(quantifier.unseen_classes):
        unseen = [model.class_names[i] for i in quantifier.unseen_classes]
        logger.warning(
            "abundance: no validation images of %s: ACC and PACC take them as never confused",
            ", ".join(unseen),
        )
    recommended = table.loc[table["recommended"], "method"].unique()
    logger.info(
        "abundance: %d samples · %s · %d bootstrap replicates · recommended for this model: %s",
        table["sample"].nunique(),
        ", ".join(quantification.METHOD_LABELS[m] for m in table["method"].unique()),
        settings.bootstrap,
        quantification.METHOD_LABELS[recommended[0]]
        if len(recommended)
        else "none (its evaluation made no simulated-shift check)",
    )
    return table, quantification.abundance_figure(table)


def export_to_ecotaxa(
    predictions: pd.DataFrame,
    predict_images: ImageSource | MergedImageSource,
    predict_model: dict[str, Any],
    predict: PredictParams,
) -> dict[str, Any]:
    """The predictions as an EcoTaxa import table (labels mapped through the user's taxonomy
    table when given), with the images streamed into the archive when it is written."""
    path = predict.ecotaxa.taxonomy
    taxonomy = ecotaxa.read_taxonomy(path) if path else None
    export = ecotaxa.ecotaxa_table(predictions, taxonomy)
    if taxonomy is not None and export.unmapped:
        logger.warning(
            "EcoTaxa: %s not in %s: exported under our names (EcoTaxa asks to map them)",
            ", ".join(export.unmapped),
            path,
        )
    strangers = sorted(set(taxonomy or {}) - set(predict_model["model"].class_names))
    if strangers:
        logger.warning(
            "EcoTaxa: %s in %s are not classes of the model (misspelt?)", ", ".join(strangers), path
        )
    unclassified = int((predictions["label"] == classify.UNKNOWN).sum())
    logger.info(
        "EcoTaxa: %d objects in %d samples (%d predicted, %d unclassified)",
        len(export.table),
        predictions["sample"].nunique(),
        len(export.table) - unclassified,
        unclassified,
    )
    return {
        "table": export.table,
        "images": predict_images.iter_files,
        "bit_depth": predict_model["model"].preprocessing.bit_depth,
    }
