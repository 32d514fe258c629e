"""Classification metrics (scikit-learn) and the confusion-matrix figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def selection_score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """The model-selection metric: ``accuracy`` or ``f1_macro``."""
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if metric == "f1_macro":
        return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    raise ValueError(f"unknown selection metric '{metric}' (use 'accuracy' or 'f1_macro')")


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Headline and per-class metrics as a JSON-ready dict."""
    labels = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": _f1(y_true, y_pred, labels, "macro"),
        "f1_micro": _f1(y_true, y_pred, labels, "micro"),
        "f1_weighted": _f1(y_true, y_pred, labels, "weighted"),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "n_test": int(len(y_true)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
    }


def _f1(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int], average: str) -> float:
    return float(skm.f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0))


def confusion_matrix_figure(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], title: str = ""
) -> plt.Figure:
    """Row-normalised confusion matrix with the counts written in each non-empty cell."""
    counts = skm.confusion_matrix(y_true, y_pred, labels=list(range(len(class_names))))
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = max(4.0, 0.45 * len(class_names) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if len(class_names) <= 40:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                colour = "white" if normalised[i, j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig
