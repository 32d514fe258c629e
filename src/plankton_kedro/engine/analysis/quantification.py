"""How many of each taxon were in a sample, corrected for the classifier's errors.

Classify-and-count is biased whenever a sample's class mix differs from the training mix: a
classifier that takes 5 % of detritus for copepods adds 5 % of the detritus to the copepods.
The quantification literature corrects this with what the model does on held-out labelled
images (here the split the calibration was fitted on: validation, or ``calibration``):

- ``classify_and_count`` (CC): the fractions of the predicted labels;
- ``adjusted_count`` (ACC, Forman 2008): solve ``q = R^T p`` with ``R[i, j] = P(predicted j |
  true i)`` measured on validation, ``q`` the sample's predicted fractions;
- ``probabilistic_adjusted_count`` (PACC, Bella et al. 2010): the same with mean probabilities
  in place of hard predictions;
- ``em_prior_adjustment`` (EM, Saerens et al. 2002): re-weight the calibrated posteriors by the
  ratio of the sample's prior to the training prior until the prior is a fixed point.

The linear solves can give negative fractions (sampling noise, a near-singular ``R``): they are
clipped to 0 and renormalised, and the estimate says so (``clipped``). Intervals are percentile
bootstrap intervals that resample the sample's images and, for ACC and PACC, the validation
images behind ``R`` (exactly, per class, for ACC; by a normal approximation of each class's mean
probability for PACC, as only per-class means and standard deviations are stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("classify_and_count", "adjusted_count", "probabilistic_adjusted_count", "em")

METHOD_LABELS = {
    "classify_and_count": "raw count",
    "adjusted_count": "adjusted count (ACC)",
    "probabilistic_adjusted_count": "probabilistic ACC",
    "em": "EM prior adjustment",
}

#: Digits kept when the fitted statistics are written to JSON with the calibration.
_DIGITS = 6


def fit_quantifier(
    probabilities: np.ndarray, labels: np.ndarray, train_counts: Sequence[int]
) -> dict[str, Any]:
    """What the corrections need, from the model's calibrated probabilities on held-out
    labelled images: per true class, the counts of each predicted class, the mean and standard
    deviation of each class's probability; and the training prior (for EM; the held-out mix
    when ``train_counts`` are all zero). JSON-ready."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    k = probabilities.shape[1]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(1)), 1)
    mean = np.zeros((k, k))
    std = np.zeros((k, k))
    for i in range(k):
        rows = probabilities[labels == i]
        if len(rows):
            mean[i], std[i] = rows.mean(0), rows.std(0)
    train_counts = np.asarray(train_counts, dtype=np.float64)
    if train_counts.shape != (k,):
        raise ValueError(f"train_counts must give one count per class ({k})")
    prior_from = "train"
    if train_counts.sum() <= 0:  # no training rows in the manifest: the held-out mix it is
        train_counts, prior_from = confusion.sum(1).astype(np.float64), "held_out"
    return {
        "class_counts": confusion.sum(1).tolist(),
        "confusion_counts": confusion.tolist(),
        "mean_probabilities": np.round(mean, _DIGITS).tolist(),
        "probability_std": np.round(std, _DIGITS).tolist(),
        "train_prior": np.round(train_counts / max(train_counts.sum(), 1), _DIGITS).tolist(),
        "train_prior_from": prior_from,
    }


@dataclass(frozen=True)
class Quantifier:
    """The fitted statistics as arrays; classes without held-out images are assumed to be
    recognised perfectly (an identity row), which is all that can be said of them."""

    class_counts: np.ndarray
    rates: np.ndarray
    mean_probabilities: np.ndarray
    probability_std: np.ndarray
    train_prior: np.ndarray

    @classmethod
    def from_fitted(cls, fitted: dict[str, Any]) -> Quantifier:
        counts = np.asarray(fitted["class_counts"], dtype=np.float64)
        confusion = np.asarray(fitted["confusion_counts"], dtype=np.float64)
        unseen = counts == 0
        identity = np.eye(len(counts))
        rates = np.where(unseen[:, None], identity, confusion / np.maximum(counts, 1)[:, None])
        mean = np.asarray(fitted["mean_probabilities"], dtype=np.float64)
        return cls(
            class_counts=counts,
            rates=rates,
            mean_probabilities=np.where(unseen[:, None], identity, mean),
            probability_std=np.asarray(fitted["probability_std"], dtype=np.float64),
            train_prior=np.asarray(fitted["train_prior"], dtype=np.float64),
        )

    @property
    def unseen_classes(self) -> np.ndarray:
        """Indices of the classes with no held-out image (their error rates are unknown)."""
        return np.flatnonzero(self.class_counts == 0)

    @property
    def never_predicted(self) -> np.ndarray:
        """Indices of the classes no held-out image was predicted as: ``R`` is then singular,
        so ACC's counts for them are one least-squares answer among many."""
        return np.flatnonzero(self.rates.sum(0) == 0)


