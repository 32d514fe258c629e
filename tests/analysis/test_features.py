"""The frozen-feature probe: stratified subsample, folds for rare classes, progress lines."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from plankton_kedro.engine.analysis.features import (
    cross_validation_plan,
    fit_probe,
    stratified_subsample,
)

C_GRID = [0.01, 1.0, 100.0]


def _table(counts: dict[str, tuple[int, int]], seed: int = 0) -> pd.DataFrame:
    """Features f0000-f0007 where each class is a separate cluster; (train, test) per class."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, (label, (n_train, n_test)) in enumerate(counts.items()):
        centre = np.zeros(8)
        centre[k % 8] = 6.0
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                rows.append(
                    [f"{label}/{split}{i}.png", split, label, *(centre + rng.normal(size=8))]
                )
    columns = ["rel_path", "split", "label", *(f"f{i:04d}" for i in range(8))]
    return pd.DataFrame(rows, columns=columns)


def _probe(table: pd.DataFrame, **settings) -> dict:
    options = {"c_grid": C_GRID, "cv_folds": 5, "max_train_images": None, "seed": 0}
    return fit_probe(table, prefix="f", features_of="test", label="t", **options | settings)


def test_subsample_keeps_each_class_share_and_a_floor_for_rare_classes():
    """Catches a random (unstratified) subsample that drops or starves a rare class."""
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rows = stratified_subsample(labels, 100, min_per_class=5, seed=0)
    kept = np.bincount(labels[rows])
    assert kept.tolist() == [90, 9, 5]
    assert len(set(rows)) == len(rows)
    assert (stratified_subsample(labels, None, min_per_class=5, seed=0) == np.arange(1000)).all()


def test_classes_too_small_for_the_folds_leave_the_search_or_lower_the_folds():
    """Catches the old behaviour: one rare class made the whole probe report 'skipped'."""
    assert cross_validation_plan({"a": 40, "b": 12, "rare": 2}, 5) == (5, ["rare"])
    assert cross_validation_plan({"a": 3, "b": 2}, 5) == (2, [])
    assert cross_validation_plan({"a": 1, "b": 1}, 5) == (0, ["a", "b"])


def test_a_rare_class_is_reported_and_still_learnt(caplog):
    """Catches a rare class silently dropped from the final fit (its test images would then
    all be wrong) or the probe skipped for it."""
    table = _table({"a": (30, 10), "b": (30, 10), "rare": (2, 10)})
    with caplog.at_level(logging.INFO):
        report = _probe(table, c_grid=[10.0])  # weak regularisation: 2 images can count
    assert report["classes_left_out_of_cv"] == {"rare": 2}
    assert report["cv_folds"] == 5 and "skipped" not in report
    for name in ("logistic_regression", "svc_rbf"):
        per_class_recall = report[name]["test"]["balanced_accuracy"]
        assert per_class_recall > 0.9, (name, per_class_recall)
    assert any("left out of the cross-validation" in r.message for r in caplog.records)


def test_one_progress_line_per_value_of_c_and_classifier(caplog):
    """Catches a silent grid search (the old probe printed nothing for half a minute)."""
    with caplog.at_level(logging.INFO, logger="plankton_kedro.engine.analysis.features"):
        _probe(_table({"a": (20, 5), "b": (20, 5)}))
    progress = [
        r.message for r in caplog.records if "cv accuracy" in r.message and "/3)" in r.message
    ]
    assert len(progress) == 2 * len(C_GRID)


def test_c_is_chosen_on_train_only():
    """Catches test images leaking into the choice of C or the fit: with test labels
    shuffled the chosen C and the cross-validated scores stay the same."""
    table = _table({"a": (25, 10), "b": (25, 10), "c": (25, 10)})
    shuffled = table.copy()
    test = shuffled["split"] == "test"
    shuffled.loc[test, "label"] = np.random.default_rng(1).permutation(shuffled.loc[test, "label"])
    original, leaked = _probe(table), _probe(shuffled)
    for name in ("logistic_regression", "svc_rbf"):
        assert original[name]["cv_accuracy_by_C"] == leaked[name]["cv_accuracy_by_C"]
        assert original[name]["best_C"] == leaked[name]["best_C"]
        assert original[name]["test"]["accuracy"] > leaked[name]["test"]["accuracy"]
