"""Abundance estimates corrected for classifier error: they must beat raw counts when the class
mix shifts, and say when a linear solve had to be clipped."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from plankton_kedro.engine.analysis import quantification as q


def _blobs(rng, counts, centres, spread=1.6):
    """Overlapping Gaussian classes: a real classifier trained on them makes real errors."""
    pairs = zip(centres, counts, strict=True)
    x = np.vstack([rng.normal(centre, spread, size=(n, 2)) for centre, n in pairs])
    y = np.repeat(np.arange(len(counts)), counts)
    return x, y


@pytest.fixture(scope="module")
def classifier_and_splits():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0], [2.5, 0], [0, 2.5], [2.5, 2.5]])
    x_train, y_train = _blobs(rng, [400, 400, 400, 400], centres)
    model = LogisticRegression().fit(x_train, y_train)
    x_val, y_val = _blobs(rng, [300, 300, 300, 300], centres)
    x_test, y_test = _blobs(rng, [500, 500, 500, 500], centres)
    fitted = q.fit_quantifier(model.predict_proba(x_val), y_val, [400, 400, 400, 400])
    return model, q.Quantifier.from_fitted(fitted), (model.predict_proba(x_test), y_test)


def test_corrections_beat_raw_counts_on_a_shifted_test_mix(classifier_and_splits):
    """The bug caught: corrections that are no better than counting (a transposed rate matrix,
    EM re-weighting by the wrong prior, PACC from hard labels)."""
    _, quantifier, (probabilities, labels) = classifier_and_splits
    shift = q.shift_check(probabilities, labels, quantifier, mixes=15, seed=1)
    errors = shift["mean_absolute_error"]
    for method in ("adjusted_count", "probabilistic_adjusted_count", "em"):
        assert errors[method] < 0.6 * errors["classify_and_count"], (method, errors)


def test_a_strong_shift_is_recovered_within_a_few_percent(classifier_and_splits):
    """One very uneven sample (70/20/8/2 %): raw counting pulls the rare classes up."""
    _, quantifier, (probabilities, labels) = classifier_and_splits
    rng = np.random.default_rng(0)
    truth = np.array([0.70, 0.20, 0.08, 0.02])
    per_class = (truth * 1000).astype(int)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), n) for c, n in enumerate(per_class)]
    )
    estimates = q.estimate(probabilities[chosen], quantifier)
    raw_error = np.abs(estimates["classify_and_count"][0] - truth).max()
    assert raw_error > 0.05  # the bias is real at this overlap
    for method in ("adjusted_count", "probabilistic_adjusted_count", "em"):
        assert np.abs(estimates[method][0] - truth).max() < 0.5 * raw_error, method


def test_intervals_cover_the_point_estimate_and_widen_with_fewer_images(classifier_and_splits):
    """The bug caught: intervals that ignore the sample size (no resampling of the images)."""
    _, quantifier, (probabilities, _) = classifier_and_splits
    few, many = probabilities[::40], probabilities
    width = {}
    for name, sample in (("few", few), ("many", many)):
        intervals = q.bootstrap_intervals(sample, quantifier, replicates=60, confidence=0.9, seed=0)
        point = q.estimate(sample, quantifier)
        for method, (low, high) in intervals.items():
            fractions = point[method][0]
            assert (low <= fractions + 0.02).all() and (fractions <= high + 0.02).all()
        width[name] = np.mean(intervals["adjusted_count"][1] - intervals["adjusted_count"][0])
    assert width["few"] > 2 * width["many"]


def test_negative_solutions_are_clipped_renormalised_and_flagged():
    rates = np.array([[0.8, 0.2], [0.3, 0.7]])
    fractions, clipped = q.adjusted_count(np.array([0.9, 0.1]), rates)  # below any mix's 0.2
    assert clipped and fractions.min() == 0 and fractions.sum() == pytest.approx(1)
    fractions, clipped = q.adjusted_count(np.array([0.5, 0.5]), rates)  # 0.8a + 0.3(1-a) = 0.5
    assert not clipped and fractions == pytest.approx([0.4, 0.6])


def test_em_keeps_the_training_prior_when_the_sample_matches_it():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    prior = probabilities.mean(0)
    assert q.em_prior_adjustment(probabilities, prior) == pytest.approx(prior, abs=1e-6)


def test_a_class_without_held_out_images_is_taken_as_recognised():
    fitted = q.fit_quantifier(np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), [0, 1], [5, 5, 5])
    quantifier = q.Quantifier.from_fitted(fitted)
    assert quantifier.unseen_classes.tolist() == [2]
    assert quantifier.rates[2].tolist() == [0, 0, 1]


def test_the_table_has_every_sample_class_and_method_with_counts_summing_to_images(
    classifier_and_splits,
):
    _, quantifier, (probabilities, _) = classifier_and_splits
    samples = ["a"] * 30 + ["b"] * 50
    table = q.abundance_table(
        probabilities[:80], samples, list("wxyz"), quantifier,
        replicates=10, confidence=0.95, seed=0,
    )  # fmt: skip
    assert len(table) == 2 * 4 * len(q.METHODS)
    totals = table.groupby(["sample", "method"])["count"].sum()
    assert totals.loc["a"].tolist() == pytest.approx([30] * 4)
    assert totals.loc["b"].tolist() == pytest.approx([50] * 4)
    assert (table["count_low"] <= table["count_high"]).all()
    q.abundance_figure(table)


def test_em_divides_out_the_training_prior_of_an_imbalanced_training_set():
    """Trained on 80/20, counted on a 20/80 sample: the posteriors carry the 80/20 prior, and
    EM must remove it (the bug caught: re-weighting by the new prior alone)."""
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0], [2.0, 0]])
    model = LogisticRegression().fit(*_blobs(rng, [800, 200], centres))
    x_val, y_val = _blobs(rng, [400, 100], centres)
    fitted = q.fit_quantifier(model.predict_proba(x_val), y_val, [800, 200])
    x_sample, _ = _blobs(rng, [300, 1200], centres)
    estimates = q.estimate(model.predict_proba(x_sample), q.Quantifier.from_fitted(fitted))
    truth = np.array([0.2, 0.8])
    raw_error = np.abs(estimates["classify_and_count"][0] - truth).max()
    assert np.abs(estimates["em"][0] - truth).max() < min(0.05, raw_error / 3)


def test_the_recommended_method_is_chosen_on_held_out_halves(classifier_and_splits):
    """With 300 validation images per class a correction must win over counting; the choice
    never sees the test split (its inputs are validation outputs only)."""
    model, _, _ = classifier_and_splits
    rng = np.random.default_rng(11)
    centres = np.array([[0, 0], [2.5, 0], [0, 2.5], [2.5, 2.5]])
    x_val, y_val = _blobs(rng, [300, 300, 300, 300], centres)
    choice = q.choose_method(model.predict_proba(x_val), y_val, [400] * 4, mixes=10)
    errors = choice["mean_absolute_error"]
    assert choice["recommended"] != "classify_and_count"
    assert errors[choice["recommended"]] == min(errors.values()) < errors["classify_and_count"]


def test_classes_never_predicted_on_validation_are_named():
    """R has a zero column when no validation image is predicted as a class: ACC is then
    not unique, which the prediction log must say (the bug caught: no way to tell)."""
    probabilities = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1]])
    fitted = q.fit_quantifier(probabilities, [0, 2, 1], [5, 5, 5])
    assert q.Quantifier.from_fitted(fitted).never_predicted.tolist() == [2]
