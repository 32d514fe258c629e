"""``predict``: ``predict_images`` + ``predict_model`` -> predictions, counts, abundance
estimates per sample, report, and the EcoTaxa import file."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import estimate_abundance, export_to_ecotaxa, predict_images


def create_pipeline(**kwargs) -> Pipeline:
    """Stream the images through the chosen model, then estimate each sample's abundances."""
    return Pipeline(
        [
            node(
                predict_images,
                ["predict_images", "predict_model", "params:predict"],
                [
                    "predictions",
                    "prediction_counts",
                    "prediction_report",
                    "prediction_embeddings",
                    "prediction_probabilities",
                ],
                name="predict_images",
            ),
            node(
                estimate_abundance,
                ["predictions", "prediction_probabilities", "predict_model", "params:predict"],
                ["abundance_estimates", "abundance_plot"],
                name="estimate_abundance",
            ),
            node(
                export_to_ecotaxa,
                ["predictions", "predict_images", "predict_model", "params:predict"],
                "ecotaxa_export",
                name="export_to_ecotaxa",
            ),
        ],
        tags=["predict"],
    )
