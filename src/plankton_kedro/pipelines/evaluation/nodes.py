"""Evaluation of a route's best fine-tuned checkpoint: test metrics, calibration and an
"unknown" threshold chosen on validation, and the paper's frozen-feature classifiers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.config import (
    DataParams,
    EvaluationParams,
    ModelParams,
    RunParams,
)
from plankton_kedro.lazy import lazy_import

feature_path = lazy_import("plankton_kedro.engine.analysis.features")
model_card = lazy_import("plankton_kedro.engine.analysis.model_card")
inference = lazy_import("plankton_kedro.engine.modelling.inference")
model_builder = lazy_import("plankton_kedro.engine.modelling.model")
quantification = lazy_import("plankton_kedro.engine.analysis.quantification")
report = lazy_import("plankton_kedro.engine.analysis.report")

logger = logging.getLogger(__name__)


def predict_target_splits(
    target_model: Checkpoint,
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    evaluation: EvaluationParams,
) -> dict[str, dict[str, Any]]:
    """Logits and bottleneck features of the model on the target train, val and test splits,
    and on the calibration split when ingestion made one."""
    splits = ("train", "val", "test", "calibration")
    return inference.predict_splits(
        target_model,
        image_cache,
        manifest,
        splits=tuple(s for s in splits if (manifest["split"] == s).any() or s != "calibration"),
        batch_size=evaluation.batch_size,
        backbone_features="fine_tuned_backbone" in evaluation.feature_classifiers.features,
    )


def evaluate_on_target_test(
    target_model: Checkpoint,
    manifest: pd.DataFrame,
    predictions: dict[str, dict[str, Any]],
    evaluation: EvaluationParams,
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Test metrics, the calibration stored with the model (temperature, "unknown" threshold,
    both fitted on the calibration split if any, else validation), confusion matrix and
    reliability diagram (figures)."""
    metrics, calibration, confusion, reliability = report.evaluation_report(
        target_model,
        manifest,
        predictions,
        target_precision=evaluation.target_precision,
        calibration_bins=evaluation.calibration_bins,
        top_k=tuple(evaluation.top_k),
        class_threshold_min_images=evaluation.class_threshold_min_images,
        shift_mixes=evaluation.shift_check_mixes,
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
    missed = [
        name
        for name, chosen in metrics["open_set"]["per_class"]["classes"].items()
        if chosen.get("met") is False
    ]
    if missed:
        logger.warning(
            "%s: %d class(es) cannot reach precision %.2f on %s at any threshold, so keep their "
            "most precise one (few of their images pass): %s",
            metrics["run"],
            len(missed),
            evaluation.target_precision,
            metrics["open_set"]["per_class"]["chosen_on"]["split"],
            ", ".join(missed),
        )
    if shift := metrics["quantification"]["simulated_shift_on_test"]:
        errors = shift["mean_absolute_error"]
        logger.info(
            "%s: class counts under simulated shift (%d test mixes), mean absolute error of "
            "the fractions: raw %.4f · ACC %.4f · PACC %.4f · EM %.4f; predict recommends %s",
            metrics["run"],
            shift["mixes"],
            *(errors[method] for method in quantification.METHODS),
            quantification.METHOD_LABELS[metrics["quantification"]["method_choice"]["recommended"]],
        )
    return metrics, calibration, confusion, reliability


# The node is the library function itself: checkpoint, manifest, metrics, calibration -> Markdown.
write_model_card = model_card.model_card


def extract_features(
    target_model: Checkpoint, predictions: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """The fine-tuned model's 512-d bottleneck features (and backbone features, when
    predicted) of every target image, as a table."""
    return feature_path.feature_frame(predictions, target_model.class_names)


def extract_stage1_probe_features(
    source_model: Checkpoint,
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    evaluation: EvaluationParams,
) -> pd.DataFrame:
    """The paper's probe input for a route with stage 1: the frozen backbone features of
    the stage-1 (source) model on every target image, before any target training."""
    if not _probe_wanted(evaluation):
        return _no_probe_features()
    return inference.frozen_backbone_features(
        model_builder.model_from_checkpoint(source_model),
        image_cache,
        manifest,
        image_size=source_model.preprocessing.image_size,
        features_of=(
            f"stage-1 model {source_model.label}/{source_model.identity.stage}, checkpoint "
            f"{source_model.version or 'in memory'}"
        ),
        batch_size=evaluation.batch_size,
    )


def extract_pretrained_probe_features(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    run: RunParams,
    evaluation: EvaluationParams,
) -> pd.DataFrame:
    """The paper's probe input for a route without stage 1: the frozen backbone features of
    the run's ``model.pretrained`` weights (ImageNet, a local file, or random with ``none``)."""
    if not _probe_wanted(evaluation):
        return _no_probe_features()
    settings = run.model_params(model)
    net, weights = model_builder.build_model(
        settings.name,
        1,
        pretrained=settings.pretrained,
        bottleneck_dim=settings.bottleneck_dim,
        image_size=data.image_size,
        seed=evaluation.feature_classifiers.seed,  # random weights: the same on every run
    )
    return inference.frozen_backbone_features(
        net,
        image_cache,
        manifest,
        image_size=data.image_size,
        features_of=f"{settings.name} with {weights or 'random weights (model.pretrained=none)'}",
        batch_size=evaluation.batch_size,
    )


def _probe_wanted(evaluation: EvaluationParams) -> bool:
    settings = evaluation.feature_classifiers
    return settings.enabled and "pretrained" in settings.features


def _no_probe_features() -> pd.DataFrame:
    """An empty table (the probe is off): saved so that the run's outputs stay the same."""
    return pd.DataFrame({"rel_path": [], "split": [], "label": []})


def classify_features(
    pretrained_features: pd.DataFrame,
    fine_tuned_features: pd.DataFrame,
    metrics: dict[str, Any],
    evaluation: EvaluationParams,
) -> dict[str, Any]:
    """The frozen-feature probes asked for (``evaluation.feature_classifiers.features``),
    each: logistic regression and RBF SVC, beside the fine-tuned head's own test scores."""
    settings = evaluation.feature_classifiers
    head = {k: metrics[k] for k in ("accuracy", "f1_macro", "f1_micro", "balanced_accuracy")}
    result: dict[str, Any] = {
        "fine_tuned_head": head,
        "checkpoint_version": metrics["checkpoint_version"],
    }
    if not settings.enabled:
        return {**result, "skipped": "evaluation.feature_classifiers.enabled=false"}
    for probe in settings.features:
        if probe == "pretrained":
            table, features_of = pretrained_features, pretrained_features.attrs.get("features_of")
        else:
            part = probe.removeprefix("fine_tuned_")
            table, features_of = fine_tuned_features, f"fine-tuned model {metrics['run']} ({part})"
        result[probe] = feature_path.fit_probe(
            table,
            prefix=feature_path.PROBE_PREFIX[probe],
            features_of=features_of or probe,
            c_grid=settings.c_grid,
            cv_folds=settings.cv_folds,
            max_train_images=settings.max_train_images,
            seed=settings.seed,
            label=f"{metrics['run']} {probe}",
        )
    return result
