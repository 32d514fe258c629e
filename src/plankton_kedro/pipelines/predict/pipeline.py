"""``predict``: ``predict_images`` + ``predict_model`` -> predictions, counts, report."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import predict_images


def create_pipeline(**kwargs) -> Pipeline:
    """One node: stream the images through the chosen model."""
    return Pipeline(
        [
            node(
                predict_images,
                ["predict_images", "predict_model", "params:predict"],
                ["predictions", "prediction_counts", "prediction_report", "prediction_embeddings"],
                name="predict_images",
                tags=["predict"],
            )
        ]
    )
