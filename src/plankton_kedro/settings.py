"""Project settings: configuration loading and the run hooks."""

from plankton_kedro.hooks import PreflightHooks, RunSummaryHooks

HOOKS = (PreflightHooks(), RunSummaryHooks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
