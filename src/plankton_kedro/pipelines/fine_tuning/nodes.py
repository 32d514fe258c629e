"""Stage 2 of every route: fine-tune on the target set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.config import DataParams, ModelParams, StageParams, TrainingParams
from plankton_kedro.engine.stages import train_stage


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
) -> dict[str, Any]:
    """Keep the stage-1 backbone and bottleneck, re-initialise the classifier, fine-tune."""
    return train_stage(
        image_cache,
        manifest,
        model=model,
        data=data,
        training=training.overridden(fine_tuning.training),
        route=route,
        stage="fine_tuning",
        backbone_init="checkpoint",
        init_checkpoint=source_model,
    )


def fine_tune_from_pretrained(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    fine_tuning: StageParams,
    *,
    route: str,
) -> dict[str, Any]:
    """Start from ``model.pretrained`` (ImageNet in real runs) and fine-tune on the target."""
    return train_stage(
        image_cache,
        manifest,
        model=model,
        data=data,
        training=training.overridden(fine_tuning.training),
        route=route,
        stage="fine_tuning",
        backbone_init="pretrained",
    )
