"""Classification metrics (scikit-learn) and the confusion-matrix figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def selection_score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """The model-selection metric: ``accuracy`` or ``f1_macro``."""
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if metric == "f1_macro":
        return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    raise ValueError(f"unknown selection metric '{metric}' (use 'accuracy' or 'f1_macro')")


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    top_k: Sequence[int] = (3, 5),
) -> dict:
    """Headline and per-class metrics as a JSON-ready dict (``scores``: logits or
    probabilities, for top-k accuracy)."""
    labels = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    counts = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": _f1(y_true, y_pred, labels, "macro"),
        "f1_micro": _f1(y_true, y_pred, labels, "micro"),
        "f1_weighted": _f1(y_true, y_pred, labels, "weighted"),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "n_test": int(len(y_true)),
        **_top_k_accuracies(y_true, scores, labels, top_k),
        "most_confused": most_confused_pairs(counts, class_names),
        "confusion_matrix": counts.tolist(),
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


def _top_k_accuracies(
    y_true: np.ndarray, scores: np.ndarray | None, labels: list[int], top_k: Sequence[int]
) -> dict[str, float]:
    if scores is None or len(y_true) == 0:
        return {}
    return {
        f"top{k}_accuracy": float(skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels))
        for k in top_k
        if k < len(labels)
    }


def most_confused_pairs(
    counts: np.ndarray, class_names: Sequence[str], limit: int = 10
) -> list[dict]:
    """The largest off-diagonal cells of a confusion matrix: which class is taken for which."""
    off_diagonal = counts.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None, kind="stable")[:limit]
    rows = counts.sum(axis=1)
    pairs = []
    for true, predicted in zip(*np.unravel_index(order, counts.shape), strict=True):
        if off_diagonal[true, predicted] == 0:
            break
        pairs.append(
            {
                "true": class_names[true],
                "predicted": class_names[predicted],
                "count": int(off_diagonal[true, predicted]),
                "fraction_of_true": float(off_diagonal[true, predicted] / rows[true]),
            }
        )
    return pairs


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


def route_comparison_figure(runs: pd.DataFrame) -> plt.Figure:
    """Bars of mean accuracy and F1 macro per route (one row of ``runs`` per route and seed),
    std error bars, one dot per seed."""
    routes = sorted(runs["route"].unique())
    metrics = ["accuracy", "f1_macro"]
    width = 0.38
    fig, ax = plt.subplots(figsize=(1.9 * len(routes) + 2.5, 4.2))
    for j, metric in enumerate(metrics):
        positions = np.arange(len(routes)) + (j - 0.5) * width
        groups = [runs.loc[runs["route"] == r, metric].to_numpy(dtype=float) for r in routes]
        means = [g.mean() for g in groups]
        stds = [g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]
        ax.bar(positions, means, width, yerr=stds, capsize=4, label=metric.replace("_", " "))
        for x, values in zip(positions, groups, strict=True):
            ax.scatter(np.full(len(values), x), values, color="black", s=10, zorder=3)
        for x, mean in zip(positions, means, strict=True):
            ax.text(x, mean / 2, f"{mean:.3f}", ha="center", color="white", fontsize=8)
    ax.set_xticks(np.arange(len(routes)), routes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("target test split")
    seeds = runs.groupby("route")["seed"].nunique().max()
    ax.set_title(f"Transfer routes: mean ± std over {seeds} seed(s), dots = single runs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def label_budget_figure(table: pd.DataFrame) -> plt.Figure:
    """Accuracy and F1 macro (two panels) against labelled train images per class, one line
    per route, mean ± std band over seeds. ``table``: one row per route and budget with
    ``labels_per_class`` (empty: every image, drawn at its mean ``train_per_class``),
    ``seeds`` and ``<metric>_mean`` / ``<metric>_std``."""
    budgets = table["labels_per_class"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("accuracy", "f1_macro"), strict=True):
        for route, rows in table.groupby("route", sort=True):
            rows = rows.assign(
                x=rows["labels_per_class"].astype(float).fillna(rows["train_per_class"])
            ).sort_values("x")
            mean = rows[f"{metric}_mean"].to_numpy(dtype=float)
            std = np.nan_to_num(rows[f"{metric}_std"].to_numpy(dtype=float))
            (line,) = ax.plot(rows["x"], mean, marker="o", label=route)
            ax.fill_between(rows["x"], mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ticks = {float(b): str(int(b)) for b in budgets.dropna().unique()}
        every = table.loc[budgets.isna(), "train_per_class"]
        if len(every):  # "all" at the mean number of train images per class
            ticks[float(every.mean())] = f"all ({every.mean():.0f})"
        ax.set_xticks(sorted(ticks), [ticks[t] for t in sorted(ticks)])
        ax.minorticks_off()
        ax.set_xlabel("labelled train images per class")
        ax.set_title(metric.replace("_", " "))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("target test split")
    axes[0].legend(loc="lower right")
    seeds = int(table["seeds"].max())
    fig.suptitle(f"How many images must be labelled? mean ± std over {seeds} seed(s)")
    fig.tight_layout()
    return fig
