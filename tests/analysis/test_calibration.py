"""Calibration (ECE, temperature scaling, reliability diagram) and open-set rejection."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from plankton_kedro.engine.analysis.calibration import (
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


def _rows(confidences: list[float], correct: list[bool], k: int = 10):
    """Probability rows whose max is each confidence on class 0; label 0 if correct, else 1."""
    confidences = np.asarray(confidences, dtype=np.float64)
    probabilities = np.repeat(((1 - confidences) / (k - 1))[:, None], k, axis=1)
    probabilities[:, 0] = confidences
    return probabilities, np.where(correct, 0, 1)


def _calibrated_logits(seed: int = 0, n: int = 3000, k: int = 5):
    """Logits of a decent classifier with labels drawn from their own softmax: calibrated at T=1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    cumulative = softmax(logits).cumsum(axis=1)
    labels = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), k - 1)
    return logits, labels


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    logits = np.array([[1000.0, 999.0, 0.0], [-3.0, 0.0, 2.0]])
    sharp, flat = softmax(logits), softmax(logits, temperature=10.0)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0)
    np.testing.assert_allclose(flat.sum(axis=1), 1.0)
    assert np.all(flat.max(axis=1) < sharp.max(axis=1))
    np.testing.assert_array_equal(flat.argmax(axis=1), sharp.argmax(axis=1))


def test_ece_matches_a_hand_computation():
    # bin (0, 0.5]: conf 0.4, 0.4, acc 1/2 -> gap 0.1; bin (0.5, 1]: conf 0.8, 0.9, acc 1/2 ->
    # gap 0.35; ECE = 2/4 * 0.1 + 2/4 * 0.35 = 0.225
    probabilities, labels = _rows([0.4, 0.4, 0.8, 0.9], [True, False, True, False])
    assert expected_calibration_error(probabilities, labels, n_bins=2) == pytest.approx(0.225)


def test_ece_is_zero_when_perfectly_calibrated_and_the_gap_when_overconfident():
    probabilities, labels = _rows([0.75] * 4 + [1.0] * 2, [True, True, True, False, True, True])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0)
    overconfident, labels = _rows([0.9] * 10, [True] * 6 + [False] * 4)
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.3)
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 0.0


def test_temperature_scaling_fixes_an_overconfident_model():
    logits, labels = _calibrated_logits()
    overconfident = 5.0 * logits
    temperature = fit_temperature(overconfident, labels)
    assert 4.0 < temperature < 6.0
    assert negative_log_likelihood(overconfident, labels, temperature) < (
        negative_log_likelihood(overconfident, labels)
    )
    scaled = softmax(overconfident, temperature)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(
        softmax(overconfident), labels
    )
    np.testing.assert_array_equal(scaled.argmax(axis=1), overconfident.argmax(axis=1))
    assert fit_temperature(overconfident, labels) == temperature


def test_temperature_scaling_sharpens_an_underconfident_model():
    logits, labels = _calibrated_logits(seed=1)
    underconfident = logits / 3.0
    temperature = fit_temperature(underconfident, labels)
    assert temperature < 0.5
    assert negative_log_likelihood(underconfident, labels, temperature) < (
        negative_log_likelihood(underconfident, labels)
    )


def test_fit_temperature_never_worsens_nll_and_handles_empty_input():
    logits, labels = _calibrated_logits(seed=2)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(1.0, abs=0.15)
    assert negative_log_likelihood(logits, labels, temperature) <= negative_log_likelihood(
        logits, labels
    )
    assert fit_temperature(np.zeros((0, 4)), np.zeros(0, dtype=int)) == 1.0


def test_threshold_is_the_largest_coverage_meeting_the_target():
    # accuracy when accepting conf >= t: 0.95 -> 1, 0.9 -> 1, 0.8 -> 2/3, 0.7 -> 3/4, 0.6 -> 3/5,
    # 0.5 -> 4/6
    probabilities, labels = _rows(
        [0.7, 0.95, 0.5, 0.8, 0.9, 0.6], [True, True, True, False, True, False]
    )
    chosen = choose_rejection_threshold(probabilities, labels, target_precision=0.75)
    assert chosen == {
        "threshold": pytest.approx(0.7),
        "target_precision": 0.75,
        "val_coverage": pytest.approx(4 / 6),
        "val_accuracy_on_accepted": pytest.approx(0.75),
        "met": True,
    }
    strict = choose_rejection_threshold(probabilities, labels, target_precision=1.0)
    assert strict["threshold"] == pytest.approx(0.9)
    assert strict["val_coverage"] == pytest.approx(2 / 6)
    assert choose_rejection_threshold(probabilities, labels, 0.0)["val_coverage"] == 1.0


def test_unreachable_target_returns_the_most_precise_threshold_preferring_coverage():
    # accuracy: 0.9 -> 0, 0.8 -> 1/2, 0.7 -> 1/3, 0.6 -> 1/2: the tie goes to the wider 0.6
    probabilities, labels = _rows([0.9, 0.8, 0.7, 0.6], [False, True, False, True])
    chosen = choose_rejection_threshold(probabilities, labels, target_precision=0.9)
    assert chosen["met"] is False
    assert chosen["threshold"] == pytest.approx(0.6)
    assert chosen["val_accuracy_on_accepted"] == pytest.approx(0.5)
    assert chosen["val_coverage"] == 1.0


def test_tied_confidences_are_accepted_or_rejected_together():
    probabilities, labels = _rows([0.9, 0.9, 0.5], [True, False, True])
    chosen = choose_rejection_threshold(probabilities, labels, target_precision=1.0)
    assert chosen["met"] is False
    assert chosen["threshold"] == pytest.approx(0.5)
    assert chosen["val_accuracy_on_accepted"] == pytest.approx(2 / 3)


