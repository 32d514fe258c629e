"""``compare``: every route over the seeds in ``compare.seeds`` and the label budgets in
``compare.labels_per_class``, optionally the routes' ensemble, then the comparison table,
and the label-budget curve when there are budgets."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from plankton_kedro.pipelines.assembly import build_route, fine_tune_and_evaluate
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingestion
from plankton_kedro.pipelines.pretraining.pipeline import pretrain_route
from plankton_kedro.pipelines.routes import ROUTES
from plankton_kedro.pipelines.runs import (
    RUNS_KEY,
    compare_budgets,
    compare_ensembles,
    compare_seeds,
    run_namespace,
)

from .nodes import (
    comparison_row,
    ensemble_routes,
    plot_label_budgets,
    plot_routes,
    select_label_budget,
    summarise_label_budgets,
    summarise_routes,
    tabulate_runs,
)

TAGS = ["compare"]


def create_pipeline(**kwargs) -> Pipeline:
    """Ingestion once; per route and seed, stage 1 once and stage 2 + evaluation once per
    label budget (same data, split, validation and test); per seed and budget the routes'
    ensemble (``compare.ensemble``); then the table, the summary and the plots."""
    budgets = compare_budgets()
    parts, rows = [ingestion()], []
    for seed in compare_seeds():
        for route in sorted(ROUTES):
            if ROUTES[route].stage1_init is not None and None not in budgets:
                parts.append(pretrain_route(ROUTES[route], run_namespace(route, seed)))
        for budget in budgets:
            parts.append(_runs_of(seed, budget))
            rows += [f"{run_namespace(r, seed, budget)}.comparison_row" for r in sorted(ROUTES)]
            if compare_ensembles():
                parts.append(_ensemble_of(seed, budget))
                rows.append(f"compare.{run_namespace('ensemble', seed, budget)}")
    summaries = [
        node(tabulate_runs, rows, "route_comparison", name="tabulate_runs"),
        node(summarise_routes, "route_comparison", "route_summary", name="summarise_routes"),
        node(plot_routes, "route_comparison", "route_comparison_plot", name="plot_routes"),
    ]
    if budgets != [None]:
        summaries += [
            node(summarise_label_budgets, "route_comparison", "label_budget",
                 name="summarise_label_budgets"),
            node(plot_label_budgets, "route_comparison", "label_budget_plot",
                 name="plot_label_budgets"),
        ]  # fmt: skip
    return sum([*parts, Pipeline(summaries, tags=TAGS)], Pipeline([]))


def _runs_of(seed: int, budget: int | None) -> Pipeline:
    """Every route's stage 2 and evaluation for one seed and budget, each with its row."""
    runs = []
    for route in sorted(ROUTES):
        namespace = run_namespace(route, seed, budget)
        if budget is None:  # every label: the route's whole run, stage 1 included
            run = build_route(route, ingestion=False, namespace=namespace)
        else:
            run = fine_tune_and_evaluate(
                route,
                namespace,
                stage1_namespace=run_namespace(route, seed),
                target_manifest=f"{namespace}.labelled_subset",
            ) + Pipeline(
                [
                    node(
                        select_label_budget,
                        ["target_manifest", "params:run"],
                        "labelled_subset",
                        name="select_label_budget",
                    )
                ],
                namespace=namespace,
                inputs={"target_manifest"},
                parameters={"run": f"{RUNS_KEY}.{namespace}"},
                tags=TAGS,
            )
        row = node(
            comparison_row,
            [f"{namespace}.metrics", f"{namespace}.feature_classifiers"],
            f"{namespace}.comparison_row",
            name=f"{namespace}.comparison_row",
            tags=TAGS,
        )
        runs += [run, Pipeline([row])]
    return sum(runs, Pipeline([]))


def _ensemble_of(seed: int, budget: int | None) -> Pipeline:
    """The routes' models of one seed and budget, ensembled on validation."""
    name = run_namespace("ensemble", seed, budget)
    manifest = (
        "target_manifest"
        if budget is None
        else f"{run_namespace(sorted(ROUTES)[0], seed, budget)}.labelled_subset"
    )
    return Pipeline(
        [
            node(
                ensemble_routes,
                [
                    "target_image_cache",
                    manifest,
                    "params:ensembling",
                    *(f"{run_namespace(r, seed, budget)}.target_model" for r in sorted(ROUTES)),
                ],
                f"compare.{name}",
                name=f"compare.{name}",
            )
        ],
        tags=TAGS,
    )
