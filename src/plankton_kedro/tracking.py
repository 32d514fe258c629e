"""MLflow run tracking: one MLflow run per ``kedro run``, a nested run per trained stage.

A plain-MLflow Kedro hook (not kedro-mlflow: its entry-point hook and CLI plugin import MLflow
in every ``kedro`` command, ``kedro --help`` included, about 2.7 s on a 2-core machine; this
module imports MLflow only when a tracked run starts).

The parent run gets the flattened parameters, the pipelines, the Kedro session and every
saved catalog entry's file and version as tags, each route's final test metrics, and the
figures and JSON reports as artefacts. Each trained stage (a saved
:class:`~plankton_kedro.engine.checkpoint.Checkpoint`) becomes a nested run with the per-epoch
train loss, validation score and learning rate as metric steps and the runtime it was trained
with. The default store is a SQLite file in the project: no server needed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.errors import PlanktonUserError

logger = logging.getLogger(__name__)

LOCAL_STORE = "mlruns"  # folder in the project: mlflow.db and the artefacts
PARAM_VALUE_LIMIT = 6000  # MLflow's limit on a parameter value's length
BATCH = 100  # parameters per MLflow log_batch call (MLflow's limit)
EPOCH_METRICS = ("train_loss", "lr_backbone", "images_per_second")
MAX_TABLE_ROWS = 10_000  # CSV outputs up to this size are copied into the run
REPORT_SETTINGS = {"seed", "best_epoch", "image_size"}  # numbers in a report that are settings


class TrackingParams(BaseModel):
    """``tracking`` parameters: on/off, where the runs go, which experiment."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    tracking_uri: str | None = None  # None: sqlite store in <project>/mlruns
    experiment: str = "plankton-kedro"


class TrackingError(PlanktonUserError):
    """The tracking store cannot be reached or used."""


def local_store_uri(project: Path) -> str:
    """The project's own store: ``sqlite:///<project>/mlruns/mlflow.db``."""
    return f"sqlite:///{(project / LOCAL_STORE / 'mlflow.db').resolve()}"


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted.key, text)`` for each leaf of nested parameters; lists stay one JSON value."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}{key}.")
    else:
        text = tree if isinstance(tree, str) else json.dumps(tree, default=str)
        yield prefix.rstrip("."), text[:PARAM_VALUE_LIMIT]


