"""Build the ensemble: every member scored on validation and test, members selected by greedy
forward selection on validation only, the ensemble reported on test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint, EnsembleCheckpoint
from plankton_kedro.engine.config import EnsemblingParams, EvaluationParams
from plankton_kedro.engine.errors import StageInputError
from plankton_kedro.lazy import lazy_import

calibration = lazy_import("plankton_kedro.engine.analysis.calibration")
ensemble = lazy_import("plankton_kedro.engine.analysis.ensemble")
inference = lazy_import("plankton_kedro.engine.modelling.inference")
metrics = lazy_import("plankton_kedro.engine.analysis.metrics")
analysis_report = lazy_import("plankton_kedro.engine.analysis.report")

logger = logging.getLogger(__name__)

HEADLINE = ("accuracy", "f1_macro", "f1_micro", "balanced_accuracy")


@dataclass
class Combined:
    """Members' outputs on val and test, the members chosen on val and their ensemble."""

    class_names: list[str]
    outputs: dict[str, dict[str, dict[str, Any]]]
    temperatures: dict[str, float]
    selection: dict[str, Any]
    val_labels: np.ndarray
    test_labels: np.ndarray
    val_probabilities: np.ndarray
    test_probabilities: np.ndarray


def combine_on_validation(
    members: dict[str, Checkpoint],
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    ensembling: EnsemblingParams,
) -> Combined:
    """Every member on val and test, temperature-scaled on val (if asked), members chosen by
    greedy forward selection on val only, the ensemble's probabilities on both splits."""
    classes = {tuple(m.class_names) for m in members.values()}
    if len(classes) != 1:
        raise StageInputError("ensemble members were trained on different class sets")
    outputs = {
        name: inference.predict_splits(model, image_cache, manifest, splits=("val", "test"))
        for name, model in members.items()
    }
    val_labels = next(iter(outputs.values()))["val"]["labels"]
    temperatures = {
        name: calibration.fit_temperature(o["val"]["logits"], val_labels)
        if ensembling.calibrate_members
        else 1.0
        for name, o in outputs.items()
    }
    selection = ensemble.greedy_forward_selection(
        {name: o["val"]["logits"] for name, o in outputs.items()},
        val_labels,
        metric=ensembling.metric,
        mode=ensembling.mode,
        max_members=ensembling.max_members,
        allow_repeats=ensembling.allow_repeats,
        temperatures=temperatures,
    )
    probabilities = {
        split: ensemble.ensemble_predictions(
            {name: o[split]["logits"] for name, o in outputs.items()},
            selection,
            temperatures=temperatures,
        )
        for split in ("val", "test")
    }
    return Combined(
        class_names=list(classes.pop()),
        outputs=outputs,
        temperatures=temperatures,
        selection=selection,
        val_labels=val_labels,
        test_labels=next(iter(outputs.values()))["test"]["labels"],
        val_probabilities=probabilities["val"],
        test_probabilities=probabilities["test"],
    )


def build_ensemble(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    ensembling: EnsemblingParams,
    evaluation: EvaluationParams,
    *member_models: Checkpoint,
) -> tuple[EnsembleCheckpoint, dict[str, Any]]:
    """The ensemble artefact and its report (members, selection, ensemble on test), with an
    "unknown" threshold chosen on the ensemble's validation probabilities."""
    names = [member.name for member in ensembling.members]
    members = dict(zip(names, member_models, strict=True))
    combined = combine_on_validation(members, image_cache, manifest, ensembling)
    class_names, outputs = combined.class_names, combined.outputs
    temperatures, selection = combined.temperatures, combined.selection
    val_labels, test_labels = combined.val_labels, combined.test_labels
    probabilities, val_probabilities = combined.test_probabilities, combined.val_probabilities
    stored, choices = analysis_report.rejection_and_quantification(
        val_probabilities,
        val_labels,
        class_names,
        manifest,
        target_precision=evaluation.target_precision,
        min_images=evaluation.class_threshold_min_images,
        shift_mixes=evaluation.shift_check_mixes,
    )
    threshold = choices["global"]
    ensemble_test = metrics.classification_report(
        test_labels, probabilities.argmax(1), class_names, scores=probabilities
    )
    report = {
        "members": {
            name: {
                "route": members[name].identity.route,
                "model_name": members[name].model_name,
                "checkpoint_version": members[name].version,
                "temperature": temperatures[name],
                f"val_{ensembling.metric}": selection["member_val_scores"][name],
                "test": _headline(
                    metrics.classification_report(
                        test_labels, o["test"]["logits"].argmax(1), class_names
                    )
                ),
            }
            for name, o in outputs.items()
        },
        "selection": selection,
        "ensemble": {
            f"val_{ensembling.metric}": selection["val_score"],
            "test": {k: v for k, v in ensemble_test.items() if k != "per_class"},
            "open_set": {
                "chosen_on": {"split": "val", **threshold},
                "test": calibration.rejection_report(
                    probabilities, test_labels, threshold["threshold"]
                ),
                "per_class": {
                    "classes": choices["per_class"],
                    "test": calibration.class_rejection_report(
                        probabilities,
                        test_labels,
                        class_names,
                        stored["class_thresholds"],
                    ),
                },
            },
        },
        "quantification": {
            "method_choice": choices["method"],
            "simulated_shift_on_test": analysis_report.shift_on_test(
                stored, probabilities, test_labels, mixes=evaluation.shift_check_mixes
            ),
        },
        "dataset": str(manifest.attrs.get("dataset")),
        "manifest_version": manifest.attrs.get("version"),
        "selected_on": "val",
    }
    best_member = max(selection["member_val_scores"].values())
    logger.info(
        "ensemble of %s: val %s %.4f (best member %.4f) · test accuracy %.4f · f1_macro %.4f",
        "+".join(selection["selected"]),
        ensembling.metric,
        selection["val_score"],
        best_member,
        ensemble_test["accuracy"],
        ensemble_test["f1_macro"],
    )
    artefact = EnsembleCheckpoint.from_selection(
        members,
        selection,
        temperatures,
        rejection_threshold=threshold["threshold"],
        calibration={k: v for k, v in stored.items() if k != "rejection_threshold"},
    )
    return artefact, report


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in (*HEADLINE, "n_test")}
