"""Ensembles: averaging maths, greedy member selection, and the ensembling node that must choose
members, temperatures and the "unknown" threshold on validation data only."""

import inspect
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from plankton_kedro.engine.analysis.calibration import softmax
from plankton_kedro.engine.analysis.ensemble import (
    MODES,
    combine,
    ensemble_predictions,
    greedy_forward_selection,
)
from plankton_kedro.engine.checkpoint import Identity
from plankton_kedro.engine.config import EnsemblingParams, EvaluationParams
from plankton_kedro.pipelines.ensembling import nodes
from tests.conftest import small_checkpoint

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


def test_a_member_that_adds_nothing_is_not_selected():
    """Catches a greedy loop that adds a member on a tie or until the cap (flat logits stay out)."""
    labels = np.tile([0, 1, 2], 10)
    strong = 3.0 * np.eye(3)[labels]
    strong[:6] = 3.0 * np.eye(3)[(labels[:6] + 1) % 3]  # wrong on the first 6: 24/30 right
    members = {"flat": np.zeros((30, 3)), "strong": strong}
    for mode in MODES:
        selection = greedy_forward_selection(members, labels, mode=mode)
        assert selection["member_val_scores"] == pytest.approx({"flat": 1 / 3, "strong": 0.8})
        assert selection["selected"] == ["strong"]
        assert selection["weights"] == {"strong": 1.0}
        assert selection["val_score"] == pytest.approx(0.8)
        np.testing.assert_allclose(ensemble_predictions(members, selection), softmax(strong))


def test_the_members_follow_the_validation_scores():
    """Catches a selection that ignores the validation scores (by name, order, or all members)."""
    labels = np.tile([0, 1, 2], 10)
    right, wrong = 2.0 * np.eye(3)[labels], 2.0 * np.eye(3)[(labels + 1) % 3]
    assert greedy_forward_selection({"a": right, "b": wrong}, labels)["selected"] == ["a"]
    assert greedy_forward_selection({"a": wrong, "b": right}, labels)["selected"] == ["b"]


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


# --- the ensembling node: every member scored on val and test, selection on val only ----------

VAL_LABELS = np.tile([0, 1, 2], 10)
TEST_LABELS = (VAL_LABELS + 1) % 3  # same size as val, other labels: a mix-up cannot hide


def _onehot(labels: np.ndarray, scale: float = 4.0) -> np.ndarray:
    return scale * np.eye(3)[labels]


def _split_outputs() -> dict[str, dict[str, dict]]:
    """Logits per member and split, built so that the right choice is known.

    ``val_star`` is right on every validation image and wrong on every test image;
    ``test_star`` the reverse (its validation logits even match the test labels); ``flat`` is
    uniform (a third right on both). Chosen on validation, the ensemble is ``val_star`` alone.
    """
    logits = {
        "val_star": (_onehot(VAL_LABELS), _onehot((TEST_LABELS + 1) % 3)),
        "test_star": (_onehot(TEST_LABELS), _onehot(TEST_LABELS)),
        "flat": (np.zeros((30, 3)), np.zeros((30, 3))),
    }
    return {
        name: {
            "val": {"labels": VAL_LABELS, "logits": val},
            "test": {"labels": TEST_LABELS, "logits": test},
        }
        for name, (val, test) in logits.items()
    }


def _build(monkeypatch, outputs: dict[str, dict[str, dict]]):
    """``build_ensemble`` on three member checkpoints whose predictions are ``outputs``."""
    names = list(outputs)
    checkpoints = [
        small_checkpoint(
            float(i),
            class_names=["a", "b", "c"],
            identity=Identity("two_stage", f"ensemble_{name}", "fine_tuning", "tiny", "m1", i),
        )
        for i, name in enumerate(names)
    ]

    def predict_splits(model, image_cache, manifest, splits):
        predicted = outputs[model.identity.run.removeprefix("ensemble_")]
        return {split: predicted[split] for split in splits if split in predicted}

    monkeypatch.setattr(nodes, "inference", SimpleNamespace(predict_splits=predict_splits))
    ensembling = EnsemblingParams(
        members=[{"name": name, "model": "test_resnet"} for name in names]
    )
    manifest = pd.DataFrame({"split": ["val"] * 30 + ["test"] * 30, "label": ["a"] * 60})
    manifest.attrs.update(dataset="tiny", version="v1")
    return nodes.build_ensemble(
        np.zeros((60, 4, 4, 3), np.uint8), manifest, ensembling, EvaluationParams(), *checkpoints
    )


def test_the_node_selects_on_validation_and_reports_on_test(monkeypatch):
    """Catches the paper's leak: members chosen with the test split's logits or labels."""
    # With test logits or test labels in the selection, test_star (or flat) would be chosen.
    artefact, report = _build(monkeypatch, _split_outputs())
    selection = report["selection"]
    assert selection["member_val_scores"] == pytest.approx(
        {"val_star": 1.0, "test_star": 0.0, "flat": 1 / 3}
    )
    assert selection["selected"] == ["val_star"]
    assert artefact.member_names == ["val_star"]
    # reported on test: each member's own test accuracy, and the ensemble's (val_star's) 0.0
    tested = {name: member["test"]["accuracy"] for name, member in report["members"].items()}
    assert tested == pytest.approx({"val_star": 0.0, "test_star": 1.0, "flat": 1 / 3})
    assert report["ensemble"]["test"]["accuracy"] == 0.0
    assert report["ensemble"]["val_accuracy"] == 1.0


def test_changing_only_the_test_split_changes_nothing_that_is_chosen(monkeypatch):
    """Catches members, temperatures or the "unknown" threshold fitted on the test split."""
    outputs = _split_outputs()
    artefact, report = _build(monkeypatch, outputs)
    rng = np.random.default_rng(7)
    shuffled_labels = rng.permutation(TEST_LABELS)
    for member in outputs.values():
        member["test"] = {"labels": shuffled_labels, "logits": rng.normal(size=(30, 3)) * 3}
    other_artefact, other_report = _build(monkeypatch, outputs)
    assert other_report["selection"] == report["selection"]
    assert other_artefact.temperatures == artefact.temperatures
    assert other_artefact.rejection_threshold == artefact.rejection_threshold
    assert other_artefact.calibration == artefact.calibration  # per-class, abundance statistics
    assert set(artefact.calibration) == {"class_thresholds", "quantification"}
    assert [m["temperature"] for m in other_report["members"].values()] == [
        m["temperature"] for m in report["members"].values()
    ]
    # the test side did change: what is reported on it moved
    assert other_report["ensemble"]["test"] != report["ensemble"]["test"]


def test_changing_the_validation_split_changes_the_choice(monkeypatch):
    """Catches a node that ignores validation: swapping the stars' val logits swaps the pick."""
    outputs = _split_outputs()
    outputs["val_star"]["val"], outputs["test_star"]["val"] = (
        outputs["test_star"]["val"],
        outputs["val_star"]["val"],
    )
    artefact, report = _build(monkeypatch, outputs)
    assert report["selection"]["selected"] == ["test_star"]
    assert artefact.member_names == ["test_star"]
    assert report["ensemble"]["test"]["accuracy"] == 1.0
