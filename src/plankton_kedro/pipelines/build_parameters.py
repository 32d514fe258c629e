"""Parameters that shape pipelines, read when the pipelines are built.

Kedro builds pipelines before it loads a run's parameters, so how many copies of a template a
pipeline holds (seeds of the route comparison, members of an ensemble) is read here from the
project's configuration: ``conf/base`` and ``conf/local``, or the environment named by
``KEDRO_ENV``. ``--params`` cannot change it; edit the parameters file instead.
"""

from __future__ import annotations

import os
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from kedro.framework.project import settings


def build_parameter(key: str, default: Any) -> Any:
    """The value of a dotted parameter ``key`` in the project configuration, else ``default``."""
    loader = OmegaConfigLoader(
        conf_source=str(settings.CONF_SOURCE),
        base_env="base",
        default_run_env="local",
        env=os.environ.get("KEDRO_ENV"),
    )
    try:
        value: Any = loader["parameters"]
    except (MissingConfigException, ValueError):
        return default
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value
