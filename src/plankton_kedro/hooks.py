"""Run hooks: fail fast on unavailable weights, and summarise what a run produced."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from plankton_kedro.engine.model import check_imagenet_weights
from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG

logger = logging.getLogger(__name__)


class PreflightHooks:
    """Checks that need the whole run's settings, done before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """With ``model.pretrained=imagenet``, get the weights now rather than after ingestion:
        offline, the run stops at once with a message naming the local-file option."""
        if not any(PRETRAINED_WEIGHTS_TAG in n.tags for n in pipeline.nodes):
            return
        model = catalog.load("params:model")
        if model.pretrained == "imagenet":
            tag = check_imagenet_weights(model.name)
            logger.info("ImageNet weights for %s available: %s", model.name, tag)


class RunSummaryHooks:
    """Collects each route's headline metrics and prints them when the run ends."""

    def __init__(self) -> None:
        self._results: list[tuple[str, dict[str, Any]]] = []

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._results = []

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        for name, value in outputs.items():
            if name.endswith(".metrics") and isinstance(value, dict) and "accuracy" in value:
                self._results.append((name, value))

    @hook_impl
    def after_pipeline_run(self) -> None:
        if not self._results:
            return
        lines = ["Run summary (target test split, best checkpoint):"]
        for name, m in self._results:
            lines.append(
                f"  {m.get('run') or m.get('route') or name}: accuracy {m['accuracy']:.4f} · "
                f"f1_macro {m['f1_macro']:.4f} · n_test {m['n_test']} · {m['model_name']} on "
                f"{m['dataset']} -> data/08_reporting/{name.rsplit('.', 1)[0]}/"
            )
        logger.info("\n".join(lines))
