"""``ensembling``: each member of ``ensembling.members`` fine-tuned by its own namespaced
copy of its route (the same stage templates), then the val-selected ensemble."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.assembly import build_route
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingestion
from plankton_kedro.pipelines.runs import ENSEMBLE_PREFIX, ensemble_members

from .nodes import build_ensemble


def create_pipeline(**kwargs) -> Pipeline:
    """Ingestion once, one route copy per member (namespace ``ensemble_<name>``, parameters
    ``runs.ensemble_<name>``), then the selection."""
    members = ensemble_members()
    if not members:
        return Pipeline([])
    namespaces = [f"{ENSEMBLE_PREFIX}{m['name']}" for m in members]
    copies = [
        build_route(m["route"], ingestion=False, namespace=namespace)
        for m, namespace in zip(members, namespaces, strict=True)
    ]
    select = node(
        build_ensemble,
        [
            "target_image_cache",
            "target_manifest",
            "params:ensembling",
            "params:evaluation",
            *(f"{namespace}.target_model" for namespace in namespaces),
        ],
        ["ensemble_model", "ensemble_report"],
        name="build_ensemble",
        tags=["ensembling"],
    )
    return sum([ingestion(), *copies, Pipeline([select])], Pipeline([]))
