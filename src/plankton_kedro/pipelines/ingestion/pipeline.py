"""Ingestion of the source and the target collections (one template, two namespaces)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import build_report, scan_collection, split_records

DATASETS = ("source", "target")
OUTPUTS = ("manifest", "image_cache", "ingestion_report")
SHARED_PARAMETERS = {"data": "data", "ingestion": "ingestion"}


def ingestion_template() -> Pipeline:
    """images -> manifest, image_cache, ingestion_report (un-namespaced template)."""
    return Pipeline(
        [
            node(
                scan_collection,
                ["images", "params:data", "params:ingestion"],
                ["records", "image_cache", "scan_summary"],
                name="scan_collection",
                tags=["ingestion"],
            ),
            node(
                split_records,
                ["records", "params:ingestion"],
                "manifest",
                name="split_records",
                tags=["ingestion"],
            ),
            node(
                build_report,
                ["manifest", "scan_summary", "params:data", "params:ingestion"],
                "ingestion_report",
                name="build_report",
                tags=["ingestion"],
            ),
        ]
    )


def ingest(dataset: str) -> Pipeline:
    """``<dataset>_images`` -> ``<dataset>_manifest``, ``_image_cache``, ``_ingestion_report``."""
    return Pipeline(
        ingestion_template(),
        namespace=dataset,
        inputs={"images": f"{dataset}_images"},
        outputs={name: f"{dataset}_{name}" for name in OUTPUTS},
        parameters=SHARED_PARAMETERS,
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Ingest both the source and the target collections."""
    return sum((ingest(dataset) for dataset in DATASETS), Pipeline([]))
