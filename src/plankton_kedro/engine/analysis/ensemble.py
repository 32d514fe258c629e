"""Ensembles of fine-tuned classifiers, with members chosen on the validation split only.

The paper averages the softmax outputs of several fine-tuned models but picks the members by
their test accuracy, which leaks the test set into model selection. Here the members are chosen
by Caruana-style greedy forward selection on validation logits, and the resulting selection is
then applied unchanged to the test split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from .calibration import softmax
from .metrics import selection_score

MODES = ("probabilities", "logits")


def combine(
    logits: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    *,
    mode: str = "probabilities",
    temperatures: Sequence[float] | None = None,
) -> np.ndarray:
    """Ensemble class probabilities ``(n, k)`` from members' logits (each ``(n, k)``).

    ``mode="probabilities"`` takes the weighted mean of ``softmax(logits_i / T_i)`` (the paper's
    softmax averaging); ``mode="logits"`` takes the softmax of the weighted mean of
    ``logits_i / T_i``. Weights default to equal and are normalised to sum to one; temperatures
    default to 1.
    """
    arrays = _check_logits(logits)
    w = _normalised_weights(weights, len(arrays))
    t = _check_temperatures(temperatures, len(arrays))
    scaled = np.stack([a / temp for a, temp in zip(arrays, t, strict=True)])
    if mode == "probabilities":
        return np.tensordot(w, softmax(scaled), axes=1)
    if mode == "logits":
        return softmax(np.tensordot(w, scaled, axes=1))
    raise ValueError(f"unknown ensemble mode '{mode}' (use one of {MODES})")


def greedy_forward_selection(
    val_logits: Mapping[str, np.ndarray],
    val_labels: np.ndarray,
    *,
    metric: str = "accuracy",
    mode: str = "probabilities",
    max_members: int | None = None,
    allow_repeats: bool = False,
    temperatures: Mapping[str, float] | None = None,
) -> dict:
    """Choose ensemble members on the validation split by greedy forward selection.

    Starts from the best single member, then repeatedly adds the member that most improves the
    ensemble's validation ``metric`` (``selection_score``); stops when no candidate strictly
    improves it or at ``max_members`` picks. With ``allow_repeats`` a member may be picked again
    and its weight is the number of times it was picked. Ties go to the first name in sorted
    order. Only validation data enter here, so the test split cannot influence the choice.
    Members missing from ``temperatures`` use 1.
    """
    if not val_logits:
        raise ValueError("greedy_forward_selection needs at least one member")
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    labels = np.asarray(val_labels)
    names = sorted(val_logits)
    _check_labels(labels, [np.asarray(val_logits[name]) for name in names])

    def score(counts: Counter) -> float:
        probabilities = _combine_named(val_logits, counts, mode, temperatures)
        return selection_score(labels, probabilities.argmax(axis=1), metric)

    member_scores = {name: score(Counter([name])) for name in names}
    first = _best(member_scores)
    counts, best_score = Counter([first]), member_scores[first]
    selected = [first]
    trace = [{"step": 1, "added": first, "val_score": best_score}]
    while max_members is None or len(selected) < max_members:
        candidates = [n for n in names if allow_repeats or n not in counts]
        if not candidates:
            break
        scores = {n: score(counts + Counter([n])) for n in candidates}
        pick = _best(scores)
        if scores[pick] <= best_score:
            break
        counts[pick] += 1
        best_score = scores[pick]
        selected.append(pick)
        trace.append({"step": len(selected), "added": pick, "val_score": best_score})
    return {
        "selected": selected,
        "weights": {name: count / len(selected) for name, count in counts.items()},
        "val_score": best_score,
        "metric": metric,
        "mode": mode,
        "trace": trace,
        "member_val_scores": member_scores,
    }


def ensemble_predictions(
    member_logits: Mapping[str, np.ndarray],
    selection: dict,
    *,
    temperatures: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Apply a selection (its weights and mode) to other data, e.g. the test split.

    Returns ensemble probabilities ``(n, k)``; members not in the selection are ignored.
    """
    missing = sorted(set(selection["weights"]) - set(member_logits))
    if missing:
        raise ValueError(f"logits missing for selected ensemble members: {missing}")
    return _combine_named(member_logits, selection["weights"], selection["mode"], temperatures)


def _combine_named(
    logits: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    mode: str,
    temperatures: Mapping[str, float] | None,
) -> np.ndarray:
    names = list(weights)
    temps = temperatures or {}
    return combine(
        [logits[n] for n in names],
        [weights[n] for n in names],
        mode=mode,
        temperatures=[temps.get(n, 1.0) for n in names],
    )


def _best(scores: Mapping[str, float]) -> str:
    """The highest-scoring name; ties go to the first name in sorted order."""
    return max(sorted(scores), key=scores.__getitem__)


def _check_logits(logits: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(a, dtype=float) for a in logits]
    if not arrays:
        raise ValueError("cannot combine an empty list of logits")
    shape = arrays[0].shape
    if len(shape) != 2:
        raise ValueError(f"logits must be 2-D (n_samples, n_classes), got shape {shape}")
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"logits of member {i} have shape {a.shape}, expected {shape}")
    return arrays


def _normalised_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"expected {n} weights, got an array of shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    if w.sum() <= 0:
        raise ValueError("weights must not sum to zero")
    return w / w.sum()


def _check_temperatures(temperatures: Sequence[float] | None, n: int) -> np.ndarray:
    if temperatures is None:
        return np.ones(n)
    t = np.asarray(temperatures, dtype=float)
    if t.shape != (n,):
        raise ValueError(f"expected {n} temperatures, got an array of shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperatures must be finite and positive, got {t.tolist()}")
    return t


def _check_labels(labels: np.ndarray, arrays: list[np.ndarray]) -> None:
    _check_logits(arrays)
    if labels.shape != (arrays[0].shape[0],):
        raise ValueError(
            f"val_labels have shape {labels.shape}, expected ({arrays[0].shape[0]},) "
            "to match the validation logits"
        )
