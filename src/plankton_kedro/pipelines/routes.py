"""The paper's three transfer routes and how each is assembled from the stage pipelines."""

from __future__ import annotations

from dataclasses import dataclass

from kedro.pipeline import Pipeline


@dataclass(frozen=True)
class Route:
    """A transfer route: how stage 1 starts, or ``None`` when there is no stage 1."""

    name: str
    stage1_init: str | None
    summary: str


ROUTES = {
    "in_domain": Route("in_domain", "scratch", "random init -> source plankton set -> target set"),
    "out_of_domain": Route("out_of_domain", None, "model.pretrained (ImageNet) -> target set"),
    "two_stage": Route(
        "two_stage", "pretrained", "model.pretrained (ImageNet) -> source set -> target set"
    ),
}

TRAINING_TAG = "training"
PRETRAINED_WEIGHTS_TAG = "uses_pretrained_weights"


def run_namespace(route: str, seed: int | None = None) -> str:
    """The namespace of a route's run: the route itself, or ``<route>_seed<N>`` for a seed."""
    return route if seed is None else f"{route}_seed{seed}"


def build_route(
    name: str,
    *,
    seed: int | None = None,
    ingestion: bool = True,
    namespace: str | None = None,
    member: dict | None = None,
) -> Pipeline:
    """Ingestion of both sets (optional) + the route's training stages + evaluation on the
    target, in ``namespace`` (default :func:`run_namespace`); ``seed`` overrides
    ``training.seed``; ``member`` (an ensemble member) overrides the network and weights."""
    from plankton_kedro.pipelines.evaluation.pipeline import evaluate_route
    from plankton_kedro.pipelines.fine_tuning.pipeline import fine_tune_route
    from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingest
    from plankton_kedro.pipelines.pretraining.pipeline import pretrain_route

    route = ROUTES[name]
    namespace = namespace or run_namespace(name, seed)
    stages = [ingest()] if ingestion else []
    if route.stage1_init is not None:
        stages.append(pretrain_route(route, namespace, seed, member))
    stages += [fine_tune_route(route, namespace, seed, member), evaluate_route(route, namespace)]
    return sum(stages, Pipeline([]))
