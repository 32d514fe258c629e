"""The summary that ends every `kedro run`: what was produced, headline metrics, where."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from kedro.io import DataCatalog
from kedro.pipeline import node

from plankton_kedro.engine.checkpoint import History, Identity
from plankton_kedro.engine.errors import (
    CheckpointError,
    CollectionError,
    StageInputError,
    WeightsUnavailableError,
)
from plankton_kedro.hooks import RunSummaryHooks, UserErrorHooks
from plankton_kedro.run_summary import SavedOutput, light, summary_lines
from tests.conftest import small_checkpoint
from tests.demo_run import ROUTES, demo_project

PROJECT = Path("/project")


def saved(name: str, data=None, path: str | None = None, role: str | None = None) -> SavedOutput:
    return SavedOutput(name, light(data), f"{PROJECT}/{path}" if path else None, role)


def trained(run: str, stage: str = "fine_tuning", **fields):
    identity = Identity(run, run, stage, "uvp6", "m1", 42)
    return small_checkpoint(identity=identity, model_name="resnet18", **fields)


def summary(*outputs: SavedOutput, pipelines=("two_stage",)) -> str:
    lines = summary_lines(
        pipelines=list(pipelines),
        version="2026-01-01T00.00.00.000Z",
        saved=list(outputs),
        project=PROJECT,
    )
    return "\n".join(lines)


def ingestion_report(name: str, images: int, excluded: dict | None = None) -> dict:
    return {
        "source": {"name": name},
        "images": images,
        "classes": 3,
        "skipped_count": 1,
        "excluded": excluded or {},
    }


def metrics(route: str, accuracy: float) -> dict:
    return {
        "run": route,
        "accuracy": accuracy,
        "f1_macro": 0.5,
        "n_test": 80,
        "model_name": "resnet18",
        "dataset": "uvp6",
    }


def test_ingestion_run_lists_the_sets_and_where_their_files_are():
    text = summary(
        saved(
            "source_ingestion_report",
            ingestion_report("ndsb", 30336),
            "data/08_reporting/source/ingestion_report.json",
            "ingestion_report",
        ),
        saved(
            "target_ingestion_report",
            ingestion_report("uvp6", 1050, {"identical file under another label": 200}),
            role="ingestion_report",
        ),
        saved("source_manifest", None, "data/03_primary/source/manifest.parquet"),
        saved("source.records"),
        pipelines=["ingestion"],
    )
    assert text.splitlines()[0] == "Run summary (ingestion):"
    assert "ingested: ndsb 30336 images, 3 classes, 1 files skipped ·" in text
    assert (
        "uvp6 1050 images, 3 classes, 1 files skipped, 200 left out (identical file under "
        "another label)" in text
    )
    assert "outputs (version 2026-01-01T00.00.00.000Z" in text
    assert "data/03_primary/: source/manifest.parquet" in text
    assert "data/08_reporting/: source/ingestion_report.json" in text
    assert "records" not in text  # in-memory entries have no file


def test_route_run_names_the_trained_stages_and_the_test_metrics():
    checkpoint = trained(
        "two_stage", history=History(selection_metric="accuracy", best_score=0.9, best_epoch=4)
    )
    text = summary(
        saved("two_stage.target_model", checkpoint, "data/06_models/two_stage/target_model.pt"),
        saved(
            "two_stage.metrics",
            metrics("two_stage", 0.875),
            "data/08_reporting/two_stage/metrics.json",
            "metrics",
        ),
    )
    assert (
        "trained: two_stage/fine_tuning resnet18 on uvp6, best val accuracy 0.9000 @ epoch 4"
        in text
    )
    assert "two_stage: accuracy 0.8750 · f1_macro 0.5000 · n_test 80 · resnet18 on uvp6" in text
    assert "data/06_models/: two_stage/target_model.pt" in text


def test_compare_shows_each_route_over_seeds_and_counts_many_outputs():
    stats = {
        "accuracy": {"mean": 0.8, "std": 0.01, "n": 3},
        "f1_macro": {"mean": 0.7, "std": 0.02, "n": 3},
    }
    checkpoints = [
        saved(
            f"two_stage_seed{s}.target_model",
            trained(f"two_stage_seed{s}"),
            f"data/06_models/two_stage_seed{s}/target_model.pt",
        )
        for s in range(9)
    ]
    text = summary(
        *checkpoints,
        saved("two_stage_seed1.metrics", metrics("two_stage_seed1", 0.8), role="metrics"),
        saved("route_summary", {"two_stage": stats}, role="route_summary"),
        pipelines=["compare"],
    )
    assert "trained: 9 checkpoints (9 fine_tuning)" in text
    assert "two_stage: accuracy 0.8000 ± 0.0100 · f1_macro 0.7000 ± 0.0200 · 3 seeds" in text
    assert "two_stage_seed1: accuracy" not in text  # the table over seeds replaces each run
    assert "and 3 more" in text


def test_ensembling_predict_and_download_runs_say_what_they_produced():
    ensemble = {
        "members": {"vit_s1": {}, "vit_s2": {}, "convnext": {}},
        "selection": {"weights": {"vit_s1": 0.5, "convnext": 0.5}},
        "selected_on": "val",
        "ensemble": {"test": {"accuracy": 0.9, "f1_macro": 0.8, "n_test": 80}},
    }
    prediction = {
        "source": {"name": "cast_12"},
        "model": {"kind": "checkpoint", "route": "two_stage", "model_name": "resnet18"},
        "images": 30,
        "unknown": 2,
        "skipped_count": 1,
    }
    download = {"ndsb": {"path": "data/01_raw/ndsb.zip", "bytes": 1234, "verified": True}}
    text = summary(
        saved("ensemble_report", ensemble, role="ensemble_report"),
        saved("prediction_report", prediction, role="prediction_report"),
        saved("download_report", download, role="download_report"),
    )
    assert "ensemble of vit_s1, convnext (2 of 3 candidates, chosen on val): accuracy 0.9" in text
    assert (
        "predicted: 30 images of cast_12 with two_stage (resnet18), 2 unknown, 1 files skipped"
        in text
    )
    assert "downloaded: ndsb -> data/01_raw/ndsb.zip (1,234 bytes, SHA-256 verified)" in text


def test_what_an_output_is_comes_from_its_role_or_type_not_its_name():
    text = summary(
        saved("my_target_ingestion_report", ingestion_report("ndsb", 5)),  # no role: not read
        saved("survey_2025", ingestion_report("zooscan", 7), role="ingestion_report"),
        saved("best_model", trained("mine")),  # a Checkpoint, whatever its name
    )
    assert "ingested: zooscan 7 images" in text and "ndsb" not in text
    assert "trained: mine/fine_tuning resnet18" in text


def test_the_hook_reads_the_role_from_the_catalog_metadata(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "{dataset}_ingestion_report": {
                "type": "json.JSONDataset",
                "filepath": str(tmp_path / "{dataset}.json"),
                "metadata": {"run_summary": "ingestion_report"},
            },
            "notes": {"type": "json.JSONDataset", "filepath": str(tmp_path / "notes.json")},
        }
    )
    hooks = RunSummaryHooks()
    hooks.before_pipeline_run(catalog)
    hooks.after_dataset_saved("target_ingestion_report", ingestion_report("uvp6", 9))
    hooks.after_dataset_saved("notes", ingestion_report("not-a-report", 1))
    roles = {item.name: item.role for item in hooks._saved}
    assert roles == {"target_ingestion_report": "ingestion_report", "notes": None}
    assert hooks._saved[0].filepath == str(tmp_path / "target.json")


def test_a_run_that_saved_nothing_says_so():
    assert "nothing was saved" in summary(pipelines=["download"])


@pytest.mark.slow
def test_a_real_run_ends_with_the_summary_of_all_three_routes(tmp_path_factory):
    log = (demo_project(tmp_path_factory) / "run.log").read_text()
    text = log[log.index("Run summary (") :]
    assert "ingested: demo_source 1200 images" in text and "demo_target 400 images" in text
    for route in ROUTES:
        assert f"trained: {route}/fine_tuning" in text
        assert f"    {route}: accuracy" in text
    assert "trained: out_of_domain/pretraining" not in text
    assert "data/06_models/: " in text and "data/08_reporting/: " in text


def test_input_errors_end_the_run_with_the_message_and_other_errors_keep_their_traceback():
    failed = node(
        lambda cache: cache,
        "cache",
        "predictions",
        name="predict_target_splits",
        namespace="two_stage",
    )
    with pytest.raises(click.ClickException, match=r"^two_stage.predict_target_splits: the image"):
        UserErrorHooks().on_node_error(StageInputError("the image cache holds 27 px"), failed)
    for error in (CollectionError("x"), CheckpointError("y"), WeightsUnavailableError("z")):
        with pytest.raises(click.ClickException):  # every user error, by its base class
            UserErrorHooks().on_node_error(error, failed)
    UserErrorHooks().on_node_error(KeyError("a bug"), failed)  # re-raised by Kedro itself
    UserErrorHooks().on_node_error(ValueError("a bug"), failed)
