"""Confidence calibration (ECE, reliability diagrams, temperature scaling) and open-set
rejection: thresholds on the max probability, chosen on validation data, applied to test data."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

from plankton_kedro.engine.rejection import accepted, class_thresholds_array  # noqa: E402

#: Search interval for the temperature (optimised as log T).
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, shifted by the row maximum for stability."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _confidence_and_correct(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Max probability per row, and whether its argmax is the label."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    return probabilities.max(axis=1), correct.astype(np.float64)


def _bin_statistics(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, accuracy and mean confidence of equal-width bins ((m-1)/M, m/M]; empty bins 0."""
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.searchsorted(inner_edges, confidence, side="left")
    counts = np.bincount(bins, minlength=n_bins)
    safe = np.maximum(counts, 1)
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / safe
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / safe
    return counts, accuracy, mean_confidence


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> float:
    """ECE (Guo et al. 2017): the bin-size-weighted mean |accuracy - confidence| gap over
    equal-width max-probability bins; 0.0 for empty input."""
    confidence, correct = _confidence_and_correct(probabilities, labels)
    if confidence.size == 0:
        return 0.0
    counts, accuracy, mean_confidence = _bin_statistics(confidence, correct, n_bins)
    return float(np.sum(counts * np.abs(accuracy - mean_confidence)) / confidence.size)


def reliability_diagram(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15, title: str = ""
) -> plt.Figure:
    """Accuracy per confidence bin against the diagonal, with the gap to each bin's mean
    confidence shaded, above a histogram of the confidences."""
    confidence, correct = _confidence_and_correct(probabilities, labels)
    counts, accuracy, mean_confidence = _bin_statistics(confidence, correct, n_bins)
    ece = expected_calibration_error(probabilities, labels, n_bins)
    left_edges = np.linspace(0.0, 1.0, n_bins + 1)[:-1]
    width = 1.0 / n_bins
    filled = counts > 0

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.bar(
        left_edges[filled],
        accuracy[filled],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.6,
        label="accuracy",
    )
    top.bar(
        left_edges[filled],
        (mean_confidence - accuracy)[filled],
        bottom=accuracy[filled],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.6,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.plot([], [], " ", label=f"ECE = {ece:.3f}")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title, fontsize=9)
    top.legend(loc="upper left", fontsize=8)

    bottom.bar(left_edges, counts, width=width, align="edge", color="grey", edgecolor="black")
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("images")
    fig.tight_layout()
    return fig


def negative_log_likelihood(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean negative log-probability of the true labels under ``softmax(logits / T)``;
    0.0 for empty input."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if scaled.shape[0] == 0:
        return 0.0
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(scaled)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising validation NLL, found by a
    bounded scalar search over log T; 1.0 for empty input or when no T beats T = 1."""
    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=tuple(math.log(t) for t in TEMPERATURE_BOUNDS),
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = math.exp(float(result.x))
    if negative_log_likelihood(logits, labels, temperature) > negative_log_likelihood(
        logits, labels
    ):
        return 1.0
    return temperature


def choose_rejection_threshold(
    probabilities: np.ndarray, labels: np.ndarray, target_precision: float
) -> dict:
    """Pick, on validation data, the smallest max-probability threshold whose accepted images
    (max prob >= threshold) reach ``target_precision`` accuracy, i.e. the largest such coverage.

    Candidates are the distinct max probabilities. If none reaches the target, the one with the
    highest accuracy on accepted (ties: higher coverage) is returned with ``met`` False.
    """
    confidence, correct = _confidence_and_correct(probabilities, labels)
    if confidence.size == 0:
        raise ValueError("choosing a rejection threshold needs at least one validation image")
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    # Accepting every image with confidence >= c ends at the last (descending) copy of c.
    group_ends = np.flatnonzero(np.append(confidence[1:] != confidence[:-1], True))
    n_accepted = group_ends + 1
    accuracy = np.cumsum(correct)[group_ends] / n_accepted
    meets = accuracy >= target_precision
    if meets.any():
        best = int(np.flatnonzero(meets)[-1])
    else:
        best = int(np.flatnonzero(accuracy == accuracy.max())[-1])
    return {
        "threshold": float(confidence[group_ends[best]]),
        "target_precision": float(target_precision),
        "val_coverage": float(n_accepted[best] / confidence.size),
        "val_accuracy_on_accepted": float(accuracy[best]),
        "met": bool(meets[best]),
    }


def rejection_report(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Apply a threshold chosen elsewhere: coverage and accuracy of the accepted images, and the
    accuracy the rejected ones would have had (None where a group is empty)."""
    confidence, correct = _confidence_and_correct(probabilities, labels)
    accepted = confidence >= threshold
    n_accepted = int(accepted.sum())
    n_rejected = int(confidence.size - n_accepted)
    return {
        "threshold": float(threshold),
        "coverage": float(n_accepted / confidence.size) if confidence.size else 0.0,
        "accuracy_on_accepted": float(correct[accepted].mean()) if n_accepted else None,
        "n_accepted": n_accepted,
        "n_rejected": n_rejected,
        "rejected_accuracy_if_kept": float(correct[~accepted].mean()) if n_rejected else None,
    }


def choose_class_thresholds(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    target_precision: float,
    *,
    global_threshold: float,
    min_images: int,
) -> dict[str, dict]:
    """A threshold per predicted class: among the held-out images predicted as that class, the
    smallest max probability whose accepted images reach ``target_precision`` (that class's
    precision); no higher than the global one when all of them reach it. Classes predicted for
    fewer than ``min_images`` images keep the global one."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    chosen = {}
    for index, name in enumerate(class_names):
        mine = predicted == index
        if mine.sum() < min_images:
            chosen[name] = {
                "threshold": float(global_threshold),
                "from": "global",
                "val_predicted": int(mine.sum()),
            }
            continue
        picked = choose_rejection_threshold(probabilities[mine], labels[mine], target_precision)
        own = picked["threshold"]
        if picked["met"] and picked["val_coverage"] == 1.0:
            # every image met the target down to the least sure: this class's own threshold
            # says nothing below that, so it accepts what the global one accepts as well
            own = min(own, float(global_threshold))
        chosen[name] = {
            "threshold": own,
            "from": "class",
            "val_predicted": int(mine.sum()),
            "val_coverage": picked["val_coverage"],
            "val_precision_on_accepted": picked["val_accuracy_on_accepted"],
            "met": picked["met"],
        }
    return chosen


def class_rejection_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    class_thresholds: dict[str, float],
) -> dict:
    """Apply per-class thresholds chosen elsewhere (``{class: threshold}``): overall coverage
    and accuracy on accepted, and per predicted class its threshold, images, coverage and
    precision on accepted."""
    thresholds = class_thresholds_array(class_names, class_thresholds, None)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    keep = accepted(probabilities, thresholds)
    correct = predicted == labels
    per_class = {}
    for index, name in enumerate(class_names):
        mine = predicted == index
        kept = mine & keep
        per_class[name] = {
            "threshold": float(thresholds[index]),
            "predicted": int(mine.sum()),
            "coverage": float(kept.sum() / mine.sum()) if mine.any() else None,
            "accuracy_on_accepted": float(correct[kept].mean()) if kept.any() else None,
        }
    return {
        "coverage": float(keep.mean()) if len(keep) else 0.0,
        "accuracy_on_accepted": float(correct[keep].mean()) if keep.any() else None,
        "n_accepted": int(keep.sum()),
        "n_rejected": int((~keep).sum()),
        "per_class": per_class,
    }
