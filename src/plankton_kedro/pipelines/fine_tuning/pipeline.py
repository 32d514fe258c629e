"""Stage 2 (target set) for every route."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, TRAINING_TAG, Route

from .nodes import fine_tune_from_pretrained, fine_tune_from_source_model

PARAMETERS = {p: p for p in ("model", "data", "training", "fine_tuning")}
SETTINGS = ["params:model", "params:data", "params:training", "params:fine_tuning"]


def fine_tune_route(route: Route) -> Pipeline:
    """target_image_cache + target_manifest (+ <route>.source_model) -> <route>.target_model."""
    if route.stage1_init is None:
        func, model_inputs, tags = fine_tune_from_pretrained, [], [PRETRAINED_WEIGHTS_TAG]
    else:
        func, model_inputs, tags = fine_tune_from_source_model, ["source_model"], []
    template = Pipeline(
        [
            node(
                update_wrapper(partial(func, route=route.name), func),
                ["image_cache", "manifest", *model_inputs, *SETTINGS],
                "target_model",
                name="fine_tune_on_target",
                tags=[TRAINING_TAG, *tags],
            )
        ]
    )
    return Pipeline(
        template,
        namespace=route.name,
        inputs={"image_cache": "target_image_cache", "manifest": "target_manifest"},
        parameters=PARAMETERS,
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Stage 2 of every route (reads the latest target set and stage-1 checkpoints)."""
    return sum((fine_tune_route(r) for r in ROUTES.values()), Pipeline([]))
