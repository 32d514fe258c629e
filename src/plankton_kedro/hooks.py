"""Run hooks: fail fast on unavailable weights, one line for a user's error, a run summary,
MLflow tracking.

Imported by every ``kedro`` command (through ``settings.py``), so nothing heavy at module
level: the weights check imports timm only when a run needs ImageNet weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click
from kedro.framework.hooks import hook_impl

from plankton_kedro.engine.atomic import remove_orphaned_temporaries
from plankton_kedro.engine.errors import PlanktonUserError, one_line
from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG
from plankton_kedro.run_summary import SavedOutput, light, summary_lines
from plankton_kedro.tracking import MlflowRun, TrackingParams

logger = logging.getLogger(__name__)

SUMMARY_METADATA_KEY = "run_summary"  # catalog metadata: what an output is, for the summary


class PreflightHooks:
    """Checks that need the whole run's settings, done before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Remove what killed runs left in ``data/``; with ``model.pretrained=imagenet``, get
        the weights now rather than after ingestion: offline, the run stops at once with a
        message naming the local-file option."""
        data = Path(run_params.get("project_path") or Path.cwd()) / "data"
        if data.is_dir():
            removed = remove_orphaned_temporaries(data)
            if removed:
                logger.info(
                    "removed %d half-written file(s) that interrupted runs left in data/ (%s)",
                    len(removed),
                    ", ".join(removed[:3]),
                )
        if not any(PRETRAINED_WEIGHTS_TAG in n.tags for n in pipeline.nodes):
            return
        model = catalog.load("params:model")
        if model.pretrained == "imagenet":
            from plankton_kedro.engine.modelling.weights import check_imagenet_weights

            try:
                tag = check_imagenet_weights(model.name)
            except PlanktonUserError as exc:  # a message for the user, not a traceback
                raise click.ClickException(str(exc)) from None
            logger.info("ImageNet weights for %s available: %s", model.name, tag)


TRACEBACK_ENV = "PLANKTON_KEDRO_TRACEBACK"  # set to 1: full tracebacks for user errors too


class UserErrorHooks:
    """A run failing on bad input or settings (wrong image size, no network, a resume that
    does not match, a missing or unreadable file) ends with one line, ``Error: <node or
    dataset>: <what is wrong>``, and exit code 1, not a traceback through Kedro's runner.
    ``PLANKTON_KEDRO_TRACEBACK=1`` keeps the tracebacks. Registered first, so it runs after
    the other hooks' ``on_pipeline_error`` (tracking closes its run first)."""

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        if isinstance(error, PlanktonUserError) and not _tracebacks_wanted():
            raise click.ClickException(f"{node.name}: {error}") from None

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """A dataset that cannot be loaded or saved (Kedro's ``DatasetError``: "<dataset>:
        <reason>"), or one of our errors raised outside a node."""
        if isinstance(error, click.ClickException) or _tracebacks_wanted():
            return
        from kedro.io import DatasetError

        if isinstance(error, DatasetError | PlanktonUserError):
            raise click.ClickException(one_line(error)) from None


def _tracebacks_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").lower() not in ("", "0", "false", "no")


class RunSummaryHooks:
    """Remembers what a run saved and ends every ``kedro run`` with a concise summary: what
    was ingested, trained and evaluated, the headline metrics and where the files are."""

    def __init__(self) -> None:
        self._saved: list[SavedOutput] = []
        self._catalog = None

    @hook_impl
    def before_pipeline_run(self, catalog) -> None:
        self._saved, self._catalog = [], catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        config = self._config(dataset_name)
        role = (config.get("metadata") or {}).get(SUMMARY_METADATA_KEY)
        self._saved.append(SavedOutput(dataset_name, light(data), config.get("filepath"), role))

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        try:
            lines = summary_lines(
                pipelines=run_params.get("pipeline_names") or ["__default__"],
                version=run_params.get("run_id", ""),
                saved=self._saved,
                project=Path(run_params.get("project_path") or Path.cwd()),
            )
        except Exception as exc:  # noqa: BLE001 - a summary must never fail a finished run
            logger.warning(
                "no run summary (%s: %s); the outputs are saved", type(exc).__name__, exc
            )
            return
        logger.info("\n".join(lines))

    def _config(self, dataset_name: str) -> dict[str, Any]:
        return _catalog_config(self._catalog, dataset_name)


class TrackingHooks:
    """One MLflow run per ``kedro run`` (``tracking`` parameters; on by default, a SQLite
    store in the project): parameters, catalog versions, per-stage learning curves, test
    metrics, figures. Registered first, so its closing line comes after the run summary."""

    def __init__(self) -> None:
        self._run: MlflowRun | None = None
        self._catalog = None
        self._version = ""
        self._project = Path.cwd()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], catalog) -> None:
        self._run, self._catalog = None, catalog
        parameters = catalog.load("parameters")
        settings = TrackingParams(**(parameters.get("tracking") or {}))
        if not settings.enabled:
            return
        project = Path(run_params.get("project_path") or Path.cwd())
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        self._project = project.resolve()
        self._version = run_params.get("run_id") or ""
        try:
            run = MlflowRun(settings, project)
            run.start(
                run_name="+".join(pipelines),
                tags={
                    "kedro.pipelines": ",".join(pipelines),
                    "kedro.env": str(run_params.get("env") or "local"),
                    "kedro.save_version": self._version,
                    "kedro.session_id": str(run_params.get("session_id") or ""),
                },
                parameters=parameters,
            )
        except PlanktonUserError as exc:
            raise click.ClickException(str(exc)) from None
        self._run = run
        logger.info("MLflow run %s started (%s)", run.run_id, run.uri)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if self._run is None:
            return
        filepath = _catalog_config(self._catalog, dataset_name).get("filepath")
        if filepath and Path(filepath).is_relative_to(self._project):
            filepath = Path(filepath).relative_to(self._project).as_posix()
        try:
            self._run.saved(dataset_name, data, filepath, self._version)
        except Exception as exc:  # noqa: BLE001 - tracking must not fail the training
            logger.warning("MLflow: %s not logged (%s: %s)", dataset_name, type(exc).__name__, exc)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._finish("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._finish("FAILED")

    def _finish(self, status: str) -> None:
        if self._run is None:
            return
        run, self._run = self._run, None
        try:
            run.end(status)
        except Exception as exc:  # noqa: BLE001 - the run's outputs are saved either way
            logger.warning("MLflow run %s not closed (%s)", run.run_id, exc)
            return
        logger.info(
            "MLflow run %s (%s) in experiment %s; browse: %s",
            run.run_id,
            status.lower(),
            run.experiment_id,
            run.ui_command(),
        )


def _catalog_config(catalog, dataset_name: str) -> dict[str, Any]:
    """The catalog configuration of a saved entry (empty for undeclared in-memory ones)."""
    try:
        return catalog.config_resolver.resolve_pattern(dataset_name) or {}
    except Exception:  # noqa: BLE001 - only used to describe an output
        return {}
