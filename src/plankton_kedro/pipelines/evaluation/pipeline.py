"""Evaluation of every route on the target set."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import ROUTES, Route

from .nodes import (
    classify_features,
    evaluate_on_target_test,
    extract_features,
    predict_target_splits,
)


def evaluate_route(route: Route, namespace: str | None = None) -> Pipeline:
    """<ns>.target_model + target set -> <ns>.metrics, .calibration, .confusion_matrix,
    .reliability_diagram, .features and .feature_classifiers."""
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
                extract_features,
                ["target_model", "predictions"],
                "features",
                name="extract_features",
            ),
            node(
                classify_features,
                ["features", "metrics", "params:evaluation"],
                "feature_classifiers",
                name="classify_features",
            ),
        ],
        tags=["evaluation"],
    )
    return Pipeline(
        template,
        namespace=namespace or route.name,
        inputs={"image_cache": "target_image_cache", "manifest": "target_manifest"},
        parameters={"evaluation": "evaluation"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate the latest checkpoint of every route."""
    return sum((evaluate_route(r) for r in ROUTES.values()), Pipeline([]))
