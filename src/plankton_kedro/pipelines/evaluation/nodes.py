"""Evaluation of a route's best fine-tuned checkpoint: test metrics, calibration and an
"unknown" threshold chosen on validation, and the paper's frozen-feature classifiers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.config import EvaluationParams
from plankton_kedro.lazy import lazy_import

feature_path = lazy_import("plankton_kedro.engine.analysis.features")
inference = lazy_import("plankton_kedro.engine.modelling.inference")
report = lazy_import("plankton_kedro.engine.analysis.report")

logger = logging.getLogger(__name__)


def predict_target_splits(
    target_model: Checkpoint,
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    evaluation: EvaluationParams,
) -> dict[str, dict[str, Any]]:
    """Logits and bottleneck features of the model on the target train, val and test splits."""
    return inference.predict_splits(
        target_model,
        image_cache,
        manifest,
        batch_size=evaluation.batch_size,
        backbone_features=evaluation.feature_classifiers.backbone_features,
    )


def evaluate_on_target_test(
    target_model: Checkpoint,
    manifest: pd.DataFrame,
    predictions: dict[str, dict[str, Any]],
    evaluation: EvaluationParams,
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Test metrics, the calibration stored with the model (temperature, "unknown" threshold,
    both fitted on validation), confusion matrix and reliability diagram (figures)."""
    metrics, calibration, confusion, reliability = report.evaluation_report(
        target_model,
        manifest,
        predictions,
        target_precision=evaluation.target_precision,
        calibration_bins=evaluation.calibration_bins,
        top_k=tuple(evaluation.top_k),
    )
    logger.info(
        "%s: target test accuracy %.4f · f1_macro %.4f · n_test %d · ECE %.3f -> %.3f "
        "(T=%.2f) · coverage %.2f at threshold %.3f",
        metrics["run"],
        metrics["accuracy"],
        metrics["f1_macro"],
        metrics["n_test"],
        metrics["calibration"]["ece_before"],
        metrics["calibration"]["ece_after"],
        calibration["temperature"],
        metrics["open_set"]["test"]["coverage"],
        calibration["rejection_threshold"],
    )
    return metrics, calibration, confusion, reliability


def extract_features(
    target_model: Checkpoint, predictions: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """The 512-d bottleneck features (and backbone features, when predicted) of every
    target image, as a table."""
    return feature_path.feature_frame(predictions, target_model.class_names)


def classify_features(
    features: pd.DataFrame, metrics: dict[str, Any], evaluation: EvaluationParams
) -> dict[str, Any]:
    """Logistic regression and RBF SVC on frozen features, beside the fine-tuned head."""
    settings = evaluation.feature_classifiers
    head = {k: metrics[k] for k in ("accuracy", "f1_macro", "f1_micro", "balanced_accuracy")}
    if not settings.enabled:
        return {"fine_tuned_head": head, "skipped": "evaluation.feature_classifiers.enabled=false"}
    fitted = {
        feature_set: feature_path.fit_feature_classifiers(
            features,
            feature_set=feature_set,
            c_grid=settings.c_grid,
            cv_folds=settings.cv_folds,
            max_train_images=settings.max_train_images,
            seed=settings.seed,
        )
        for feature_set in feature_path.feature_sets_in(features)
    }
    return {"fine_tuned_head": head, **fitted, "checkpoint_version": metrics["checkpoint_version"]}
