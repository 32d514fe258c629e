"""The route comparison table, summary and plot."""

import matplotlib.pyplot as plt
import pytest

from plankton_kedro.pipelines.compare.nodes import plot_routes, summarise_routes, tabulate_runs


def _metrics(route: str, seed: int, accuracy: float) -> dict:
    return {
        "route": route,
        "run": f"{route}_seed{seed}",
        "seed": seed,
        "accuracy": accuracy,
        "f1_macro": accuracy - 0.01,
        "f1_micro": accuracy,
        "f1_weighted": accuracy,
        "balanced_accuracy": accuracy,
        "top3_accuracy": 1.0,
        "model_name": "resnet10t",
        "dataset": "demo_target",
        "n_test": 80,
        "checkpoint_version": f"v{seed}",
        "manifest_version": "m1",
        "per_class": {"a": {}},
    }


def test_table_summary_and_plot():
    runs = tabulate_runs(
        _metrics("in_domain", 1, 0.8), _metrics("in_domain", 2, 0.9), _metrics("two_stage", 1, 0.7)
    )
    assert list(runs.columns) == [
        "route", "seed", "run", "accuracy", "f1_macro", "f1_micro", "f1_weighted",
        "balanced_accuracy", "top3_accuracy", "model_name", "dataset", "n_test",
        "checkpoint_version", "manifest_version",
    ]  # fmt: skip
    assert len(runs) == 3
    summary = summarise_routes(runs)
    assert summary["in_domain"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["in_domain"]["accuracy"]["std"] == pytest.approx(0.0707, abs=1e-4)
    assert summary["two_stage"]["accuracy"] == {"mean": 0.7, "std": 0.0, "n": 1}
    assert summary["in_domain"]["seeds"] == [1, 2]
    figure = plot_routes(runs)
    assert figure.axes[0].get_ylim() == (0.0, 1.0)
    plt.close(figure)
