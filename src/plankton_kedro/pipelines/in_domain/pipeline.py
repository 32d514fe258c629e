"""The in_domain route: ingestion, its training stages and evaluation."""

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.assembly import build_route


def create_pipeline(**kwargs) -> Pipeline:
    """See ``plankton_kedro.pipelines.routes.ROUTES["in_domain"]``."""
    return build_route("in_domain")
