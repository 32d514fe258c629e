"""The paper's feature path: frozen 512-d bottleneck features (optionally the backbone's
features too) -> StandardScaler -> LogisticRegression or SVC (RBF), C chosen by
cross-validation on the train split only."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .metrics import classification_report

logger = logging.getLogger(__name__)

# Cross-validation folds run on every core from this many training images on; below it,
# starting the worker processes costs more than it saves.
PARALLEL_FROM = 1000

# feature set -> (key in the predictions, column prefix, digits of the column number)
FEATURE_SETS = {"bottleneck": ("embeddings", "b", 3), "backbone": ("backbone_features", "f", 4)}


def feature_frame(
    predictions: dict[str, dict[str, Any]], class_names: Sequence[str]
) -> pd.DataFrame:
    """One row per image of every split: rel_path, split, label, the bottleneck features
    b000… and, when predicted, the backbone features f0000…"""
    frames = []
    for split, outputs in predictions.items():
        blocks = [
            pd.DataFrame(
                outputs[key],
                columns=[f"{prefix}{i:0{digits}d}" for i in range(outputs[key].shape[1])],
            )
            for key, prefix, digits in FEATURE_SETS.values()
            if outputs.get(key) is not None
        ]
        frame = pd.concat(blocks, axis=1)
        frame.insert(0, "label", [class_names[i] for i in outputs["labels"]])
        frame.insert(0, "split", split)
        frame.insert(0, "rel_path", outputs["rel_path"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def feature_sets_in(features: pd.DataFrame) -> list[str]:
    """Which feature sets (``bottleneck``, ``backbone``) a feature table holds."""
    return [
        name
        for name, (_, prefix, _) in FEATURE_SETS.items()
        if any(c.startswith(prefix) and c[1:].isdigit() for c in features.columns)
    ]


def fit_feature_classifiers(
    features: pd.DataFrame,
    *,
    feature_set: str = "bottleneck",
    c_grid: Sequence[float],
    cv_folds: int,
    max_train_images: int,
    seed: int,
) -> dict[str, Any]:
    """Grid-search C for each classifier on train (stratified CV), report test metrics."""
    prefix = FEATURE_SETS[feature_set][1]
    columns = [c for c in features.columns if c.startswith(prefix) and c[1:].isdigit()]
    class_names = sorted(features["label"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    train = features[features["split"] == "train"]
    if len(train) > max_train_images:
        train = train.sample(max_train_images, random_state=seed)
    test = features[features["split"] == "test"]
    x_train, y_train = train[columns].to_numpy(), train["label"].map(index).to_numpy()
    x_test, y_test = test[columns].to_numpy(), test["label"].map(index).to_numpy()
    folds = min(cv_folds, int(np.bincount(y_train).min()))
    if folds < 2:
        return {"skipped": "a class has fewer than 2 training images: no cross-validation"}
    report = {"train_images": len(train), "cv_folds": folds, "c_grid": list(c_grid)}
    classifiers = {
        "logistic_regression": LogisticRegression(max_iter=300),
        "svc_rbf": SVC(kernel="rbf"),
    }
    for name, classifier in classifiers.items():
        search = GridSearchCV(
            make_pipeline(StandardScaler(), classifier),
            {f"{type(classifier).__name__.lower()}__C": list(c_grid)},
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            scoring="accuracy",
            n_jobs=-1 if len(train) >= PARALLEL_FROM else 1,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            search.fit(x_train, y_train)
        predicted = search.predict(x_test)
        best_c = next(iter(search.best_params_.values()))
        report[name] = {
            "best_C": float(best_c),
            "cv_accuracy": float(search.best_score_),
            "all_fits_converged": not any(w.category is ConvergenceWarning for w in caught),
            "test": {
                k: v
                for k, v in classification_report(y_test, predicted, class_names).items()
                if k not in ("per_class", "confusion_matrix")
            },
        }
        logger.info(
            "%s on %s features: C=%g, cv accuracy %.4f, test accuracy %.4f",
            name,
            feature_set,
            best_c,
            search.best_score_,
            report[name]["test"]["accuracy"],
        )
    return report
