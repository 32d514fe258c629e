"""Ensembles: averaging maths, and greedy member selection that sees validation data only."""

import inspect

import numpy as np
import pytest

from plankton_kedro.engine.analysis.calibration import softmax
from plankton_kedro.engine.analysis.ensemble import (
    combine,
    ensemble_predictions,
    greedy_forward_selection,
)

P1 = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
P2 = np.array([[0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])


def _members(seed: int, labels: np.ndarray, n_members: int = 5, k: int = 4) -> dict:
    """Noisy logits favouring the true class, of varying quality per member."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(k)[labels]
    return {
        f"model_{i}": 2.0 * onehot + rng.normal(scale=1.0 + 0.3 * i, size=onehot.shape)
        for i in range(n_members)
    }


def test_probability_mode_is_the_mean_of_softmaxes():
    mean = combine([np.log(P1), np.log(P2)])
    np.testing.assert_allclose(mean, [[0.4, 0.25, 0.35], [0.4, 0.275, 0.325]])


def test_logit_mode_is_the_softmax_of_mean_logits():
    geometric = np.sqrt(P1 * P2)
    expected = geometric / geometric.sum(axis=1, keepdims=True)
    result = combine([np.log(P1), np.log(P2)], mode="logits")
    np.testing.assert_allclose(result, expected)
    assert not np.allclose(result, combine([np.log(P1), np.log(P2)]))


def test_weights_are_normalised_and_respected():
    expected = 0.75 * P1 + 0.25 * P2
    np.testing.assert_allclose(combine([np.log(P1), np.log(P2)], [3, 1]), expected)
    np.testing.assert_allclose(combine([np.log(P1), np.log(P2)], [6.0, 2.0]), expected)
    np.testing.assert_allclose(combine([np.log(P1), np.log(P2)], [0, 1]), P2)


def test_temperatures_divide_the_logits():
    logits = np.array([[np.log(4.0), 0.0]])
    np.testing.assert_allclose(combine([logits], temperatures=[2.0]), [[2 / 3, 1 / 3]])
    other = np.array([[np.log(9.0), 0.0]])
    pair = combine([logits, other], temperatures=[2.0, 2.0])
    np.testing.assert_allclose(pair, [[(2 / 3 + 3 / 4) / 2, (1 / 3 + 1 / 4) / 2]])
    root6 = np.sqrt(6.0)  # mean of the tempered logits: [ln(sqrt(2 * 3)), 0]
    pair = combine([logits, other], mode="logits", temperatures=[2.0, 2.0])
    np.testing.assert_allclose(pair, [[root6 / (1 + root6), 1 / (1 + root6)]])


@pytest.mark.parametrize("mode", ["probabilities", "logits"])
def test_an_ensemble_of_one_is_that_model(mode):
    logits = np.random.default_rng(0).normal(size=(20, 5))
    probabilities = combine([logits], mode=mode)
    np.testing.assert_allclose(probabilities, softmax(logits))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))


def test_selection_takes_no_test_data():
    parameters = inspect.signature(greedy_forward_selection).parameters
    assert not [name for name in parameters if "test" in name.lower()]
    assert {"val_logits", "val_labels"} <= set(parameters)


def test_selection_is_unchanged_by_anything_on_the_test_side():
    val_labels = np.random.default_rng(1).integers(0, 4, 80)
    val = _members(10, val_labels)
    selections = []
    for seed in (20, 21):
        # Different test logits and shuffled, unrelated test labels in each run.
        test_labels = np.random.default_rng(seed).permutation(np.arange(50) % 4)
        test = _members(seed, test_labels)
        selection = greedy_forward_selection(val, val_labels)
        assert ensemble_predictions(test, selection).shape == (50, 4)
        selections.append(selection)
    assert selections[0] == selections[1]
    assert len(selections[0]["selected"]) >= 1


def test_complementary_members_beat_the_best_single_one():
    # Each member is confidently right except on its own third of the samples, where it is
    # weakly wrong; any two of them together are right everywhere.
    labels = np.tile([0, 1, 2], 10)
    blocks = np.repeat(np.arange(3), 10)
    members = {}
    for m, name in enumerate(["a", "b", "c"]):
        logits = 3.0 * np.eye(3)[labels]
        wrong = blocks == m
        logits[wrong] = np.eye(3)[(labels[wrong] + 1) % 3]
        members[name] = logits
    selection = greedy_forward_selection(members, labels)
    assert selection["member_val_scores"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 2 / 3})
    assert selection["selected"] == ["a", "b"]
    assert selection["weights"] == {"a": 0.5, "b": 0.5}
    assert selection["val_score"] == 1.0 > max(selection["member_val_scores"].values())
    assert [step["val_score"] for step in selection["trace"]] == pytest.approx([2 / 3, 1.0])
    probabilities = ensemble_predictions(members, selection)
    assert (probabilities.argmax(1) == labels).all()


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
@pytest.mark.parametrize("mode", ["probabilities", "logits"])
def test_selection_never_loses_to_its_best_member(metric, mode):
    labels = np.random.default_rng(2).integers(0, 4, 120)
    selection = greedy_forward_selection(_members(3, labels), labels, metric=metric, mode=mode)
    scores = [step["val_score"] for step in selection["trace"]]
    assert scores == sorted(scores)
    assert selection["val_score"] == scores[-1] >= max(selection["member_val_scores"].values())
    assert selection["trace"][0]["val_score"] == max(selection["member_val_scores"].values())
    assert (selection["metric"], selection["mode"]) == (metric, mode)
    assert sum(selection["weights"].values()) == pytest.approx(1.0)


def _repeat_case() -> tuple[dict, np.ndarray]:
    """Two binary members where weighting ``a`` twice beats weighting them equally."""
    p_a = np.array([0.9, 0.45, 0.8, 0.45])
    p_b = np.array([0.4, 0.9, 0.1, 0.95])

    def logits(p):
        return np.log(np.stack([p, 1 - p], axis=1))

    return {"b": logits(p_b), "a": logits(p_a)}, np.zeros(4, dtype=int)


def test_allow_repeats_reweights_a_member():
    members, labels = _repeat_case()
    plain = greedy_forward_selection(members, labels)
    assert plain["selected"] == ["a", "b"]
    assert plain["val_score"] == 0.75
    repeated = greedy_forward_selection(members, labels, allow_repeats=True)
    assert repeated["selected"] == ["a", "b", "a"]
    assert repeated["weights"] == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert repeated["val_score"] == 1.0
    assert [step["step"] for step in repeated["trace"]] == [1, 2, 3]
    np.testing.assert_allclose(
        ensemble_predictions(members, repeated),
        combine([members["a"], members["b"]], [2, 1]),
    )


def test_max_members_caps_the_selection():
    members, labels = _repeat_case()
    assert greedy_forward_selection(members, labels, max_members=1)["selected"] == ["a"]
    capped = greedy_forward_selection(members, labels, max_members=2, allow_repeats=True)
    assert capped["selected"] == ["a", "b"]
    with pytest.raises(ValueError, match="max_members"):
        greedy_forward_selection(members, labels, max_members=0)


def test_ties_go_to_the_first_name_in_sorted_order():
    logits = np.random.default_rng(4).normal(size=(30, 3))
    labels = np.random.default_rng(5).integers(0, 3, 30)
    members = {"zeta": logits, "mu": logits.copy(), "alpha": logits.copy()}
    selection = greedy_forward_selection(members, labels, allow_repeats=True)
    assert selection["selected"] == ["alpha"]
    reordered = dict(reversed(list(members.items())))
    assert greedy_forward_selection(reordered, labels, allow_repeats=True) == selection


def test_clear_errors():
    ones = np.zeros((4, 3))
    with pytest.raises(ValueError, match="empty"):
        combine([])
    with pytest.raises(ValueError, match=r"shape \(4, 2\), expected \(4, 3\)"):
        combine([ones, np.zeros((4, 2))])
    with pytest.raises(ValueError, match="2-D"):
        combine([np.zeros(3)])
    with pytest.raises(ValueError, match="unknown ensemble mode 'median'"):
        combine([ones], mode="median")
    with pytest.raises(ValueError, match="non-negative"):
        combine([ones, ones], [1, -1])
    with pytest.raises(ValueError, match="sum to zero"):
        combine([ones, ones], [0, 0])
    with pytest.raises(ValueError, match="expected 2 weights"):
        combine([ones, ones], [1])
    with pytest.raises(ValueError, match="positive"):
        combine([ones], temperatures=[0.0])
    with pytest.raises(ValueError, match="at least one member"):
        greedy_forward_selection({}, np.zeros(4))
    with pytest.raises(ValueError, match="val_labels"):
        greedy_forward_selection({"a": ones}, np.zeros(5))
    with pytest.raises(ValueError, match="unknown ensemble mode"):
        greedy_forward_selection({"a": ones}, np.zeros(4), mode="vote")
    selection = greedy_forward_selection({"a": ones}, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"missing.*\['a'\]"):
        ensemble_predictions({"b": ones}, selection)
