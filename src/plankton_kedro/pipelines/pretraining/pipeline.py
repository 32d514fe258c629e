"""Stage 1 (source set) for every route that has one."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route

from .nodes import train_on_source

PARAMETERS = {p: p for p in ("model", "data", "training", "pretraining")}


def pretrain_route(route: Route) -> Pipeline:
    """source_image_cache + source_manifest -> <route>.source_model."""
    train = update_wrapper(
        partial(train_on_source, route=route.name, backbone_init=route.stage1_init), train_on_source
    )
    tags = [TRAINING_TAG] + ([PRETRAINED_WEIGHTS_TAG] if route.stage1_init == "pretrained" else [])
    template = Pipeline(
        [
            node(
                train,
                [
                    "image_cache",
                    "manifest",
                    "params:model",
                    "params:data",
                    "params:training",
                    "params:pretraining",
                ],
                "source_model",
                name="train_on_source",
                tags=tags,
            )
        ]
    )
    return Pipeline(
        template,
        namespace=route.name,
        inputs={"image_cache": "source_image_cache", "manifest": "source_manifest"},
        parameters=PARAMETERS,
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 1 of every route that has one (reads the latest ingested source set)."""
    return sum(
        (pretrain_route(r) for r in ROUTES.values() if r.stage1_init is not None), Pipeline([])
    )
