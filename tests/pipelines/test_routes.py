"""Route pipelines run with an in-memory catalog and the SequentialRunner."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.framework.project import configure_project
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image, ImageDraw
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, confusion_matrix

from plankton_kedro.config_loader import PlanktonConfigLoader
from plankton_kedro.datasets import ImageSourceDataset
from plankton_kedro.engine.analysis.calibration import TEMPERATURE_BOUNDS
from plankton_kedro.engine.collection.earlier import NO_EARLIER_INGESTIONS
from plankton_kedro.engine.config import (
    DataParams,
    EvaluationParams,
    IngestionParams,
    ModelParams,
    PreprocessingParams,
    RunParams,
    StageParams,
    TrainingParams,
)
from plankton_kedro.pipeline_registry import register_pipelines
from plankton_kedro.pipelines.assembly import build_route
from plankton_kedro.pipelines.build_parameters import use_run_environment
from plankton_kedro.pipelines.routes import ROUTES
from plankton_kedro.pipelines.runs import RUNS_KEY, all_runs
from tests.conftest import PROJECT_ROOT, TINY_MODEL, KeptDataset

SHAPES = ("bar", "disc", "cross")


def _draw(shape: str, rng: np.random.Generator) -> Image.Image:
    size = int(rng.integers(24, 40))
    image = Image.new("L", (size, size + int(rng.integers(-6, 6))), 255)
    draw = ImageDraw.Draw(image)
    c, r = size / 2, size / 3
    grey = int(rng.integers(20, 90))
    if shape == "bar":
        draw.rectangle([c - 3, 2, c + 3, size - 2], fill=grey)
    elif shape == "disc":
        draw.ellipse([c - r, c - r, c + r, c + r], fill=grey)
    else:
        draw.line([2, 2, size - 2, size - 2], fill=grey, width=4)
        draw.line([2, size - 2, size - 2, 2], fill=grey, width=4)
    return image.rotate(float(rng.uniform(0, 360)), fillcolor=255)


def _collection(root, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True)
        for i in range(per_class):
            _draw(shape, rng).save(root / shape / f"{i:03d}.png")
    return ImageSourceDataset(path=str(root)).load()


def _catalog(tmp_path, route: str, run: RunParams | None = None) -> DataCatalog:
    run = run or RunParams(name=route, route=route)
    settings = {
        "model": ModelParams(name=TINY_MODEL, bottleneck_dim=32),
        "data": DataParams(image_size=24, resize_ratio=0.8),
        "training": TrainingParams(
            max_epochs=2,
            batch_size=8,
            max_updates_per_epoch=3,
            state_dir=str(tmp_path / "state"),
            lr={"backbone_from_scratch": 0.05, "bottleneck": 0.05, "classifier": 0.05},
        ),
        "ingestion": IngestionParams(workers=1),
        "pretraining": StageParams(training={"max_epochs": 3}),
        "fine_tuning": StageParams(),
        "preprocessing.source": PreprocessingParams(),
        "preprocessing.target": PreprocessingParams(),
        "evaluation": EvaluationParams(
            feature_classifiers={
                "cv_folds": 2,
                "features": ["pretrained", "fine_tuned_bottleneck", "fine_tuned_backbone"],
            }
        ),
    }
    settings[f"{RUNS_KEY}.{run.name}"] = run
    datasets = {f"params:{key}": MemoryDataset(value) for key, value in settings.items()}
    datasets["source_images"] = MemoryDataset(_collection(tmp_path / "source", 20, 0))
    datasets["target_images"] = MemoryDataset(_collection(tmp_path / "target", 10, 1))
    for collection in ("source", "target"):
        datasets[f"{collection}.earlier_ingestions"] = MemoryDataset(NO_EARLIER_INGESTIONS)
    outputs = ("source_model", "target_model", "metrics", "calibration", "feature_classifiers")
    for name in (*outputs, "pretrained_features", "features", "predictions"):
        datasets[f"{run.name}.{name}"] = KeptDataset()
    datasets["target_ingestion_report"] = KeptDataset()
    return DataCatalog(datasets)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_route_runs_end_to_end_in_memory(tmp_path, route):
    """Catches a broken route, or metrics and calibration that are not its own val/test outputs."""
    catalog = _catalog(tmp_path, route)
    SequentialRunner().run(build_route(route), catalog)
    metrics = catalog.load(f"{route}.metrics")
    assert metrics["route"] == route
    assert metrics["n_test"] == 6  # 20% of 10 images in each of 3 classes
    # the reported metrics are those of the model's test predictions, recomputed with sklearn
    predictions = catalog.load(f"{route}.predictions")
    test = predictions["test"]
    predicted = test["logits"].argmax(axis=1)
    assert metrics["accuracy"] == accuracy_score(test["labels"], predicted)
    assert metrics["confusion_matrix"] == confusion_matrix(test["labels"], predicted).tolist()
    model = catalog.load(f"{route}.target_model")
    assert model.class_names == sorted(SHAPES)
    assert model.identity.stage == "fine_tuning"
    has_stage_one = ROUTES[route].stage1_init is not None
    assert catalog.exists(f"{route}.source_model") == has_stage_one
    if has_stage_one:
        source_model = catalog.load(f"{route}.source_model")
        # the stage override (pretraining.training.max_epochs=3) beats the global value (2)
        assert len(source_model.history.epochs) == 3
        assert len(model.history.epochs) == 2
        assert model.history.initial_weights.startswith(f"{route}/pretraining checkpoint")
    calibration = catalog.load(f"{route}.calibration")
    _assert_fitted_on(predictions["val"], predictions["test"], calibration, metrics)
    probes = catalog.load(f"{route}.feature_classifiers")
    assert {"pretrained", "fine_tuned_bottleneck", "fine_tuned_backbone"} <= set(probes)
    for probe in ("pretrained", "fine_tuned_bottleneck", "fine_tuned_backbone"):
        assert {"logistic_regression", "svc_rbf"} <= set(probes[probe]), probe
    # the paper's probe reads what the route fine-tunes from, not the fine-tuned model
    pretrained = catalog.load(f"{route}.pretrained_features")
    assert sorted(set(pretrained["split"])) == ["test", "train", "val"]
    if has_stage_one:
        assert probes["pretrained"]["features_of"].startswith(f"stage-1 model {route}/pretraining")
    else:
        assert probes["pretrained"]["features_of"].endswith("(model.pretrained=none)")
    # same images, another network: the frozen features differ from the fine-tuned backbone's
    # (a probe wired to the fine-tuned model would make them equal)
    fine_tuned = catalog.load(f"{route}.features").set_index("rel_path")
    frozen = pretrained.set_index("rel_path").loc[fine_tuned.index]
    columns = [c for c in frozen.columns if c.startswith("f")]
    assert not np.allclose(frozen[columns].to_numpy(), fine_tuned[columns].to_numpy())
    report = catalog.load("target_ingestion_report")
    assert report["images"] == 30 and report["skipped_count"] == 0


def _assert_fitted_on(val: dict, test: dict, calibration: dict, metrics: dict) -> None:
    """The temperature minimises the validation NLL (scipy, at the search bounds excepted) and
    the "unknown" threshold is one of the validation confidences at that temperature."""
    temperature = calibration["temperature"]
    val_logits, test_logits = (np.asarray(s["logits"], dtype=np.float64) for s in (val, test))

    def nll(t: float) -> float:
        log_p = log_softmax(val_logits / t, axis=1)
        return float(-log_p[np.arange(len(val["labels"])), val["labels"]].mean())

    for neighbour in (temperature * 1.02, temperature / 1.02):
        if TEMPERATURE_BOUNDS[0] <= neighbour <= TEMPERATURE_BOUNDS[1]:
            assert nll(temperature) <= nll(neighbour) + 1e-9, (temperature, neighbour)
    confidence = np.exp(log_softmax(val_logits / temperature, axis=1)).max(axis=1)
    assert np.isclose(confidence, calibration["rejection_threshold"], rtol=0, atol=1e-9).any()
    on_test = np.exp(log_softmax(test_logits / temperature, axis=1)).max(axis=1)
    accepted = int((on_test >= calibration["rejection_threshold"] - 1e-9).sum())
    assert metrics["open_set"]["test"]["n_accepted"] == accepted


def test_registry_exposes_every_runnable_name_and_default_is_two_stage():
    configure_project("plankton_kedro")
    pipelines = register_pipelines()
    expected = {"ingestion", "pretraining", "fine_tuning", "evaluation", *ROUTES, "__default__"}
    assert expected <= set(pipelines)
    assert pipelines["__default__"].describe() == pipelines["two_stage"].describe()
    # routes never share a trained artefact
    outputs = [pipelines[r].all_outputs() - pipelines["ingestion"].all_outputs() for r in ROUTES]
    assert not set.intersection(*outputs)


def test_a_copy_of_a_route_trains_with_its_own_run_parameters(tmp_path):
    """What makes a compare or ensemble copy differ (seed, network) is its run parameter."""
    run = RunParams(name="ensemble_x", route="out_of_domain", seed=7, model="test_resnet")
    catalog = _catalog(tmp_path, "out_of_domain", run)
    SequentialRunner().run(build_route("out_of_domain", namespace="ensemble_x"), catalog)
    model = catalog.load("ensemble_x.target_model")
    assert (model.identity.run, model.identity.route) == ("ensemble_x", "out_of_domain")
    assert (model.identity.seed, model.model_name) == (7, "test_resnet")
    assert model.history.settings["training"]["seed"] == 7
    assert catalog.load("ensemble_x.metrics")["run"] == "ensemble_x"


def test_the_runs_environment_shapes_the_pipelines_it_runs():
    """``kedro run --env laptop --pipelines=compare``: Kedro creates the config loader, then
    builds the pipelines. Catches pipelines built from conf/base's seeds and budgets while
    the run's parameters come from the environment (``runs.*`` no node reads, budgets never
    trained)."""
    configure_project("plankton_kedro")
    try:
        loader = PlanktonConfigLoader(
            str(PROJECT_ROOT / "conf"), env="laptop", base_env="base", default_run_env="local"
        )
        compare = register_pipelines()["compare"]
        runs = loader["parameters"][RUNS_KEY]
    finally:
        use_run_environment(None)
    assert "in_domain_seed1_n5.select_label_budget" in {n.name for n in compare.nodes}
    assert f"params:{RUNS_KEY}.two_stage_seed2_n25" in compare.inputs()
    assert runs["two_stage_seed2_n25"]["labels_per_class"] == 25
    assert "in_domain_seed1_n5" not in all_runs()  # conf/base again once the run is over


def test_every_run_a_pipeline_holds_has_its_run_parameters():
    """The pipelines and the ``runs`` parameters are derived from the same settings."""
    configure_project("plankton_kedro")
    runs = all_runs()
    needed = {
        name.removeprefix(f"params:{RUNS_KEY}.")
        for pipeline in register_pipelines().values()
        for name in pipeline.inputs()
        if name.startswith(f"params:{RUNS_KEY}.")
    }
    assert {"two_stage", "in_domain_seed1", "ensemble_lite0_ood"} <= needed
    assert needed <= set(runs)
    assert all(runs[name]["name"] == name for name in runs)
    assert runs["ensemble_lite0_ood"]["model"] == "tf_efficientnet_lite0"
