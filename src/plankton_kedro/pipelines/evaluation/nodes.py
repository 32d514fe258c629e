"""Evaluation of a route's best fine-tuned checkpoint on the target test split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plankton_kedro.engine.stages import evaluate_checkpoint

logger = logging.getLogger(__name__)


def evaluate_on_target_test(
    target_model: dict[str, Any], image_cache: np.ndarray, manifest: pd.DataFrame
) -> tuple[dict[str, Any], Figure]:
    """Metrics JSON and confusion matrix of the best checkpoint on the target test split."""
    metrics, figure = evaluate_checkpoint(target_model, image_cache, manifest, split="test")
    logger.info(
        "%s: target test accuracy %.4f · f1_macro %.4f · n_test %d",
        metrics["route"],
        metrics["accuracy"],
        metrics["f1_macro"],
        metrics["n_test"],
    )
    return metrics, figure
