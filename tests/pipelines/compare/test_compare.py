"""The route comparison: its rows, the per-route summary, the label-budget table and plots."""

import math

import matplotlib.pyplot as plt
import pytest

from plankton_kedro.pipelines.compare.nodes import (
    comparison_row,
    plot_label_budgets,
    plot_routes,
    summarise_label_budgets,
    summarise_routes,
    tabulate_runs,
)


def _metrics(route: str, seed: int, accuracy: float, budget: int | None = None) -> dict:
    n_train = 240 if budget is None else 10 * budget
    return {
        "route": route,
        "run": f"{route}_seed{seed}" + (f"_n{budget}" if budget else ""),
        "seed": seed,
        "labels_per_class": budget,
        "n_train": n_train,
        "accuracy": accuracy,
        "f1_macro": accuracy - 0.01,
        "f1_micro": accuracy,
        "f1_weighted": accuracy,
        "balanced_accuracy": accuracy,
        "top3_accuracy": 1.0,
        "model_name": "tf_efficientnet_lite0",
        "dataset": "demo_target",
        "n_test": 80,
        "checkpoint_version": f"v{seed}",
        "manifest_version": "m1",
        "per_class": {f"c{i}": {} for i in range(10)},
    }


def _probe(lr_accuracy: float) -> dict:
    return {
        "fine_tuned_head": {"accuracy": 0.9},
        "pretrained": {
            "features_of": "tf_efficientnet_lite0 with ImageNet",
            "logistic_regression": {"best_C": 1.0, "test": {"accuracy": lr_accuracy,
                                                            "f1_macro": lr_accuracy - 0.1}},
            "svc_rbf": {"best_C": 10.0, "test": {"accuracy": 0.5, "f1_macro": 0.4}},
        },
    }  # fmt: skip


def _row(route, seed, accuracy, budget=None, probe=0.6):
    return comparison_row(_metrics(route, seed, accuracy, budget), _probe(probe))


def test_a_row_carries_the_runs_scores_its_budget_and_the_probe_of_the_same_route():
    """Catches the probe read from the wrong entry (the fine-tuned head, or validation) and a
    budget or train count lost on the way to the table."""
    row = _row("out_of_domain", 1, 0.8, budget=5, probe=0.7)
    assert row["labels_per_class"] == 5 and row["n_train"] == 50 and row["n_classes"] == 10
    assert (row["probe_lr_accuracy"], row["probe_lr_f1_macro"]) == (0.7, pytest.approx(0.6))
    assert (row["probe_svc_accuracy"], row["probe_svc_f1_macro"]) == (0.5, 0.4)
    assert row["accuracy"] == 0.8 and row["top3_accuracy"] == 1.0
    assert "per_class" not in tabulate_runs(row).columns
    without_probe = comparison_row(_metrics("in_domain", 1, 0.8), {"skipped": "off"})
    assert without_probe["probe_lr_accuracy"] is None


def test_summary_and_route_plot_use_every_label_only_and_budgets_get_their_own_table():
    """Catches budget rows mixed into the per-route summary (a mean over 5 labels and all of
    them), a std over budgets instead of seeds, and a label-budget table that drops the
    "every label" row (an empty budget) or pools routes."""
    runs = tabulate_runs(
        _row("in_domain", 1, 0.8), _row("in_domain", 2, 0.9),
        _row("in_domain", 1, 0.3, budget=5), _row("in_domain", 2, 0.5, budget=5),
        _row("two_stage", 1, 0.7), _row("two_stage", 1, 0.6, budget=5),
    )  # fmt: skip
    summary = summarise_routes(runs)
    assert summary["in_domain"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["in_domain"]["accuracy"]["std"] == pytest.approx(0.0707, abs=1e-4)
    assert summary["in_domain"]["accuracy"]["n"] == 2
    assert summary["two_stage"]["accuracy"] == {"mean": 0.7, "std": 0.0, "n": 1}
    assert summary["in_domain"]["probe_lr_accuracy"]["mean"] == 0.6
    assert summary["in_domain"]["seeds"] == [1, 2]
    figure = plot_routes(runs)
    assert figure.axes[0].get_ylim() == (0.0, 1.0)
    plt.close(figure)

    budgets = summarise_label_budgets(runs).set_index(["route", "labels_per_class"])
    assert len(budgets) == 4
    five = budgets.loc[("in_domain", 5)]
    assert five["accuracy_mean"] == pytest.approx(0.4) and five["seeds"] == 2
    assert five["accuracy_std"] == pytest.approx(0.1414, abs=1e-4)
    assert five["train_per_class"] == 5
    every = budgets.xs("in_domain").loc[lambda t: t.index.isna()].iloc[0]
    assert every["accuracy_mean"] == pytest.approx(0.85) and every["train_per_class"] == 24
    assert math.isnan(budgets.loc[("two_stage", 5), "accuracy_std"])  # one seed: no band

    figure = plot_label_budgets(runs)
    accuracy_axes = figure.axes[0]
    lines = {line.get_label(): line for line in accuracy_axes.get_lines()}
    assert set(lines) == {"in_domain", "two_stage"}
    assert list(lines["in_domain"].get_xdata()) == [5, 24]  # "all" drawn at its images/class
    assert list(lines["in_domain"].get_ydata()) == pytest.approx([0.4, 0.85])
    assert [t.get_text() for t in accuracy_axes.get_xticklabels()] == ["5", "all (24)"]
    plt.close(figure)
