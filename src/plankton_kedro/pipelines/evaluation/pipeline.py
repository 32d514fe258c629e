"""Evaluation of every route on the target set."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG, ROUTES, Route
from plankton_kedro.pipelines.runs import RUNS_KEY

from .nodes import (
    classify_features,
    evaluate_on_target_test,
    extract_features,
    extract_pretrained_probe_features,
    extract_stage1_probe_features,
    predict_target_splits,
    write_model_card,
)


def probe_features_node(route: Route):
    """The paper's probe input: features of what the route fine-tunes from, frozen."""
    if route.stage1_init is None:
        return node(
            extract_pretrained_probe_features,
            ["image_cache", "manifest", "params:model", "params:data", "params:run",
             "params:evaluation"],
            "pretrained_features",
            name="extract_pretrained_probe_features",
            tags=[PRETRAINED_WEIGHTS_TAG],
        )  # fmt: skip
    return node(
        extract_stage1_probe_features,
        ["source_model", "image_cache", "manifest", "params:evaluation"],
        "pretrained_features",
        name="extract_stage1_probe_features",
    )


def evaluate_route(route: Route, namespace: str | None = None) -> Pipeline:
    """<ns>.target_model (+ <ns>.source_model) + target set -> <ns>.metrics, .calibration,
    .confusion_matrix, .reliability_diagram, .model_card, .features, .pretrained_features and
    .feature_classifiers."""
    namespace = namespace or route.name
    template = Pipeline(
        [
            node(
                predict_target_splits,
                ["target_model", "image_cache", "manifest", "params:evaluation"],
                "predictions",
                name="predict_target_splits",
            ),
            node(
                evaluate_on_target_test,
                ["target_model", "manifest", "predictions", "params:evaluation"],
                ["metrics", "calibration", "confusion_matrix", "reliability_diagram"],
                name="evaluate_on_target_test",
            ),
            node(
                write_model_card,
                ["target_model", "manifest", "metrics", "calibration"],
                "model_card",
                name="write_model_card",
            ),
            node(
                extract_features,
                ["target_model", "predictions"],
                "features",
                name="extract_features",
            ),
            probe_features_node(route),
            node(
                classify_features,
                ["pretrained_features", "features", "metrics", "params:evaluation"],
                "feature_classifiers",
                name="classify_features",
            ),
        ],
        tags=["evaluation"],
    )
    return Pipeline(
        template,
        namespace=namespace,
        inputs={"image_cache": "target_image_cache", "manifest": "target_manifest"},
        parameters={
            name: value
            for name, value in {
                "evaluation": "evaluation",
                "model": "model",
                "data": "data",
                "run": f"{RUNS_KEY}.{namespace}",
            }.items()
            if f"params:{name}" in template.inputs()
        },
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate the latest checkpoint of every route."""
    return sum((evaluate_route(r) for r in ROUTES.values()), Pipeline([]))
