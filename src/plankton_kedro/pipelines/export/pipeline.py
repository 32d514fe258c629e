"""``export``: ``predict_model`` -> ``exported_model`` (ONNX) + ``exported_model_sidecar``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import export_model


def create_pipeline(**kwargs) -> Pipeline:
    """One node: export the model ``predict`` would use, then check ONNX Runtime agrees."""
    return Pipeline(
        [
            node(
                export_model,
                ["predict_model", "params:export"],
                ["exported_model", "exported_model_sidecar"],
                name="export_model",
                tags=["export"],
            )
        ]
    )
