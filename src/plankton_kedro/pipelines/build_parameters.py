"""Parameters that shape pipelines, read when the pipelines are built.

Kedro builds pipelines before it loads a run's parameters, so how many copies of a template a
pipeline holds (seeds and label budgets of the route comparison, members of an ensemble) is
read here from the project's configuration, with the rules of the run's own parameters:
``conf/base``, then the run's environment (``--env`` or ``KEDRO_ENV``), then ``conf/local``.
``--params`` cannot change it; edit a parameters file instead.
"""

from __future__ import annotations

import os
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from kedro.framework.project import settings

from plankton_kedro.engine.config import deep_merge

BASE_ENV, LOCAL_ENV = "base", "local"
_run_environment: str | None = None


def use_run_environment(env: str | None) -> None:
    """Read the pipeline-shaping parameters from ``env`` (the run's ``--env``). The project's
    config loader calls this when Kedro creates it, which is before Kedro builds pipelines."""
    global _run_environment
    _run_environment = env or None


def build_parameter(key: str, default: Any) -> Any:
    """The value of a dotted parameter ``key`` in the project configuration, else ``default``."""
    env = _run_environment or os.environ.get("KEDRO_ENV") or LOCAL_ENV
    value: Any = _parameters(BASE_ENV, env)
    if env != LOCAL_ENV:  # conf/local applies under any environment (config_loader.py)
        value = deep_merge(value, _parameters(LOCAL_ENV, LOCAL_ENV))
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _parameters(base_env: str, env: str) -> dict[str, Any]:
    """``base_env``'s parameters with ``env``'s merged key by key (unreadable: none)."""
    loader = OmegaConfigLoader(
        conf_source=str(settings.CONF_SOURCE),
        base_env=base_env,
        default_run_env=env,
        env=env,
        merge_strategy={"parameters": "soft"},
    )
    try:
        return dict(loader["parameters"])
    except (MissingConfigException, ValueError):
        return {}
