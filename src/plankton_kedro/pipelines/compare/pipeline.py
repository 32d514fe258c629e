"""``compare``: every route over the seeds in ``compare.seeds``, then a comparison table."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.assembly import build_route
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingestion
from plankton_kedro.pipelines.routes import ROUTES
from plankton_kedro.pipelines.runs import compare_seeds, run_namespace

from .nodes import plot_routes, summarise_routes, tabulate_runs


def create_pipeline(**kwargs) -> Pipeline:
    """Ingestion once, each route once per seed (same data and split), then the table."""
    namespaces = [run_namespace(r, s) for r in sorted(ROUTES) for s in compare_seeds()]
    runs = [
        build_route(r, ingestion=False, namespace=run_namespace(r, s))
        for r in sorted(ROUTES)
        for s in compare_seeds()
    ]
    table = Pipeline(
        [
            node(
                tabulate_runs,
                [f"{ns}.metrics" for ns in namespaces],
                "route_comparison",
                name="tabulate_runs",
            ),
            node(summarise_routes, "route_comparison", "route_summary", name="summarise_routes"),
            node(plot_routes, "route_comparison", "route_comparison_plot", name="plot_routes"),
        ],
        tags=["compare"],
    )
    return sum([ingestion(), *runs, table], Pipeline([]))
