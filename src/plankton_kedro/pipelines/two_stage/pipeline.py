"""The two_stage route: ingestion, its training stages and evaluation."""

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.assembly import build_route


def create_pipeline(**kwargs) -> Pipeline:
    """See ``plankton_kedro.pipelines.routes.ROUTES["two_stage"]``."""
    return build_route("two_stage")