def _two_class_rows(rows: list[tuple[int, float, int]]):
    """(predicted class, its probability, true label) -> 3-class probability rows."""
    probabilities = np.zeros((len(rows), 3))
    for i, (predicted, confidence, _) in enumerate(rows):
        probabilities[i] = (1 - confidence) / 2
        probabilities[i, predicted] = confidence
    return probabilities, np.array([label for *_, label in rows])


def test_each_class_gets_the_threshold_its_own_precision_needs():
    """Class 0 is always right, class 1 is right only above 0.8, class 2 is predicted twice:
    the bugs caught are thresholds chosen over all images (one shared value), over images of
    the true class instead of the predicted one, and no fallback for rare classes."""
    rows = [(0, c, 0) for c in (0.5, 0.55, 0.6, 0.65)]
    rows += [(1, 0.5, 0), (1, 0.6, 2), (1, 0.7, 0), (1, 0.85, 1), (1, 0.9, 1), (1, 0.95, 1)]
    rows += [(2, 0.9, 2), (2, 0.4, 0)]
    probabilities, labels = _two_class_rows(rows)
    chosen = choose_class_thresholds(
        probabilities, labels, ["a", "b", "c"], 1.0, global_threshold=0.77, min_images=3
    )
    assert chosen["a"]["threshold"] == pytest.approx(0.5) and chosen["a"]["from"] == "class"
    assert chosen["b"]["threshold"] == pytest.approx(0.85) and chosen["b"]["met"]
    assert chosen["c"] == {"threshold": 0.77, "from": "global", "val_predicted": 2}
    thresholds = {name: chosen[name]["threshold"] for name in "abc"}
    report = class_rejection_report(probabilities, labels, ["a", "b", "c"], thresholds)
    assert report["per_class"]["b"]["coverage"] == pytest.approx(0.5)
    assert report["per_class"]["b"]["accuracy_on_accepted"] == 1.0
    assert report["per_class"]["c"] == {
        "threshold": 0.77, "predicted": 2, "coverage": 0.5, "accuracy_on_accepted": 1.0
    }  # fmt: skip
    assert report["n_accepted"] == 4 + 3 + 1
    # a class right on every image keeps nothing stricter than the global threshold
    lenient = choose_class_thresholds(
        probabilities, labels, ["a", "b", "c"], 1.0, global_threshold=0.3, min_images=3
    )
    assert lenient["a"]["threshold"] == 0.3 and lenient["b"]["threshold"] == pytest.approx(0.85)


def test_rejection_report_applies_a_threshold_to_another_set():
    probabilities, labels = _rows([0.99, 0.75, 0.7, 0.3, 0.2], [True, False, True, False, True])
    report = rejection_report(probabilities, labels, threshold=0.7)
    assert report == {
        "threshold": 0.7,
        "coverage": pytest.approx(0.6),
        "accuracy_on_accepted": pytest.approx(2 / 3),
        "n_accepted": 3,
        "n_rejected": 2,
        "rejected_accuracy_if_kept": pytest.approx(0.5),
    }
    assert rejection_report(probabilities, labels, 0.0)["rejected_accuracy_if_kept"] is None
    none_accepted = rejection_report(probabilities, labels, 1.0)
    assert none_accepted["accuracy_on_accepted"] is None
    assert none_accepted["n_rejected"] == 5


def test_reliability_diagram_has_the_diagram_and_a_histogram():
    logits, labels = _calibrated_logits(n=300)
    fig = reliability_diagram(softmax(5.0 * logits), labels, title="overconfident")
    try:
        assert len(fig.axes) == 2
        legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        assert any(text.startswith("ECE = ") for text in legend)
    finally:
        plt.close(fig)


def _evaluation(fitting_scale: dict[str, float]):
    """evaluation_report on split outputs whose logits are ``scale`` x calibrated logits."""
    from plankton_kedro.engine.analysis.report import evaluation_report
    from tests.conftest import small_checkpoint

    manifest = pd.DataFrame({"rel_path": [], "label": [], "split": []})
    predictions = {}
    for seed, split in enumerate(("val", "test", "calibration")):
        if split not in fitting_scale:
            continue
        logits, labels = _calibrated_logits(seed=seed, n=600, k=2)
        predictions[split] = {"logits": logits * fitting_scale[split], "labels": labels}
    metrics, calibration, *figures = evaluation_report(
        small_checkpoint(), manifest, predictions, target_precision=0.9
    )
    for figure in figures:
        plt.close(figure)
    return metrics, calibration


def test_a_calibration_split_takes_over_from_validation():
    """Catches temperature/threshold still fitted on validation (or on test) when a separate
    calibration split exists: only the calibration split's logits may move them."""
    _, base = _evaluation({"val": 1.0, "test": 1.0, "calibration": 3.0})
    _, val_changed = _evaluation({"val": 0.3, "test": 1.0, "calibration": 3.0})
    _, test_changed = _evaluation({"val": 1.0, "test": 0.3, "calibration": 3.0})
    _, calibration_changed = _evaluation({"val": 1.0, "test": 1.0, "calibration": 1.0})
    assert base["fitted_on"] == "calibration"
    assert base["temperature"] == pytest.approx(3.0, rel=0.15)  # undoes the x3 overconfidence
    for same in (val_changed, test_changed):
        assert same["temperature"] == base["temperature"]
        assert same["rejection_threshold"] == base["rejection_threshold"]
    assert calibration_changed["temperature"] != pytest.approx(base["temperature"], rel=0.1)
    _, without = _evaluation({"val": 3.0, "test": 1.0})
    assert without["fitted_on"] == "val" and without["temperature"] == pytest.approx(3.0, rel=0.15)
