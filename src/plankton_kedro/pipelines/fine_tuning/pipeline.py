"""Stage 2 (target set) for every route."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route
from plankton_kedro.pipelines.runs import SHARED_SETTINGS, stage_of_run
from plankton_kedro.pipelines.training_nodes import (
    fine_tune_from_source_model,
    fine_tune_on_target,
)

STAGE_INPUTS = [
    *(f"params:{p}" for p in SHARED_SETTINGS),
    "params:preprocessing",
    "params:fine_tuning",
    "params:run",
]


def fine_tune_route(route: Route, namespace: str | None = None) -> Pipeline:
    """target_image_cache + target_manifest (+ <ns>.source_model) -> <ns>.target_model, with
    the run's parameters ``runs.<namespace>``."""
    namespace = namespace or route.name
    if route.stage1_init is None:
        stage = node(
            fine_tune_on_target,
            ["image_cache", "manifest", *STAGE_INPUTS],
            "target_model",
            name="fine_tune_on_target",
            tags=[TRAINING_TAG, PRETRAINED_WEIGHTS_TAG],
        )
    else:
        stage = node(
            fine_tune_from_source_model,
            ["image_cache", "manifest", "source_model", *STAGE_INPUTS],
            "target_model",
            name="fine_tune_on_target",
            tags=[TRAINING_TAG],
        )
    return stage_of_run(stage, namespace, "target", "fine_tuning")


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 2 of every route (reads the latest target set and stage-1 checkpoints)."""
    return sum((fine_tune_route(r) for r in ROUTES.values()), Pipeline([]))