def classify_and_count(probabilities: np.ndarray) -> np.ndarray:
    """Fractions of the predicted (argmax) labels."""
    k = probabilities.shape[1]
    return np.bincount(probabilities.argmax(1), minlength=k) / max(len(probabilities), 1)


def adjusted_count(observed: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, bool]:
    """The class fractions ``p`` whose expected observation ``rates^T p`` is ``observed``
    (least squares), clipped to the simplex; and whether clipping was needed."""
    solution, *_ = np.linalg.lstsq(rates.T, observed, rcond=None)
    return _onto_simplex(solution)


def probabilistic_adjusted_count(
    probabilities: np.ndarray, mean_probabilities: np.ndarray
) -> tuple[np.ndarray, bool]:
    """PACC: :func:`adjusted_count` of the sample's mean probability vector."""
    return adjusted_count(probabilities.mean(0), mean_probabilities)


def em_prior_adjustment(
    probabilities: np.ndarray,
    train_prior: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    tolerance: float = 1e-8,
    max_iterations: int = 1000,
) -> np.ndarray:
    """Saerens et al. (2002): the sample prior that is a fixed point of re-weighting the
    posteriors by ``prior / train_prior`` (``weights``: how often each image counts, for the
    bootstrap). Classes absent from training keep prior 0."""
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    base = np.where(train_prior > 0, train_prior, 1.0)
    prior = train_prior.copy()
    for _ in range(max_iterations):
        adjusted = probabilities * (prior / base)
        adjusted /= np.maximum(adjusted.sum(1, keepdims=True), 1e-300)
        updated = weights @ adjusted / weights.sum()
        if np.abs(updated - prior).max() < tolerance:
            return updated
        prior = updated
    return prior


def estimate(probabilities: np.ndarray, quantifier: Quantifier | None) -> dict[str, tuple]:
    """Each method's fractions and whether it was clipped, for one sample (raw counts only
    without a quantifier: a model evaluation never fitted)."""
    raw = classify_and_count(probabilities)
    if quantifier is None:
        return {"classify_and_count": (raw, False)}
    return {
        "classify_and_count": (raw, False),
        "adjusted_count": adjusted_count(raw, quantifier.rates),
        "probabilistic_adjusted_count": probabilistic_adjusted_count(
            probabilities, quantifier.mean_probabilities
        ),
        "em": (em_prior_adjustment(probabilities, quantifier.train_prior), False),
    }


