"""Ingestion of the source and the target collections (one template, two namespaces).

The target's split also reads the source's manifest: its test images that are identical to
source images are handled there (``ingestion.hygiene.source_overlap``).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import build_report, scan_collection, split_records, split_target_records

DATASETS = ("source", "target")
OUTPUTS = ("manifest", "image_cache", "ingestion_report")
SHARED_PARAMETERS = {"data": "data", "ingestion": "ingestion"}
TAGS = ["ingestion"]


def ingestion_template(dataset: str) -> Pipeline:
    """images -> manifest, image_cache, ingestion_report (un-namespaced template)."""
    if dataset == "target":
        split = node(
            split_target_records,
            ["records", "source_manifest", "params:ingestion"],
            "manifest",
            name="split_records",
            tags=TAGS,
        )
    else:
        split = node(
            split_records,
            ["records", "params:ingestion"],
            "manifest",
            name="split_records",
            tags=TAGS,
        )
    return Pipeline(
        [
            node(
                scan_collection,
                [
                    "images",
                    "params:data",
                    "params:preprocessing",
                    "params:ingestion",
                    "earlier_ingestions",
                ],
                ["records", "image_cache", "scan_summary"],
                name="scan_collection",
                tags=TAGS,
            ),
            split,
            node(
                build_report,
                ["manifest", "scan_summary", "params:data", "params:ingestion"],
                "ingestion_report",
                name="build_report",
                tags=TAGS,
            ),
        ]
    )


def ingest(dataset: str) -> Pipeline:
    """``<dataset>_images`` -> ``<dataset>_manifest``, ``_image_cache``, ``_ingestion_report``,
    with the collection's own ``preprocessing.<dataset>`` settings."""
    return Pipeline(
        ingestion_template(dataset),
        namespace=dataset,
        inputs={"images": f"{dataset}_images"}
        | ({"source_manifest": "source_manifest"} if dataset == "target" else {}),
        outputs={name: f"{dataset}_{name}" for name in OUTPUTS},
        parameters={**SHARED_PARAMETERS, "preprocessing": f"preprocessing.{dataset}"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Ingest both the source and the target collections."""
    return sum((ingest(dataset) for dataset in DATASETS), Pipeline([]))
