"""Run hooks: fail fast on unavailable weights, and summarise what a run produced."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from kedro.framework.hooks import hook_impl

from plankton_kedro.engine.download import DownloadError
from plankton_kedro.engine.model import WeightsUnavailableError, check_imagenet_weights
from plankton_kedro.engine.resume import ResumeMismatchError
from plankton_kedro.engine.stages import StageInputError
from plankton_kedro.pipelines.routes import PRETRAINED_WEIGHTS_TAG

logger = logging.getLogger(__name__)

USER_ERRORS = (StageInputError, ResumeMismatchError, DownloadError, WeightsUnavailableError)
MAX_LISTED = 6  # longer lists are counted, not named
CHECKPOINT_FIELDS = (
    "kind",
    "run",
    "stage",
    "model_name",
    "dataset",
    "selection_metric",
    "best_score",
    "best_epoch",
)


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
            try:
                tag = check_imagenet_weights(model.name)
            except WeightsUnavailableError as exc:  # a message for the user, not a traceback
                raise click.ClickException(str(exc)) from None
            logger.info("ImageNet weights for %s available: %s", model.name, tag)


class UserErrorHooks:
    """A node failing on bad input or settings (wrong image size, no network, a resume that
    does not match) ends the run with its message, not a traceback through Kedro's runner."""

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        if isinstance(error, USER_ERRORS):
            raise click.ClickException(f"{node.name}: {error}") from None


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
        self._saved.append(SavedOutput(dataset_name, _light(data), self._filepath(dataset_name)))

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

    def _filepath(self, dataset_name: str) -> str | None:
        """The configured file of a persisted entry; None for in-memory ones."""
        try:
            config = self._catalog.config_resolver.resolve_pattern(dataset_name)
        except Exception:  # noqa: BLE001 - a summary must never fail a finished run
            return None
        return config.get("filepath")


@dataclass(frozen=True)
class SavedOutput:
    """One catalog save of the run: entry name, what the summary needs of the saved value
    (see :func:`_light`) and its file (None when kept in memory)."""

    name: str
    data: Any
    filepath: str | None


def summary_lines(
    *, pipelines: list[str], version: str, saved: list[SavedOutput], project: Path
) -> list[str]:
    """The run summary, one short line per fact; sections without content are left out."""
    values = {item.name: item.data for item in saved}
    lines = [f"Run summary ({', '.join(pipelines)}):"]
    lines += _ingested(values) + _trained(values) + _metrics(values)
    lines += _ensemble(values) + _predicted(values) + _downloaded(values)
    lines += _outputs(saved, version, project)
    if len(lines) == 1:
        lines.append("  nothing was saved")
    return lines


def _ingested(values: dict[str, Any]) -> list[str]:
    reports = [v for k, v in values.items() if k.endswith("ingestion_report") and _is_dict(v)]
    parts = [
        f"{r['source']['name']} {r['images']} images, {r['classes']} classes, "
        f"{r['skipped_count']} files skipped"
        for r in reports
    ]
    return [f"  ingested: {' · '.join(parts)}"] if parts else []


def _trained(values: dict[str, Any]) -> list[str]:
    models = [
        v
        for k, v in values.items()
        if _is_dict(v) and "stage" in v and "best_score" in v and k.endswith("_model")
    ]
    if len(models) > MAX_LISTED:
        stages = Counter(m["stage"] for m in models)
        counts = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
        return [f"  trained: {len(models)} checkpoints ({counts})"]
    return [
        f"  trained: {m['run']}/{m['stage']} {m['model_name']} on {m['dataset']}, best val "
        f"{m.get('selection_metric', 'score')} {m['best_score']:.4f} @ epoch {m['best_epoch']}"
        for m in models
    ]


