"""Stage 1 (source set) for every route that has one."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route
from plankton_kedro.pipelines.training_nodes import (
    SETTINGS,
    stage_pipeline,
    train,
    training_node,
)


def pretrain_route(
    route: Route,
    namespace: str | None = None,
    seed: int | None = None,
    member: dict | None = None,
) -> Pipeline:
    """source_image_cache + source_manifest -> <namespace>.source_model."""
    namespace = namespace or route.name
    tags = [TRAINING_TAG] + ([PRETRAINED_WEIGHTS_TAG] if route.stage1_init == "pretrained" else [])
    stage = training_node(
        train,
        ["image_cache", "manifest", *(f"params:{p}" for p in SETTINGS), "params:pretraining"],
        "source_model",
        name="train_on_source",
        tags=tags,
        route=route.name,
        stage="pretraining",
        backbone_init=route.stage1_init,
        run_name=namespace,
        seed=seed,
        member=member,
    )
    return stage_pipeline(stage, namespace, "source", "pretraining")


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 1 of every route that has one (reads the latest ingested source set)."""
    return sum(
        (pretrain_route(r) for r in ROUTES.values() if r.stage1_init is not None), Pipeline([])
    )
