"""A route's whole pipeline, assembled from the stage templates of the route table."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.evaluation.pipeline import evaluate_route
from plankton_kedro.pipelines.fine_tuning.pipeline import fine_tune_route
from plankton_kedro.pipelines.ingestion.pipeline import create_pipeline as ingest
from plankton_kedro.pipelines.pretraining.pipeline import pretrain_route
from plankton_kedro.pipelines.routes import ROUTES


def build_route(name: str, *, ingestion: bool = True, namespace: str | None = None) -> Pipeline:
    """Ingestion of both sets (optional) + the route's training stages + evaluation on the
    target, in ``namespace`` (default: the route's name); the run's seed and network are its
    parameters ``runs.<namespace>`` (see :mod:`.runs`)."""
    route = ROUTES[name]
    namespace = namespace or name
    stages = [ingest()] if ingestion else []
    if route.stage1_init is not None:
        stages.append(pretrain_route(route, namespace))
    stages += [fine_tune_route(route, namespace), evaluate_route(route, namespace)]
    return sum(stages, Pipeline([]))


def fine_tune_and_evaluate(
    name: str, namespace: str, *, stage1_namespace: str, target_manifest: str
) -> Pipeline:
    """The route's stage 2 and evaluation in ``namespace``, from the stage-1 model of
    ``stage1_namespace`` (shared by several stage-2 runs) and on ``target_manifest`` (e.g. a
    label budget's subset of the target set)."""
    route = ROUTES[name]
    stages = fine_tune_route(route, namespace) + evaluate_route(route, namespace)
    inputs = {"target_manifest": target_manifest}
    if route.stage1_init is not None:
        inputs[f"{namespace}.source_model"] = f"{stage1_namespace}.source_model"
    return Pipeline(stages, inputs=inputs)
