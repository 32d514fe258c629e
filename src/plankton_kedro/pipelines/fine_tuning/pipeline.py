"""Stage 2 (target set) for every route."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route
from plankton_kedro.pipelines.training_nodes import (
    SETTINGS,
    fine_tune_from_source_model,
    stage_pipeline,
    train,
    training_node,
)

STAGE_INPUTS = [*(f"params:{p}" for p in SETTINGS), "params:fine_tuning"]


def fine_tune_route(
    route: Route,
    namespace: str | None = None,
    seed: int | None = None,
    member: dict | None = None,
) -> Pipeline:
    """target_image_cache + target_manifest (+ <ns>.source_model) -> <ns>.target_model."""
    namespace = namespace or route.name
    run = {"route": route.name, "run_name": namespace, "seed": seed, "member": member}
    if route.stage1_init is None:
        stage = training_node(
            train,
            ["image_cache", "manifest", *STAGE_INPUTS],
            "target_model",
            name="fine_tune_on_target",
            tags=[TRAINING_TAG, PRETRAINED_WEIGHTS_TAG],
            stage="fine_tuning",
            backbone_init="pretrained",
            **run,
        )
    else:
        stage = training_node(
            fine_tune_from_source_model,
            ["image_cache", "manifest", "source_model", *STAGE_INPUTS],
            "target_model",
            name="fine_tune_on_target",
            tags=[TRAINING_TAG],
            **run,
        )
    return stage_pipeline(stage, namespace, "target", "fine_tuning")


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 2 of every route (reads the latest target set and stage-1 checkpoints)."""
    return sum((fine_tune_route(r) for r in ROUTES.values()), Pipeline([]))