def _metrics(values: dict[str, Any]) -> list[str]:
    summary = values.get("route_summary")
    if _is_dict(summary):
        lines = ["  routes over seeds (target test split, mean ± std):"]
        for route, stats in summary.items():
            acc, f1 = stats["accuracy"], stats["f1_macro"]
            lines.append(
                f"    {route}: accuracy {acc['mean']:.4f} ± {acc['std']:.4f} · f1_macro "
                f"{f1['mean']:.4f} ± {f1['std']:.4f} · {acc['n']} seeds"
            )
        return lines
    metrics = [
        (k, v)
        for k, v in values.items()
        if k.endswith(".metrics") and _is_dict(v) and "accuracy" in v
    ]
    if not metrics:
        return []
    lines = ["  target test split (best checkpoint):"]
    for name, m in metrics:
        lines.append(
            f"    {m.get('run') or m.get('route') or name}: accuracy {m['accuracy']:.4f} · "
            f"f1_macro {m['f1_macro']:.4f} · n_test {m['n_test']} · {m['model_name']} on "
            f"{m['dataset']}"
        )
    return lines


def _ensemble(values: dict[str, Any]) -> list[str]:
    report = values.get("ensemble_report")
    if not _is_dict(report):
        return []
    test, chosen = report["ensemble"]["test"], report["selection"]["weights"]
    return [
        f"  ensemble of {', '.join(chosen)} ({len(chosen)} of {len(report['members'])} "
        f"candidates, chosen on {report['selected_on']}): accuracy {test['accuracy']:.4f} · "
        f"f1_macro {test['f1_macro']:.4f} · n_test {test['n_test']}"
    ]


def _predicted(values: dict[str, Any]) -> list[str]:
    report = values.get("prediction_report")
    if not _is_dict(report):
        return []
    model = report["model"]
    by = "ensemble" if model["kind"] == "ensemble" else f"{model['route']} ({model['model_name']})"
    return [
        f"  predicted: {report['images']} images of {report['source']['name']} with {by}, "
        f"{report['unknown']} unknown, {report['skipped_count']} files skipped"
    ]


def _downloaded(values: dict[str, Any]) -> list[str]:
    report = values.get("download_report")
    if not _is_dict(report):
        return []
    return [
        f"  downloaded: {name} -> {item['path']} ({item['bytes']:,} bytes, "
        f"{'SHA-256 verified' if item['verified'] else 'no checksum given'})"
        for name, item in report.items()
    ] or ["  downloaded: nothing configured"]


def _outputs(saved: list[SavedOutput], version: str, project: Path) -> list[str]:
    """Persisted outputs grouped by data layer folder, at most MAX_LISTED named per layer."""
    by_layer: dict[str, list[str]] = {}
    for item in saved:
        if item.filepath:
            path = _relative(Path(item.filepath), project)
            layer, rest = _split_layer(path)
            by_layer.setdefault(layer, []).append(rest)
    if not by_layer:
        return []
    lines = [f"  outputs (version {version}, newest by default):"]
    for layer, files in sorted(by_layer.items()):
        shown = ", ".join(files[:MAX_LISTED])
        more = f" and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else ""
        lines.append(f"    {layer}/: {shown}{more}")
    return lines


def _light(data: Any) -> dict[str, Any] | None:
    """Small dicts (metrics, reports) as they are, checkpoints without their weights, nothing
    of tables, arrays or figures: a long run must not hold every model until it ends."""
    if not isinstance(data, dict):
        return None
    if "state_dict" in data or data.get("kind") == "ensemble":
        return {key: data[key] for key in CHECKPOINT_FIELDS if key in data}
    return data


def _relative(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return path.as_posix()


def _split_layer(path: str) -> tuple[str, str]:
    """``data/08_reporting/two_stage/metrics.json`` -> ``("data/08_reporting", "two_stage/…")``."""
    parts = path.split("/")
    depth = 2 if parts[0] == "data" and len(parts) > 2 else 1
    return "/".join(parts[:depth]), "/".join(parts[depth:])


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)
