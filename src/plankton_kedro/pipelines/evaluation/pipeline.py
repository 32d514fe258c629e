"""Evaluation of every route on the target test split."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.routes import ROUTES, Route

from .nodes import evaluate_on_target_test


def evaluate_route(route: Route, namespace: str | None = None) -> Pipeline:
    """<route>.target_model + target set -> <route>.metrics, <route>.confusion_matrix."""
    template = Pipeline(
        [
            node(
                evaluate_on_target_test,
                ["target_model", "image_cache", "manifest"],
                ["metrics", "confusion_matrix"],
                name="evaluate_on_target_test",
                tags=["evaluation"],
            )
        ]
    )
    return Pipeline(
        template,
        namespace=namespace or route.name,
        inputs={"image_cache": "target_image_cache", "manifest": "target_manifest"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate the latest checkpoint of every route."""
    return sum((evaluate_route(r) for r in ROUTES.values()), Pipeline([]))
