"""The out_of_domain route: ingestion, its training stages and evaluation."""

from kedro.pipeline import Pipeline

from plankton_kedro.pipelines.assembly import build_route


def create_pipeline(**kwargs) -> Pipeline:
    """See ``plankton_kedro.pipelines.routes.ROUTES["out_of_domain"]``."""
    return build_route("out_of_domain")
