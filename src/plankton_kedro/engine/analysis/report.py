"""The evaluation report of one fine-tuned model: test metrics, calibration and an "unknown"
threshold, everything that is chosen being chosen on the validation split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plankton_kedro.engine.checkpoint import Checkpoint

from . import quantification
from .calibration import (
    choose_class_thresholds,
    choose_rejection_threshold,
    class_rejection_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    rejection_report,
    reliability_diagram,
    softmax,
)
from .metrics import classification_report, confusion_matrix_figure


def evaluation_report(
    checkpoint: Checkpoint,
    manifest: pd.DataFrame,
    predictions: dict[str, dict[str, Any]],
    *,
    target_precision: float,
    calibration_bins: int = 15,
    top_k: tuple[int, ...] = (3, 5),
    class_threshold_min_images: int = 20,
    shift_mixes: int = 20,
) -> tuple[dict[str, Any], dict[str, Any], Figure, Figure]:
    """Test metrics, calibration and the "unknown" threshold, chosen on the calibration split
    when there is one, else on validation.

    ``predictions``: ``{split: {"labels", "logits"}}`` of the model on ``manifest`` (val and
    test at least, and ``calibration`` when the manifest has that split). Returns the
    metrics, the calibration to store with the model (temperature and rejection threshold),
    the confusion matrix and the reliability diagram (test split, after temperature scaling).
    """
    class_names = list(checkpoint.class_names)
    identity, history = checkpoint.identity, checkpoint.history
    dataset = dataset_name(manifest)
    fitted_on = "calibration" if "calibration" in predictions else "val"
    fitting, test = predictions[fitted_on], predictions["test"]
    y_true, logits = test["labels"], test["logits"]
    y_pred = logits.argmax(1)
    temperature = fit_temperature(fitting["logits"], fitting["labels"])
    fitting_probabilities = softmax(fitting["logits"], temperature)
    test_probabilities = softmax(logits, temperature)
    stored, choices = rejection_and_quantification(
        fitting_probabilities,
        fitting["labels"],
        class_names,
        manifest,
        target_precision=target_precision,
        min_images=class_threshold_min_images,
        shift_mixes=shift_mixes,
    )
    threshold, class_thresholds = choices["global"], choices["per_class"]
    calibration = {
        "temperature": temperature,
        **stored,
        "target_precision": target_precision,
        "fitted_on": fitted_on,
        "checkpoint_version": checkpoint.version,
        "manifest_version": manifest.attrs.get("version"),
    }
    metrics = {
        **classification_report(y_true, y_pred, class_names, scores=logits, top_k=top_k),
        "split": "test",
        "route": identity.route,
        "run": checkpoint.label,
        "seed": identity.seed,
        "model_name": checkpoint.model_name,
        "dataset": dataset,
        "checkpoint_version": checkpoint.version,
        "manifest_version": manifest.attrs.get("version"),
        "trained_on_manifest_version": identity.manifest_version,
        # a label budget (compare.labels_per_class) recorded on the manifest; None: all
        "labels_per_class": manifest.attrs.get("labels_per_class"),
        "n_train": int((manifest["split"] == "train").sum()),
        "initial_weights": history.initial_weights,
        "pretrained_weights": history.pretrained_weights,
        "best_epoch": history.best_epoch,
        "image_size": checkpoint.preprocessing.image_size,
        "calibration": {
            "fitted_on": fitted_on,
            "temperature": temperature,
            "bins": calibration_bins,
            "ece_before": expected_calibration_error(softmax(logits), y_true, calibration_bins),
            "ece_after": expected_calibration_error(test_probabilities, y_true, calibration_bins),
            "fitted_split_nll_before": negative_log_likelihood(
                fitting["logits"], fitting["labels"]
            ),
            "fitted_split_nll_after": negative_log_likelihood(
                fitting["logits"], fitting["labels"], temperature
            ),
            "test_nll_before": negative_log_likelihood(logits, y_true),
            "test_nll_after": negative_log_likelihood(logits, y_true, temperature),
        },
        "open_set": {
            "chosen_on": {"split": fitted_on, **threshold},
            "test": rejection_report(test_probabilities, y_true, threshold["threshold"]),
            "per_class": {
                "chosen_on": {"split": fitted_on, "min_images": class_threshold_min_images},
                "classes": class_thresholds,
                "test": class_rejection_report(
                    test_probabilities,
                    y_true,
                    class_names,
                    calibration["class_thresholds"],
                ),
            },
        },
        "quantification": {
            "fitted_on": fitted_on,
            "method_choice": choices["method"],
            "simulated_shift_on_test": shift_on_test(
                stored, test_probabilities, y_true, mixes=shift_mixes
            ),
        },
    }
    title = (
        f"{metrics['run']} · {checkpoint.model_name} · {dataset} test "
        f"(accuracy {metrics['accuracy']:.3f}, n={metrics['n_test']})"
    )
    return (
        metrics,
        calibration,
        confusion_matrix_figure(y_true, y_pred, class_names, title),
        reliability_diagram(
            test_probabilities,
            y_true,
            calibration_bins,
            title=f"{metrics['run']}: test split after temperature scaling (T={temperature:.2f})",
        ),
    )


def rejection_and_quantification(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    manifest: pd.DataFrame,
    *,
    target_precision: float,
    min_images: int,
    shift_mixes: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What prediction needs beside the temperature, from calibrated probabilities on held-out
    labelled images: the global and per-class "unknown" thresholds, the statistics of the
    abundance corrections and the estimate to recommend (stored with the model); and how each
    was chosen. Nothing here sees the test split."""
    threshold = choose_rejection_threshold(probabilities, labels, target_precision)
    class_thresholds = choose_class_thresholds(
        probabilities,
        labels,
        class_names,
        target_precision,
        global_threshold=threshold["threshold"],
        min_images=min_images,
    )
    counts = train_counts(manifest, class_names)
    method = (
        quantification.choose_method(probabilities, labels, counts, mixes=shift_mixes)
        if shift_mixes
        else None
    )
    stored = {
        "rejection_threshold": threshold["threshold"],
        "class_thresholds": {name: c["threshold"] for name, c in class_thresholds.items()},
        "quantification": {
            **quantification.fit_quantifier(probabilities, labels, counts),
            "recommended": method and method["recommended"],
        },
    }
    return stored, {"global": threshold, "per_class": class_thresholds, "method": method}


def shift_on_test(
    stored: dict[str, Any], probabilities: np.ndarray, labels: np.ndarray, *, mixes: int
) -> dict[str, Any] | None:
    """The simulated-shift check of the stored corrections on the test split (a report: it
    chooses nothing); None with ``mixes=0``."""
    if not mixes:
        return None
    fitted = quantification.Quantifier.from_fitted(stored["quantification"])
    return quantification.shift_check(probabilities, labels, fitted, mixes=mixes)


def train_counts(manifest: pd.DataFrame, class_names: list[str]) -> list[int]:
    """Training images per class, in class order (the prior the model learnt)."""
    train = manifest.loc[manifest["split"] == "train", "label"].value_counts()
    return [int(train.get(name, 0)) for name in class_names]


def dataset_name(manifest: pd.DataFrame) -> str:
    """The data set a manifest describes, as ingestion named it."""
    return str(manifest.attrs.get("dataset", "unknown data set"))
