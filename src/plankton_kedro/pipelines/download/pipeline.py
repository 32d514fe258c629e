"""``download``: fetch the files listed in ``downloads.datasets``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import fetch_datasets


def create_pipeline(**kwargs) -> Pipeline:
    """One node; then point source_images/target_images at the downloaded files."""
    return Pipeline(
        [
            node(
                fetch_datasets,
                "params:downloads",
                "download_report",
                name="fetch_datasets",
                tags=["download"],
            )
        ]
    )
