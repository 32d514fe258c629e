"""Stage 1 of the in-domain and two-stage routes: train on the source set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.config import DataParams, ModelParams, StageParams, TrainingParams
from plankton_kedro.engine.stages import train_stage


def train_on_source(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    pretraining: StageParams,
    *,
    route: str,
    backbone_init: str,
) -> dict[str, Any]:
    """Train the full network on the source set's train split; return the best checkpoint."""
    return train_stage(
        image_cache,
        manifest,
        model=model,
        data=data,
        training=training.overridden(pretraining.training),
        route=route,
        stage="pretraining",
        backbone_init=backbone_init,
    )
