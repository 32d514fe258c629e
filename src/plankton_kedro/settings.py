"""Project settings: configuration loading and the run hooks.

Imported by every ``kedro`` command, ``kedro --help`` included: nothing here (or in what it
imports) may import torch, timm or scikit-learn at module level.
"""

import logging
import warnings

from plankton_kedro.config_loader import PlanktonConfigLoader, PlanktonContext
from plankton_kedro.hooks import PreflightHooks, RunSummaryHooks, TrackingHooks, UserErrorHooks
from plankton_kedro.viz_logging import PREVIEW_LOGGER, UnsavedPreviewSummary

# Kedro 1.7 still calls an OmegaConf API that OmegaConf 2.4 deprecates; the warning is
# about Kedro's code, not the project's, and repeats on every run.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
# The comparison and ensemble nodes read outputs of several route namespaces on purpose.
warnings.filterwarnings("ignore", message=r"One or more dataset names contain '\.' characters")
# kedro-viz 12.5 on FastAPI's newest release: about kedro-viz's code, printed by every viz build
warnings.filterwarnings("ignore", message=r"ORJSONResponse is deprecated")

# `kedro viz build --include-previews`: one line for the datasets not saved yet, not a full
# exception each (Kedro's logging.yml may not name filter classes, hence here)
logging.getLogger(PREVIEW_LOGGER).addFilter(UnsavedPreviewSummary())

# pluggy calls the last registered first: tracking's closing line follows the run summary, and
# a failed run's MLflow record is closed before the error is shortened to one line
HOOKS = (UserErrorHooks(), TrackingHooks(), PreflightHooks(), RunSummaryHooks())

# Parameters gain `runs` (each run's route, seed, network); conf/local applies under any --env;
# unknown --params keys are errors (plankton_kedro.config_loader).
CONTEXT_CLASS = PlanktonContext
CONFIG_LOADER_CLASS = PlanktonConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
