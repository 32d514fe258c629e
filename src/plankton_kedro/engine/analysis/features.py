"""The paper's frozen-feature probe: StandardScaler -> LogisticRegression or SVC (RBF) on
frozen features, C chosen by stratified cross-validation on the train split only, then
reported on the test split.

The paper's probe reads the features of the backbone a route fine-tunes from, before any
target training; features of the fine-tuned model itself are available too, labelled as such.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .metrics import classification_report

logger = logging.getLogger(__name__)

# Cross-validation folds run on every core from this many training images on; below it,
# starting the worker processes costs more than it saves.
PARALLEL_FROM = 1000

# predictions key -> (column prefix, digits of the column number)
FEATURE_COLUMNS = {"embeddings": ("b", 3), "backbone_features": ("f", 4)}

# probe name (evaluation.feature_classifiers.features) -> column prefix in its table
PROBE_PREFIX = {"pretrained": "f", "fine_tuned_bottleneck": "b", "fine_tuned_backbone": "f"}

CLASSIFIERS: dict[str, Callable[[float], ClassifierMixin]] = {
    "logistic_regression": lambda c: LogisticRegression(C=c, max_iter=300),
    "svc_rbf": lambda c: SVC(kernel="rbf", C=c),
}


def feature_frame(
    predictions: dict[str, dict[str, Any]], class_names: Sequence[str]
) -> pd.DataFrame:
    """One row per image of every split: rel_path, split, label, then the bottleneck
    features b000… and/or the backbone features f0000… present in ``predictions``."""
    frames = []
    for split, outputs in predictions.items():
        blocks = [
            pd.DataFrame(
                outputs[key],
                columns=[f"{prefix}{i:0{digits}d}" for i in range(outputs[key].shape[1])],
            )
            for key, (prefix, digits) in FEATURE_COLUMNS.items()
            if outputs.get(key) is not None
        ]
        frame = pd.concat(blocks, axis=1)
        frame.insert(0, "label", [class_names[i] for i in outputs["labels"]])
        frame.insert(0, "split", split)
        frame.insert(0, "rel_path", outputs["rel_path"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def feature_columns(features: pd.DataFrame, prefix: str) -> list[str]:
    """The feature columns with ``prefix`` (``b`` bottleneck, ``f`` backbone)."""
    return [c for c in features.columns if c.startswith(prefix) and c[1:].isdigit()]


def stratified_subsample(
    labels: np.ndarray, max_images: int | None, *, min_per_class: int, seed: int
) -> np.ndarray:
    """Sorted row positions of a seeded subsample of about ``max_images`` rows that keeps
    each class's share, and at least ``min_per_class`` rows of every class that has them
    (so that rare classes stay in cross-validation). ``None``: every row."""
    if max_images is None or len(labels) <= max_images:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    share = max_images / len(labels)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        keep = max(min(len(rows), min_per_class), int(np.floor(len(rows) * share)))
        chosen.append(rng.choice(rows, size=keep, replace=False))
    return np.sort(np.concatenate(chosen))


def cross_validation_plan(counts: dict[str, int], cv_folds: int) -> tuple[int, list[str]]:
    """Folds and the classes left out of cross-validation for per-class training counts.

    A class needs at least one image per fold to be stratified: classes with fewer than
    ``cv_folds`` images are left out of the search for C (they are still in the final fit);
    when fewer than two classes would remain, the folds drop to the largest number that
    keeps two. ``(0, all classes)`` when no two classes have two images.
    """
    for folds in range(cv_folds, 1, -1):
        kept = [name for name, n in counts.items() if n >= folds]
        if len(kept) >= 2:
            return folds, sorted(set(counts) - set(kept))
    return 0, sorted(counts)


def fit_probe(
    features: pd.DataFrame,
    *,
    prefix: str,
    features_of: str,
    c_grid: Sequence[float],
    cv_folds: int,
    max_train_images: int | None,
    seed: int,
    label: str,
) -> dict[str, Any]:
    """Each classifier of :data:`CLASSIFIERS`: C by stratified k-fold CV on (a stratified
    subsample of) the train split, refit on it with the best C, scored on the test split.

    ``features``: a table of :func:`feature_frame`'s layout; ``prefix`` picks its feature
    columns; ``features_of`` says which network made them (for the report); ``label`` names
    the probe in the progress lines.
    """
    columns = feature_columns(features, prefix)
    class_names = sorted(features["label"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    train_all = features[features["split"] == "train"]
    y_all = train_all["label"].map(index).to_numpy()
    rows = stratified_subsample(y_all, max_train_images, min_per_class=cv_folds, seed=seed)
    train = train_all.iloc[rows]
    test = features[features["split"] == "test"]
    x_train, y_train = train[columns].to_numpy(), train["label"].map(index).to_numpy()
    x_test, y_test = test[columns].to_numpy(), test["label"].map(index).to_numpy()
    counts = train["label"].value_counts().to_dict()
    folds, left_out = cross_validation_plan(counts, cv_folds)
    report: dict[str, Any] = {
        "features_of": features_of,
        "dimensions": len(columns),
        "train_images": len(train),
        "train_images_in_split": len(train_all),
        "subsample": "all" if len(train) == len(train_all) else f"stratified, seed {seed}",
        "test_images": len(test),
        "cv_folds": folds,
        "classes_left_out_of_cv": {name: int(counts[name]) for name in left_out},
        "c_grid": [float(c) for c in c_grid],
    }
    if folds == 0:
        report["skipped"] = (
            "no two classes have two training images, so C cannot be cross-validated "
            f"(training images per class: {counts})"
        )
        logger.warning("%s probe skipped: %s", label, report["skipped"])
        return report
    if left_out:
        logger.warning(
            "%s probe: %d class(es) with fewer than %d training images left out of the "
            "cross-validation (still in the final fit): %s",
            label,
            len(left_out),
            folds,
            ", ".join(f"{name} ({counts[name]})" for name in left_out),
        )
    in_cv = ~train["label"].isin(left_out).to_numpy()
    for name, make in CLASSIFIERS.items():
        report[name] = _grid_search_and_test(
            make,
            (x_train, y_train),
            (x_test, y_test),
            in_cv,
            c_grid=c_grid,
            folds=folds,
            seed=seed,
            class_names=class_names,
            label=f"{label} probe, {name}",
        )
    return report


def _grid_search_and_test(
    make: Callable[[float], ClassifierMixin],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    in_cv: np.ndarray,
    *,
    c_grid: Sequence[float],
    folds: int,
    seed: int,
    class_names: list[str],
    label: str,
) -> dict[str, Any]:
    """Mean CV accuracy per C (a progress line each), the best C refit on all of train."""
    x_train, y_train = train
    x_cv, y_cv = x_train[in_cv], y_train[in_cv]
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    n_jobs = -1 if len(y_cv) >= PARALLEL_FROM else 1
    scores: dict[float, float] = {}
    for step, c in enumerate(c_grid, 1):
        started = time.perf_counter()
        pipeline: Pipeline = make_pipeline(StandardScaler(), make(c))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fold_scores = cross_val_score(pipeline, x_cv, y_cv, cv=splitter, n_jobs=n_jobs)
        scores[float(c)] = float(np.mean(fold_scores))
        logger.info(
            "%s: C=%g (%d/%d) cv accuracy %.4f · %d folds of %d images · %.1f s",
            label,
            c,
            step,
            len(c_grid),
            scores[float(c)],
            folds,
            len(y_cv),
            time.perf_counter() - started,
        )
    best_c = max(scores, key=scores.get)  # the first of equals: the smallest C
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        final = make_pipeline(StandardScaler(), make(best_c)).fit(x_train, y_train)
    x_test, y_test = test
    tested = classification_report(y_test, final.predict(x_test), class_names)
    result = {
        "best_C": best_c,
        "cv_accuracy": scores[best_c],
        "cv_accuracy_by_C": {f"{c:g}": score for c, score in scores.items()},
        "final_fit_converged": not any(w.category is ConvergenceWarning for w in caught),
        "test": {k: v for k, v in tested.items() if k not in ("per_class", "confusion_matrix")},
    }
    logger.info(
        "%s: C=%g, cv accuracy %.4f, test accuracy %.4f",
        label,
        best_c,
        scores[best_c],
        result["test"]["accuracy"],
    )
    return result
