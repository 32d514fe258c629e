"""Project pipelines: one package per runnable name (Kedro loads only the one requested)."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DEFAULT_PIPELINE = "two_stage"


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline package; ``__default__`` is the two-stage route."""
    pipelines = find_pipelines(raise_errors=True)
    if DEFAULT_PIPELINE in pipelines:
        pipelines["__default__"] = pipelines[DEFAULT_PIPELINE]
    return pipelines
