"""MLflow tracking: what a run logs, read back with MLflow's own client."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from mlflow import MlflowClient

from plankton_kedro.engine.checkpoint import History, Identity
from plankton_kedro.tracking import MlflowRun, TrackingError, TrackingParams, flatten
from tests.conftest import small_checkpoint

EPOCHS = [
    {"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.3, "lr_backbone": 0.05},
    {"epoch": 2, "train_loss": 1.5, "val_accuracy": 0.6, "lr_backbone": 0.02},
    {"epoch": 3, "train_loss": 1.2, "val_accuracy": 0.5, "lr_backbone": 0.001},
]


@pytest.fixture
def tracked(tmp_path):
    run = MlflowRun(TrackingParams(), tmp_path)
    run.start("two_stage", {"kedro.save_version": "v1"}, {"training": {"lr": {"backbone": 1e-3}}})
    return run


def test_a_trained_stage_becomes_a_nested_run_with_its_learning_curve(tracked):
    """Catches epochs logged at the wrong step, a metric left out, or the stage's run not
    nested under the kedro run's."""
    checkpoint = small_checkpoint(
        identity=Identity("in_domain", "in_domain_seed1", "pretraining", "demo_source", "m", 1),
        history=History(
            epochs=EPOCHS,
            selection_metric="accuracy",
            best_score=0.6,
            best_epoch=2,
            runtime={"device": "cpu", "torch_threads": 2},
            pretrained_weights="tf_efficientnet_lite0 ImageNet-1k from package p 0.1.0 (sha256 ab)",
        ),
    )
    tracked.saved("in_domain_seed1.source_model", checkpoint, "data/06_models/x.pt", "v1")
    client = MlflowClient(tracked.uri)
    (child,) = client.search_runs(
        [tracked.experiment_id], f"tags.mlflow.parentRunId = '{tracked.run_id}'"
    )
    assert child.info.run_name == "in_domain_seed1/pretraining"
    history = client.get_metric_history(child.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.3), (2, 0.6), (3, 0.5)]
    losses = client.get_metric_history(child.info.run_id, "train_loss")
    assert [m.value for m in sorted(losses, key=lambda m: m.step)] == [2.0, 1.5, 1.2]
    assert child.data.params["device"] == "cpu" and child.data.params["torch_threads"] == "2"
    assert child.data.tags["checkpoint"] == "data/06_models/x.pt @ v1"
    assert child.data.tags["pretrained_weights"].endswith("package p 0.1.0 (sha256 ab)")
    parent = client.get_run(tracked.run_id)
    assert parent.data.tags["catalog.in_domain_seed1.source_model"] == "data/06_models/x.pt @ v1"


def test_test_metrics_are_logged_per_run_and_settings_are_not(tracked):
    """Catches two routes' test metrics logged under one name (the later overwriting the
    earlier), and settings such as the seed logged as scores."""
    for namespace, accuracy in (("in_domain_seed1", 0.7), ("out_of_domain_seed1", 0.8)):
        report = {"accuracy": accuracy, "n_test": 80, "seed": 1, "calibration": {"ece": 0.1}}
        tracked.saved(f"{namespace}.metrics", report, f"{namespace}/metrics.json", "v1")
    metrics = MlflowClient(tracked.uri).get_run(tracked.run_id).data.metrics
    assert metrics["in_domain_seed1/test_accuracy"] == 0.7
    assert metrics["out_of_domain_seed1/test_accuracy"] == 0.8
    assert metrics["in_domain_seed1/test_calibration.ece"] == 0.1
    assert not any(key.endswith("test_seed") for key in metrics)


def test_per_class_results_stay_in_the_report_and_the_shift_errors_become_metrics(tracked):
    """Catches class names turned into metric keys (EcoTaxa-style names such as
    "Oithona<Cyclopoida" are refused by MLflow and would end the run)."""
    classes = {"Oithona<Cyclopoida": {"threshold": 0.9, "coverage": 0.5}}
    report = {
        "accuracy": 0.7,
        "n_test": 80,
        "open_set": {
            "test": {"coverage": 0.8},
            "per_class": {"classes": classes, "test": {"coverage": 0.75, "per_class": classes}},
        },
        "quantification": {
            "simulated_shift_on_test": {"mean_absolute_error": {"em": 0.01, "adjusted_count": 0.02}}
        },
    }
    tracked.saved("two_stage.metrics", report, "two_stage/metrics.json", "v1")
    metrics = MlflowClient(tracked.uri).get_run(tracked.run_id).data.metrics
    assert metrics["two_stage/test_open_set.test.coverage"] == 0.8
    assert metrics["two_stage/test_open_set.per_class.coverage"] == 0.75
    assert metrics["two_stage/test_shift_error.em"] == 0.01
    assert not any("Oithona" in key for key in metrics)


def test_figures_and_reports_become_artefacts(tracked):
    figure, _ = plt.subplots()
    tracked.saved("two_stage.confusion_matrix", figure, "a/confusion_matrix.png", "v1")
    tracked.saved("two_stage.metrics", {"accuracy": 0.5, "n_test": 4}, "b/metrics.json", "v1")
    table = pd.DataFrame({"route": ["in_domain"], "accuracy": [0.7]})
    tracked.saved("route_comparison", table, "c/route_comparison.csv", "v1")
    tracked.saved("two_stage.model_card", "# Model card", "e/model_card.md", "v1")
    huge = pd.DataFrame({"rel_path": [f"{i}.png" for i in range(20_000)]})
    tracked.saved("predictions", huge, "d/predictions.csv", "v1")  # stays in data/ only
    plt.close(figure)
    client = MlflowClient(tracked.uri)
    paths = {
        a.path
        for folder in ("figures", "reports")
        for a in client.list_artifacts(tracked.run_id, folder)
    }
    assert paths == {
        "figures/two_stage.confusion_matrix.png",
        "reports/two_stage.metrics.json",
        "reports/route_comparison.csv",
        "reports/two_stage.model_card.md",
    }


def test_parameters_are_flattened_to_dotted_keys():
    """Catches nested sections logged as one unreadable dict, or lists split into keys."""
    flat = dict(flatten({"training": {"lr": {"backbone": 0.001}, "seeds": [1, 2]}, "a": "x"}))
    assert flat == {"training.lr.backbone": "0.001", "training.seeds": "[1, 2]", "a": "x"}


def test_mlflow_sends_no_usage_telemetry_unless_the_user_opts_in(tmp_path, monkeypatch):
    """Catches MLflow 3's default usage telemetry left on: a network call the user did not
    ask for, from every tracked run."""
    from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    MlflowRun(TrackingParams(), tmp_path)
    assert MLFLOW_DISABLE_TELEMETRY.get() is True
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's choice wins
    MlflowRun(TrackingParams(), tmp_path)
    assert MLFLOW_DISABLE_TELEMETRY.get() is False


def test_an_unreachable_server_is_one_clear_error(tmp_path):
    """Catches minutes of retries and a raw connection traceback for a mistyped server."""
    settings = TrackingParams(tracking_uri="http://127.0.0.1:9")
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:9 cannot be used \(no answer"):
        MlflowRun(settings, tmp_path)
