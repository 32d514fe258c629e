"""``ensembling``: each member of ``ensembling.members`` fine-tuned by its own namespaced
copy of its route (the same stage templates), then the val-selected ensemble."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.engine.config import EnsembleMember
from plankton_kedro.pipelines.build_parameters import build_parameter
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingestion
from plankton_kedro.pipelines.routes import build_route

from .nodes import build_ensemble

NAMESPACE_PREFIX = "ensemble_"


def create_pipeline(**kwargs) -> Pipeline:
    """Ingestion once, one route copy per member (namespace ``ensemble_<name>``), selection."""
    members = [EnsembleMember(**m) for m in build_parameter("ensembling.members", [])]
    if not members:
        return Pipeline([])
    copies = [
        build_route(
            m.route,
            seed=m.seed,
            ingestion=False,
            namespace=f"{NAMESPACE_PREFIX}{m.name}",
            member=m.model_dump(),
        )
        for m in members
    ]
    select = node(
        build_ensemble,
        [
            "target_image_cache",
            "target_manifest",
            "params:ensembling",
            "params:evaluation",
            *(f"{NAMESPACE_PREFIX}{m.name}.target_model" for m in members),
        ],
        ["ensemble_model", "ensemble_report"],
        name="build_ensemble",
        tags=["ensembling"],
    )
    return sum([ingestion(), *copies, Pipeline([select])], Pipeline([]))
