"""Parameter models: defaults, stage overrides, readable errors."""

import pytest
from pydantic import ValidationError

from plankton_kedro.engine.config import (
    DataParams,
    ModelParams,
    SplitParams,
    StageParams,
    TrainingParams,
)


def test_stage_overrides_win_and_merge_nested_values():
    base = TrainingParams(max_epochs=10, batch_size=16)
    stage = StageParams(training={"max_epochs": 3, "lr": {"classifier": 0.5}})
    merged = base.overridden(stage.training)
    assert merged.max_epochs == 3
    assert merged.batch_size == 16
    assert merged.lr.classifier == 0.5
    assert merged.lr.backbone == base.lr.backbone


def test_empty_stage_section_keeps_global_values():
    base = TrainingParams(max_epochs=1)
    assert base.overridden(StageParams().training) == base


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (TrainingParams, {"max_epochs": 0}, "greater than 0"),
        (TrainingParams, {"selection_metric": "auc"}, "accuracy"),
        (TrainingParams, {"max_epoch": 2}, "Extra inputs are not permitted"),
        (ModelParams, {"name": "resnet_18"}, "resnet18"),
        (ModelParams, {"pretrained": "/no/such/weights.safetensors"}, "no such file"),
        (DataParams, {"image_size": 8}, "greater than or equal to 16"),
        (SplitParams, {"train": 0.5, "val": 0.2, "test": 0.2}, "add up to 1"),
        (StageParams, {"training": {"batch_size": -1}}, "greater than 0"),
    ],
)
def test_bad_values_fail_with_readable_messages(model, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        model(**kwargs)


def test_cache_size_follows_resize_ratio():
    assert DataParams(image_size=224).cache_size == 256
    assert DataParams(image_size=48, resize_ratio=1.0).cache_size == 48


def test_pretrained_accepts_imagenet_none_and_existing_file(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert ModelParams(pretrained="ImageNet").pretrained == "imagenet"
    assert ModelParams(pretrained="none").uses_pretrained_weights is False
    assert ModelParams(pretrained=str(weights)).pretrained == str(weights)
