"""Stage 1 (source set) for every route that has one."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route
from plankton_kedro.pipelines.runs import SHARED_SETTINGS, stage_of_run
from plankton_kedro.pipelines.training_nodes import train_on_source

INPUTS = [
    *(f"params:{p}" for p in SHARED_SETTINGS),
    "params:preprocessing",
    "params:pretraining",
    "params:run",
]


def pretrain_route(route: Route, namespace: str | None = None) -> Pipeline:
    """source_image_cache + source_manifest -> <namespace>.source_model, with the run's
    parameters ``runs.<namespace>``."""
    tags = [TRAINING_TAG] + ([PRETRAINED_WEIGHTS_TAG] if route.stage1_init == "pretrained" else [])
    stage = node(
        train_on_source,
        ["image_cache", "manifest", *INPUTS],
        "source_model",
        name="train_on_source",
        tags=tags,
    )
    return stage_of_run(stage, namespace or route.name, "source", "pretraining")


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 1 of every route that has one (reads the latest ingested source set)."""
    return sum(
        (pretrain_route(r) for r in ROUTES.values() if r.stage1_init is not None), Pipeline([])
    )
