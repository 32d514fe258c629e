"""Training nodes shared by the stage pipelines (``pretraining`` and ``fine_tuning``)."""

from __future__ import annotations

from functools import partial, update_wrapper
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline, node

from plankton_kedro.engine.config import (
    DataParams,
    EnsembleMember,
    ModelParams,
    StageParams,
    TrainingParams,
)
from plankton_kedro.engine.stages import train_stage

SETTINGS = ("model", "data", "training")


def train(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    stage_settings: StageParams,
    *,
    route: str,
    stage: str,
    backbone_init: str,
    run_name: str | None = None,
    seed: int | None = None,
    member: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on the train split from ``backbone_init`` (``scratch`` or ``pretrained``, i.e.
    ``model.pretrained``); return the best checkpoint on the validation split. ``member``:
    an ensemble member's own network and weights, overriding ``model``."""
    return train_stage(
        image_cache,
        manifest,
        model=member_model(model, member),
        data=data,
        training=stage_training(training, stage_settings, seed),
        route=route,
        stage=stage,
        backbone_init=backbone_init,
        run_name=run_name,
    )


def fine_tune_from_source_model(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    source_model: dict[str, Any],
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    fine_tuning: StageParams,
    *,
    route: str,
    run_name: str | None = None,
    seed: int | None = None,
    member: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keep the stage-1 backbone and bottleneck, re-initialise the classifier, fine-tune."""
    return train_stage(
        image_cache,
        manifest,
        model=member_model(model, member),
        data=data,
        training=stage_training(training, fine_tuning, seed),
        route=route,
        stage="fine_tuning",
        backbone_init="checkpoint",
        init_checkpoint=source_model,
        run_name=run_name,
    )


def member_model(model: ModelParams, member: dict[str, Any] | None) -> ModelParams:
    """``model``, or an ensemble member's network and weights on top of it."""
    return model if member is None else EnsembleMember(**member).model_params(model)


def stage_training(
    training: TrainingParams, stage_settings: StageParams, seed: int | None
) -> TrainingParams:
    """Global training settings, then the stage's overrides, then a run's own seed."""
    settings = training.overridden(stage_settings.training)
    return settings if seed is None else settings.model_copy(update={"seed": seed})


def training_node(
    func, inputs: list[str], output: str, name: str, tags: list[str], **bound
) -> Node:
    """A node running ``func`` with route-specific keyword arguments bound (and its own name,
    docs and type hints kept, so Kedro validates its parameters and kedro-viz shows its code)."""
    return node(
        update_wrapper(partial(func, **bound), func),
        inputs,
        output,
        name=name,
        tags=tags,
    )


def stage_pipeline(stage: Node, namespace: str, dataset: str, stage_key: str) -> Pipeline:
    """``stage`` in ``namespace``, reading ``<dataset>_image_cache`` and ``<dataset>_manifest``
    and the shared settings plus the stage's own section (``pretraining``/``fine_tuning``)."""
    return Pipeline(
        [stage],
        namespace=namespace,
        inputs={"image_cache": f"{dataset}_image_cache", "manifest": f"{dataset}_manifest"},
        parameters={p: p for p in (*SETTINGS, stage_key)},
    )
