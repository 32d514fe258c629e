"""Classifying new images preprocesses them exactly as the model's training images were."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from plankton_kedro.datasets import ImageSourceDataset
from plankton_kedro.engine.analysis.calibration import softmax
from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    record_preprocessing,
)
from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    ModelParams,
    PreprocessingParams,
    TrainingParams,
)
from plankton_kedro.engine.errors import StageInputError
from plankton_kedro.engine.modelling.classify import Classifier, predict_files
from plankton_kedro.engine.modelling.inference import predict_splits
from plankton_kedro.engine.modelling.stages import train_stage
from plankton_kedro.pipelines.ingestion.nodes import scan_collection, split_records
from tests.conftest import TINY_MODEL

DATA = DataParams(image_size=24, resize_ratio=0.8)


def _png(label: str, index: int) -> bytes:
    """A bright shape on a black, noisy, non-square background (an in-situ camera's look)."""
    rng = np.random.default_rng([index, len(label)])
    width, height = int(rng.integers(30, 60)), int(rng.integers(12, 28))
    pixels = rng.integers(0, 20, (height, width)).astype(np.uint8)
    image = Image.fromarray(pixels, "L")
    draw = ImageDraw.Draw(image)
    box = (4, 3, width - 5, height - 4)
    (draw.ellipse if label == "disc" else draw.rectangle)(box, fill=int(rng.integers(150, 250)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def ingested(tmp_path):
    root = tmp_path / "camera"
    for label in ("bar", "disc"):
        (root / label).mkdir(parents=True)
        for i in range(20):
            (root / label / f"{i:02d}.png").write_bytes(_png(label, i))
    source = ImageSourceDataset(path=str(root)).load()
    ingestion = IngestionParams(workers=1, spool_dir=None)
    records, cache, _ = scan_collection(source, DATA, PreprocessingParams(), ingestion)
    return root, np.asarray(cache), split_records(records, ingestion)


def _trained(cache, manifest, tmp_path):
    return train_stage(
        cache,
        manifest,
        model=ModelParams(name=TINY_MODEL, bottleneck_dim=16),
        data=DATA,
        training=TrainingParams(max_epochs=1, batch_size=8, state_dir=str(tmp_path / "s")),
        route="test",
        stage="fine_tuning",
        backbone_init="scratch",
    )


def test_a_held_back_image_is_classified_as_evaluation_scored_it(ingested, tmp_path):
    root, cache, manifest = ingested
    checkpoint = _trained(cache, manifest, tmp_path)
    assert checkpoint.preprocessing.fill == "auto"
    evaluated = predict_splits(checkpoint, cache, manifest, splits=("test",))["test"]
    test_paths = evaluated["rel_path"]
    files = [(path, (root / path).read_bytes()) for path in test_paths]
    result = predict_files(Classifier(checkpoint), files, workers=1, top_k=2)
    by_path = result.predictions.set_index("rel_path").loc[test_paths]
    names = checkpoint.class_names
    expected = softmax(evaluated["logits"])
    predicted = np.stack(
        [
            [
                row["top1_probability"] if row["top1_label"] == c else row["top2_probability"]
                for c in names
            ]
            for _, row in by_path.iterrows()
        ]
    )
    np.testing.assert_allclose(predicted, expected, atol=1e-5)


def test_evaluating_on_a_cache_made_otherwise_is_a_clear_error(ingested, tmp_path):
    root, cache, manifest = ingested
    checkpoint = _trained(cache, manifest, tmp_path)
    white = manifest.copy()
    record_preprocessing(white, CachePreprocessing(cache_size=cache.shape[1], fill=255))
    with pytest.raises(StageInputError, match="made with fill=255.*trained on images made with"):
        predict_splits(checkpoint, cache, white, splits=("test",))