def bootstrap_intervals(
    probabilities: np.ndarray,
    quantifier: Quantifier | None,
    *,
    replicates: int,
    confidence: float,
    seed: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Percentile intervals of each method's fractions: ``(low, high)`` per method."""
    rng = np.random.default_rng(seed)
    n, k = probabilities.shape
    predicted = probabilities.argmax(1)
    methods = METHODS if quantifier is not None else METHODS[:1]
    draws = {method: np.empty((replicates, k)) for method in methods}
    counts = None if quantifier is None else quantifier.class_counts.astype(np.int64)
    for b in range(replicates):
        weights = rng.multinomial(n, np.full(n, 1.0 / n))  # how often each image is drawn
        observed = np.bincount(predicted, weights=weights, minlength=k) / n
        draws["classify_and_count"][b] = observed
        if quantifier is None:
            continue
        rates = _resampled_rates(rng, counts, quantifier.rates)
        mean_rows = _resampled_means(rng, counts, quantifier)
        draws["adjusted_count"][b] = adjusted_count(observed, rates)[0]
        draws["probabilistic_adjusted_count"][b] = adjusted_count(
            weights @ probabilities / n, mean_rows
        )[0]
        draws["em"][b] = em_prior_adjustment(
            probabilities, quantifier.train_prior, weights=weights, tolerance=1e-6
        )
    tail = (1 - confidence) / 2 * 100
    return {
        method: (np.percentile(values, tail, axis=0), np.percentile(values, 100 - tail, axis=0))
        for method, values in draws.items()
    }


def shift_check(
    probabilities: np.ndarray,
    labels: np.ndarray,
    quantifier: Quantifier,
    *,
    mixes: int = 20,
    concentration: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """How far each method lands from the truth when the class mix shifts: the labelled
    images (test split) are resampled ``mixes`` times, each to a class mix drawn from a
    Dirichlet(``concentration``) (far from the training mix), and each method's error is the
    mean absolute difference of its fractions from the true fractions, averaged over mixes."""
    rng = np.random.default_rng(seed)
    k = probabilities.shape[1]
    present = np.flatnonzero(np.bincount(labels, minlength=k) > 0)
    errors = {method: [] for method in METHODS}
    size = len(labels)
    for _ in range(mixes):
        mix = np.zeros(k)
        mix[present] = rng.dirichlet(np.full(len(present), concentration))
        per_class = rng.multinomial(size, mix)
        chosen = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), count) for c, count in enumerate(per_class)]
        ).astype(int)
        truth = per_class / size
        for method, (fractions, _) in estimate(probabilities[chosen], quantifier).items():
            errors[method].append(float(np.abs(fractions - truth).mean()))
    mean_errors = {method: float(np.mean(values)) for method, values in errors.items()}
    raw = mean_errors["classify_and_count"]
    return {
        "mixes": mixes,
        "dirichlet_concentration": concentration,
        "images_per_mix": size,
        "mean_absolute_error": mean_errors,
        "error_relative_to_raw": {
            method: (error / raw if raw > 0 else None) for method, error in mean_errors.items()
        },
    }


