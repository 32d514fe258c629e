"""Every run of a route template, by namespace, and the parameters that make it differ.

The three route pipelines each run their route once (namespace = the route). ``compare`` runs
every route once per seed of ``compare.seeds`` (``<route>_seed<N>``) and label budget of
``compare.labels_per_class`` (``<route>_seed<N>_n<K>``), ``ensembling`` once per
member of ``ensembling.members`` (``ensemble_<name>``). Each run reads its own parameters,
``runs.<namespace>`` (a :class:`~plankton_kedro.engine.config.RunParams`: route, seed, network),
which the project's config loader (:mod:`plankton_kedro.config_loader`) derives from those
settings, so that a run's seed and network are parameters that kedro-viz shows, not values
hidden in a node's code.

The seeds, budgets and members shape the pipelines, so both the pipelines and the ``runs``
parameters read them from the project's configuration files
(:func:`~.build_parameters.build_parameter`); ``--params`` cannot change them.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline, node

from plankton_kedro.engine.config import EnsembleMember

from .build_parameters import build_parameter
from .routes import ROUTES
from .training_nodes import plot_learning_curves

RUNS_KEY = "runs"
SHARED_SETTINGS = ("model", "data", "training")
ENSEMBLE_PREFIX = "ensemble_"
DEFAULT_SEEDS = (42,)


def run_namespace(route: str, seed: int | None = None, labels_per_class: int | None = None) -> str:
    """The namespace of a route's run: the route itself, ``<route>_seed<N>`` for a seed, and
    ``<route>_seed<N>_n<K>`` for a label budget of K images per class (stage 1 stays
    ``<route>_seed<N>``: it does not depend on the target's labels)."""
    name = route if seed is None else f"{route}_seed{seed}"
    return name if labels_per_class is None else f"{name}_n{labels_per_class}"


def compare_seeds() -> list[int]:
    """The seeds ``compare`` trains every route with."""
    return [int(seed) for seed in build_parameter("compare.seeds", DEFAULT_SEEDS)]


def compare_budgets() -> list[int | None]:
    """The labelled train images per class ``compare`` fine-tunes with (None: all)."""
    budgets = build_parameter("compare.labels_per_class", None) or [None]
    return [None if budget is None else int(budget) for budget in budgets]


def compare_ensembles() -> bool:
    """Whether ``compare`` ensembles the routes of each seed and budget."""
    return bool(build_parameter("compare.ensemble", False))


def ensemble_members() -> list[dict[str, Any]]:
    """The members ``ensembling`` fine-tunes, as configured (validated when a run starts)."""
    members = list(build_parameter("ensembling.members", []))
    unnamed = [m for m in members if not isinstance(m, dict) or "name" not in m]
    if unnamed:
        raise ValueError(f"ensembling.members: every member needs a name; got {unnamed}")
    default_route = EnsembleMember.model_fields["route"].default
    return [{"route": default_route, **member} for member in members]


def all_runs() -> dict[str, dict[str, Any]]:
    """``{namespace: run parameters}`` of every run any pipeline of the project holds."""
    runs = {name: {"name": name, "route": name} for name in ROUTES}
    for seed in compare_seeds():
        for route in sorted(ROUTES):
            for budget in dict.fromkeys([None, *compare_budgets()]):
                name = run_namespace(route, seed, budget)
                runs[name] = {"name": name, "route": route, "seed": seed}
                if budget is not None:
                    runs[name]["labels_per_class"] = budget
    for member in ensemble_members():
        name = f"{ENSEMBLE_PREFIX}{member['name']}"
        runs[name] = {
            "name": name,
            "route": member["route"],
            "seed": member.get("seed"),
            "model": member.get("model"),
            "pretrained": member.get("pretrained"),
        }
    return runs


def stage_of_run(stage: Node, namespace: str, dataset: str, stage_key: str) -> Pipeline:
    """``stage`` and a plot of its learning curves (``<dataset>_learning_curves``) in
    ``namespace``, reading ``<dataset>_image_cache`` and ``<dataset>_manifest``,
    the shared settings, the collection's ``preprocessing.<dataset>``, the stage's own section
    (``pretraining``/``fine_tuning``) and the run's parameters ``runs.<namespace>`` as
    ``params:run``."""
    model = stage.outputs[0]
    curves = node(
        plot_learning_curves,
        model,
        f"{dataset}_learning_curves",
        name=f"plot_{dataset}_learning_curves",
    )
    return Pipeline(
        [stage, curves],
        namespace=namespace,
        inputs={"image_cache": f"{dataset}_image_cache", "manifest": f"{dataset}_manifest"},
        parameters={
            **{p: p for p in (*SHARED_SETTINGS, stage_key)},
            "preprocessing": f"preprocessing.{dataset}",
            "run": f"{RUNS_KEY}.{namespace}",
        },
    )