class MlflowRun:
    """A tracked ``kedro run``: the parent MLflow run and what is logged into it."""

    def __init__(self, settings: TrackingParams, project: Path):
        # a remote store that does not answer should fail in seconds, not after MLflow's
        # default retries (minutes); a user's own setting wins
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # MLflow 3 sends usage telemetry unless told not to: nothing leaves the machine unless
        # the user asks (MLFLOW_DISABLE_TELEMETRY=false opts in)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store set-up lines
        self.uri = settings.tracking_uri or local_store_uri(project)
        if settings.tracking_uri is None:
            (project / LOCAL_STORE).mkdir(exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self._lock = threading.Lock()
        try:
            local = settings.tracking_uri is None
            self.experiment_id = self._experiment(settings.experiment, project, local=local)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the store
            raise TrackingError(
                f"MLflow tracking store {self.uri} cannot be used ({_first_line(exc)}); "
                "start the server or fix tracking.tracking_uri, or run without tracking: "
                "--params tracking.enabled=false"
            ) from None
        self.run_id: str | None = None

    def _experiment(self, name: str, project: Path, *, local: bool) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (project / LOCAL_STORE / "artifacts").resolve().as_uri() if local else None
        return self.client.create_experiment(name, artifact_location=location)

    def start(self, run_name: str, tags: dict[str, str], parameters: dict[str, Any]) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(key, value) for key, value in flatten(parameters)]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + BATCH])

    def saved(self, name: str, data: Any, filepath: str | None, version: str) -> None:
        """Log one saved catalog entry: its file and version, and what it holds."""
        from matplotlib.figure import Figure

        with self._lock:
            if filepath:
                self.client.set_tag(self.run_id, f"catalog.{name}", f"{filepath} @ {version}")
            if isinstance(data, Checkpoint):
                self._stage(name, data, filepath, version)
            elif isinstance(data, Figure):
                self.client.log_figure(self.run_id, data, f"figures/{name}.png")
            elif isinstance(data, dict) and filepath and filepath.endswith(".json"):
                self.client.log_dict(self.run_id, data, f"reports/{name}.json")
                self._test_metrics(name, data)
            elif isinstance(data, str) and filepath and filepath.endswith(".md"):  # model card
                self.client.log_text(self.run_id, data, f"reports/{name}.md")
            elif _small_table(data) and filepath and filepath.endswith(".csv"):
                self.client.log_text(self.run_id, data.to_csv(index=False), f"reports/{name}.csv")

    def _test_metrics(self, name: str, report: dict[str, Any]) -> None:
        """A route's final test metrics (an evaluation report: accuracy and n_test), with
        its calibration and open-set figures; settings in the report are not metrics."""
        if not {"accuracy", "n_test"} <= set(report):
            return
        from mlflow.entities import Metric

        prefix = name.rsplit(".", 1)[0] if "." in name else "target"
        scores = {k: v for k, v in report.items() if k not in REPORT_SETTINGS}
        scores.update(_numeric_leaves(report.get("calibration"), "calibration."))
        open_set = report.get("open_set") or {}
        scores.update(_numeric_leaves(open_set, "open_set."))  # per-class entries skipped
        per_class_test = (open_set.get("per_class") or {}).get("test")
        scores.update(_numeric_leaves(per_class_test, "open_set.per_class."))
        shift = (report.get("quantification") or {}).get("simulated_shift_on_test") or {}
        scores.update(_numeric_leaves(shift.get("mean_absolute_error"), "shift_error."))
        metrics = [
            Metric(f"{prefix}/test_{key}", float(value), _now_ms(), 0)
            for key, value in scores.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def _stage(self, name: str, checkpoint: Checkpoint, filepath: str | None, version: str) -> None:
        """A nested run per trained stage: the learning curve as metric steps."""
        from mlflow.entities import Metric, Param

        identity, history = checkpoint.identity, checkpoint.history
        label = f"{identity.run or identity.route}/{identity.stage}"
        run = self.client.create_run(
            self.experiment_id,
            run_name=label,
            tags={
                "mlflow.parentRunId": self.run_id,
                "checkpoint": f"{filepath} @ {version}" if filepath else name,
                "route": str(identity.route),
                "stage": str(identity.stage),
                "dataset": str(identity.dataset),
                # the outside weights it descends from (package, version and SHA-256 for
                # packaged ImageNet weights), through every stage
                "pretrained_weights": str(history.pretrained_weights or "none"),
            },
        )
        child = run.info.run_id
        score_key = f"val_{history.selection_metric}"
        metrics = [
            Metric(key, float(entry[key]), _now_ms(), int(entry["epoch"]))
            for entry in history.epochs
            for key in (*EPOCH_METRICS, score_key)
            if entry.get(key) is not None
        ]
        if history.best_score is not None:
            metrics.append(Metric(f"best_{score_key}", float(history.best_score), _now_ms(), 0))
        described = {"model": checkpoint.model_name, "best_epoch": history.best_epoch}
        params = [Param(k, v) for k, v in flatten({**described, **history.runtime})]
        for start in range(0, max(len(metrics), 1), 1000):
            self.client.log_batch(
                child, metrics=metrics[start : start + 1000], params=params if not start else []
            )
        self.client.set_terminated(child)

    def end(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.uri}"


def _small_table(data: Any) -> bool:
    """A pandas table small enough to keep in MLflow (a route comparison or class counts;
    not the predictions of a whole cruise, which stay in data/ only)."""
    return hasattr(data, "to_csv") and hasattr(data, "__len__") and len(data) <= MAX_TABLE_ROWS


def _numeric_leaves(tree: Any, prefix: str) -> dict[str, float]:
    if not isinstance(tree, dict):
        return {}
    found: dict[str, float] = {}
    for key, value in tree.items():
        if key == "per_class":  # keyed by class names, which metric keys cannot all hold
            continue
        if isinstance(value, dict):
            found.update(_numeric_leaves(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[f"{prefix}{key}"] = value
    return found


def _first_line(exc: BaseException) -> str:
    """A short reason: "no answer" for a network failure, else the error's first line."""
    text = str(exc).strip()
    if any(sign in text for sign in ("Max retries", "ConnectionError", "timed out", "refused")):
        return "no answer from the server"
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _now_ms() -> int:
    return int(time.time() * 1000)