def choose_method(
    probabilities: np.ndarray,
    labels: np.ndarray,
    train_counts: Sequence[int],
    *,
    mixes: int = 20,
    splits: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The estimate to recommend for a model, chosen on its held-out labelled images only:
    they are split into two stratified halves, the corrections fitted on one half are scored
    under simulated shift (:func:`shift_check`) on the other, both ways, over ``splits``
    random splits (one split alone is noisy on small sets), and the method with the smallest
    mean error wins (raw counts included: with few images per class the linear corrections
    can be worse than counting)."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    rng = np.random.default_rng(seed)
    errors = {method: [] for method in METHODS}
    for _ in range(splits):
        first = np.zeros(len(labels), dtype=bool)
        for label in np.unique(labels):
            first[rng.permutation(np.flatnonzero(labels == label))[::2]] = True
        for fit, scored in ((first, ~first), (~first, first)):
            if not scored.any():
                continue
            fitted = fit_quantifier(probabilities[fit], labels[fit], train_counts)
            checked = shift_check(
                probabilities[scored],
                labels[scored],
                Quantifier.from_fitted(fitted),
                mixes=mixes,
                seed=int(rng.integers(2**31)),
            )
            for method, error in checked["mean_absolute_error"].items():
                errors[method].append(error)
    mean_errors = {method: float(np.mean(values)) for method, values in errors.items()}
    return {
        "chosen_on": f"{splits} x two halves of the held-out split, each scored with the "
        "other's fit",
        "mixes": mixes,
        "mean_absolute_error": mean_errors,
        "recommended": min(METHODS, key=lambda method: mean_errors[method]),
    }


def _onto_simplex(solution: np.ndarray) -> tuple[np.ndarray, bool]:
    clipped = bool((solution < 0).any())
    solution = np.clip(solution, 0, None)
    total = solution.sum()
    if total <= 0:  # nothing left after clipping: no information, say uniform
        return np.full(len(solution), 1 / len(solution)), True
    return solution / total, clipped


def _resampled_rates(rng: np.random.Generator, counts: np.ndarray, rates: np.ndarray):
    """``R`` re-measured on a stratified bootstrap of the held-out images (exact: each row is
    a multinomial draw of that class's predictions)."""
    rows = [
        rng.multinomial(n, row / row.sum()) / n if n else row
        for n, row in zip(counts, rates, strict=True)
    ]
    return np.asarray(rows, dtype=np.float64)


def _resampled_means(rng: np.random.Generator, counts: np.ndarray, quantifier: Quantifier):
    """Each class's mean probability vector, perturbed by its standard error, back on the
    simplex."""
    noise = rng.standard_normal(quantifier.mean_probabilities.shape)
    scale = quantifier.probability_std / np.sqrt(np.maximum(counts, 1))[:, None]
    rows = np.clip(quantifier.mean_probabilities + noise * scale, 0, None)
    return rows / np.maximum(rows.sum(1, keepdims=True), 1e-12)


def abundance_table(
    probabilities: np.ndarray,
    samples: Sequence[str],
    class_names: Sequence[str],
    quantifier: Quantifier | None,
    *,
    replicates: int,
    confidence: float,
    seed: int,
    recommended: str | None = None,
) -> Any:
    """One row per sample, class and method: fraction and count with their bootstrap interval
    (none with ``replicates=0``), whether the estimate was clipped to non-negative, and
    whether the method is the one ``recommended`` for this model."""
    import pandas as pd

    rows = []
    groups = pd.Series(np.arange(len(samples))).groupby(np.asarray(samples, dtype=str)).indices
    for sample, rows_of_sample in sorted(groups.items()):
        chosen = probabilities[rows_of_sample]
        n = len(chosen)
        intervals = (
            bootstrap_intervals(
                chosen, quantifier, replicates=replicates, confidence=confidence, seed=seed
            )
            if replicates
            else {}
        )
        for method, (fractions, clipped) in estimate(chosen, quantifier).items():
            low, high = intervals.get(method, (np.full(len(fractions), np.nan),) * 2)
            for index, name in enumerate(class_names):
                rows.append(
                    {
                        "sample": sample,
                        "images": n,
                        "label": name,
                        "method": method,
                        "fraction": fractions[index],
                        "fraction_low": low[index],
                        "fraction_high": high[index],
                        "count": fractions[index] * n,
                        "count_low": low[index] * n,
                        "count_high": high[index] * n,
                        "clipped": clipped,
                        "recommended": method == recommended,
                    }
                )
    return pd.DataFrame(rows)


def abundance_figure(table: Any, *, max_samples: int = 4, max_classes: int = 15):
    """Bars of each method's estimated count per class with its interval, one panel per sample
    (the first ``max_samples``; the ``max_classes`` most abundant classes by the EM estimate,
    or the raw count when that is all there is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = sorted(table["sample"].unique())
    shown = samples[:max_samples]
    methods = [method for method in METHODS if (table["method"] == method).any()]
    ranked_by = methods[-1]  # EM when the model has its validation statistics, else raw
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 3.4 * len(shown)), squeeze=False)
    width = 0.8 / len(methods)
    for ax, sample in zip(axes[:, 0], shown, strict=True):
        rows = table[table["sample"] == sample]
        order = (
            rows[rows["method"] == ranked_by].sort_values("count", ascending=False)["label"]
        ).tolist()[:max_classes]
        positions = np.arange(len(order))
        for offset, method in enumerate(methods):
            values = rows[rows["method"] == method].set_index("label").loc[order]
            is_recommended = bool(values["recommended"].any())
            errors = np.vstack(
                [values["count"] - values["count_low"], values["count_high"] - values["count"]]
            )
            ax.bar(
                positions + (offset - (len(methods) - 1) / 2) * width,
                values["count"],
                width,
                yerr=None if np.isnan(errors).all() else np.clip(errors, 0, None),
                capsize=2,
                label=METHOD_LABELS[method] + (" (recommended)" if is_recommended else ""),
            )
        ax.set_xticks(positions, order, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("images")
        title = f"{sample}: {int(rows['images'].iloc[0])} images"
        if len(set(rows["label"])) > len(order):
            title += f" ({len(order)} most abundant classes)"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    if len(samples) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(samples)} samples (all in the table)")
    fig.tight_layout()
    return fig
