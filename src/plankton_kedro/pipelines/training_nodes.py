"""Training nodes shared by the stage templates (``pretraining`` and ``fine_tuning``).

Which route a node trains, with which seed and network, comes from its run's parameters
(``params:run``, mapped to ``runs.<namespace>``); the torch engine is imported on first use,
so building the pipelines (every ``kedro`` command) does not import torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing
from plankton_kedro.engine.config import (
    DataParams,
    ModelParams,
    PreprocessingParams,
    RunParams,
    StageParams,
    TrainingParams,
)
from plankton_kedro.lazy import lazy_import
from plankton_kedro.pipelines.routes import ROUTES

stages = lazy_import("plankton_kedro.engine.modelling.stages")
curves = lazy_import("plankton_kedro.engine.analysis.curves")


def train_on_source(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    preprocessing: PreprocessingParams,
    pretraining: StageParams,
    run: RunParams,
) -> Checkpoint:
    """Stage 1: train on the source set from the route's start (random weights for
    ``in_domain``, ``model.pretrained`` for ``two_stage``); the best checkpoint on validation."""
    return _train(
        image_cache, manifest, model, data, training, preprocessing, pretraining, run,
        stage="pretraining", backbone_init=ROUTES[run.route].stage1_init,
    )  # fmt: skip


def fine_tune_on_target(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    preprocessing: PreprocessingParams,
    fine_tuning: StageParams,
    run: RunParams,
) -> Checkpoint:
    """Stage 2 of a route without stage 1: fine-tune ``model.pretrained`` on the target set."""
    return _train(
        image_cache, manifest, model, data, training, preprocessing, fine_tuning, run,
        stage="fine_tuning", backbone_init="pretrained",
    )  # fmt: skip


def fine_tune_from_source_model(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    source_model: Checkpoint,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    preprocessing: PreprocessingParams,
    fine_tuning: StageParams,
    run: RunParams,
) -> Checkpoint:
    """Stage 2: keep the stage-1 backbone and bottleneck, re-initialise the classifier,
    fine-tune on the target set."""
    return _train(
        image_cache, manifest, model, data, training, preprocessing, fine_tuning, run,
        stage="fine_tuning", backbone_init="checkpoint", init_checkpoint=source_model,
    )  # fmt: skip


def _train(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    preprocessing: PreprocessingParams,
    stage_settings: StageParams,
    run: RunParams,
    *,
    stage: str,
    backbone_init: str,
    init_checkpoint: Checkpoint | None = None,
) -> Checkpoint:
    """The run's network and settings (global, then the stage's, then the run's), trained on
    a cache that must have been made with the collection's ``preprocessing``."""
    return stages.train_stage(
        image_cache,
        manifest,
        model=run.model_params(model),
        data=data,
        training=run.training_params(training, stage_settings),
        route=run.route,
        stage=stage,
        backbone_init=backbone_init,
        init_checkpoint=init_checkpoint,
        run_name=run.name,
        preprocessing=CachePreprocessing.from_settings(data.cache_size, preprocessing.model_dump()),
    )


def plot_learning_curves(model: Checkpoint):
    """The stage's train loss, validation score and learning rate per epoch (a figure)."""
    return curves.learning_curves(model)
