"""``compare``: every route over the seeds in ``compare.seeds``, then a comparison table."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.build_parameters import build_parameter
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingestion
from plankton_kedro.pipelines.routes import ROUTES, build_route, run_namespace

from .nodes import plot_routes, summarise_routes, tabulate_runs

DEFAULT_SEEDS = (42,)


def create_pipeline(**kwargs) -> Pipeline:
    """Ingestion once, each route once per seed (same data and split), then the table."""
    seeds = [int(s) for s in build_parameter("compare.seeds", DEFAULT_SEEDS)]
    runs = [build_route(r, seed=s, ingestion=False) for r in sorted(ROUTES) for s in seeds]
    metrics = [f"{run_namespace(r, s)}.metrics" for r in sorted(ROUTES) for s in seeds]
    table = Pipeline(
        [
            node(tabulate_runs, metrics, "route_comparison", name="tabulate_runs"),
            node(summarise_routes, "route_comparison", "route_summary", name="summarise_routes"),
            node(plot_routes, "route_comparison", "route_comparison_plot", name="plot_routes"),
        ],
        tags=["compare"],
    )
    return sum([ingestion(), *runs, table], Pipeline([]))
