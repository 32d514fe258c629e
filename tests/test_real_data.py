"""A slice of real UVP6 images (../shared/data/uvp6_sample.zip) through ingestion and a route."""

from __future__ import annotations

import zipfile
from collections import defaultdict

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from plankton_kedro.datasets import ImageSourceDataset
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
from plankton_kedro.pipelines.assembly import build_route
from tests.conftest import SHARED_DATA, TINY_MODEL, KeptDataset

UVP6 = SHARED_DATA / "uvp6_sample.zip"

pytestmark = pytest.mark.skipif(
    not UVP6.is_file(),
    reason=f"real UVP6 sample not found at {UVP6} (it ships with the developers' shared data)",
)


def _slice(tmp_path, classes, per_class):
    """A zip with ``per_class`` images of each of ``classes``, taken from the UVP6 sample."""
    taken = defaultdict(int)
    path = tmp_path / f"uvp6_{'_'.join(c.lower() for c in classes)}.zip"
    with zipfile.ZipFile(UVP6) as source, zipfile.ZipFile(path, "w") as target:
        for name in sorted(source.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[1] in classes and taken[parts[1]] < per_class:
                target.writestr(name, source.read(name))
                taken[parts[1]] += 1
    return path


def test_uvp6_slice_ingests_and_trains(tmp_path):
    source = _slice(tmp_path, ["detritus", "Copepoda", "fiber", "bubble"], 25)
    target = _slice(tmp_path, ["Acantharea", "darksphere", "Trichodesmium"], 20)
    settings = {
        "model": ModelParams(name=TINY_MODEL, bottleneck_dim=32),
        "data": DataParams(image_size=32),
        "training": TrainingParams(
            max_epochs=2, batch_size=16, max_updates_per_epoch=3, state_dir=str(tmp_path / "s")
        ),
        "ingestion": IngestionParams(),
        "pretraining": StageParams(),
        "fine_tuning": StageParams(),
        "preprocessing.source": PreprocessingParams(),
        "preprocessing.target": PreprocessingParams(),
        "evaluation": EvaluationParams(feature_classifiers={"cv_folds": 2}),
        "runs.two_stage": RunParams(name="two_stage", route="two_stage"),
    }
    catalog = DataCatalog(
        {
            **{f"params:{key}": MemoryDataset(value) for key, value in settings.items()},
            "source_images": ImageSourceDataset(path=str(source)),
            "target_images": ImageSourceDataset(path=str(target)),
            "two_stage.metrics": KeptDataset(),
            "source.earlier_ingestions": MemoryDataset(NO_EARLIER_INGESTIONS),
            "target.earlier_ingestions": MemoryDataset(NO_EARLIER_INGESTIONS),
        }
    )
    outputs = SequentialRunner().run(build_route("two_stage"), catalog)
    metrics = catalog.load("two_stage.metrics")
    assert metrics["dataset"] == target.stem
    assert metrics["n_test"] == 9  # 15 % of 20 images in each of 3 classes
    report = outputs["source_ingestion_report"].load()
    assert report["source"]["top_folder"] == "uvp6"
    assert report["images"] == 100 and report["skipped_count"] == 0
    assert sorted(report["per_class"]) == ["Copepoda", "bubble", "detritus", "fiber"]
