"""Project settings: configuration loading and the run hooks.

Imported by every ``kedro`` command, ``kedro --help`` included: nothing here (or in what it
imports) may import torch, timm or scikit-learn at module level.
"""

import warnings

from plankton_kedro.hooks import PreflightHooks, RunSummaryHooks, UserErrorHooks
from plankton_kedro.pipelines.runs import RunsConfigLoader

# Kedro 1.7 still calls an OmegaConf API that OmegaConf 2.4 deprecates; the warning is
# about Kedro's code, not the project's, and repeats on every run.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
# The comparison and ensemble nodes read outputs of several route namespaces on purpose.
warnings.filterwarnings("ignore", message=r"One or more dataset names contain '\.' characters")

HOOKS = (PreflightHooks(), UserErrorHooks(), RunSummaryHooks())

# The parameters gain `runs`: each run's route, seed and network (plankton_kedro.pipelines.runs).
CONFIG_LOADER_CLASS = RunsConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
