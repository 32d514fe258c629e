"""The summary that ends every ``kedro run``: what was ingested, trained, evaluated and
predicted, the headline figures, and where the files are.

What each saved output is comes from its type (a trained model is a
:class:`~plankton_kedro.engine.checkpoint.Checkpoint`) or from the ``run_summary`` role its
catalog entry declares in its metadata (``ingestion_report``, ``metrics``, ``route_summary``,
``ensemble_report``, ``prediction_report``, ``download_report``), never from its name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plankton_kedro.engine.checkpoint import Checkpoint

MAX_LISTED = 6  # longer lists are counted, not named
MODEL_ROLE = "model"


@dataclass(frozen=True)
class SavedOutput:
    """One catalog save of the run: entry name, what the summary needs of the saved value
    (see :func:`light`) and its file (None when kept in memory)."""

    name: str
    data: Any
    filepath: str | None
    role: str | None = None


def summary_lines(
    *, pipelines: list[str], version: str, saved: list[SavedOutput], project: Path
) -> list[str]:
    """The run summary, one short line per fact; sections without content are left out."""
    by_role: dict[str, list[Any]] = {}
    for item in saved:
        role = MODEL_ROLE if isinstance(item.data, TrainedModel) else item.role
        if role is not None and isinstance(item.data, dict | TrainedModel):
            by_role.setdefault(role, []).append(item.data)
    lines = [f"Run summary ({', '.join(pipelines)}):"]
    lines += _ingested(by_role.get("ingestion_report", []))
    lines += _trained(by_role.get(MODEL_ROLE, []))
    lines += _metrics(by_role.get("route_summary", []), by_role.get("metrics", []))
    lines += _ensemble(by_role.get("ensemble_report", []))
    lines += _predicted(by_role.get("prediction_report", []))
    lines += _downloaded(by_role.get("download_report", []))
    lines += _outputs(saved, version, project)
    if len(lines) == 1:
        lines.append("  nothing was saved")
    return lines


def _ingested(reports: list[dict[str, Any]]) -> list[str]:
    parts = [
        f"{r['source']['name']} {r['images']} images, {r['classes']} classes, "
        f"{r['skipped_count']} files skipped"
        + "".join(f", {n} left out ({reason})" for reason, n in r.get("excluded", {}).items())
        + (f" (reused {r['reused_from']}: not decoded again)" if r.get("reused_from") else "")
        for r in reports
    ]
    return [f"  ingested: {' · '.join(parts)}"] if parts else []


def _trained(models: list[TrainedModel]) -> list[str]:
    if len(models) > MAX_LISTED:
        stages = Counter(m.stage for m in models)
        counts = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
        return [f"  trained: {len(models)} checkpoints ({counts})"]
    return [
        f"  trained: {m.run}/{m.stage} {m.model_name} on {m.dataset}, best val "
        f"{m.selection_metric or 'score'} {m.best_score:.4f} @ epoch {m.best_epoch}"
        for m in models
    ]


def _metrics(summaries: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> list[str]:
    if summaries:
        lines = ["  routes over seeds (target test split, mean ± std):"]
        for route, stats in summaries[-1].items():
            acc, f1 = stats["accuracy"], stats["f1_macro"]
            lines.append(
                f"    {route}: accuracy {acc['mean']:.4f} ± {acc['std']:.4f} · f1_macro "
                f"{f1['mean']:.4f} ± {f1['std']:.4f} · {acc['n']} seeds"
            )
        return lines
    if not metrics:
        return []
    lines = ["  target test split (best checkpoint):"]
    for m in metrics:
        lines.append(
            f"    {m.get('run') or m.get('route')}: accuracy {m['accuracy']:.4f} · "
            f"f1_macro {m['f1_macro']:.4f} · n_test {m['n_test']} · {m['model_name']} on "
            f"{m['dataset']}"
        )
    return lines


def _ensemble(reports: list[dict[str, Any]]) -> list[str]:
    if not reports:
        return []
    report = reports[-1]
    test, chosen = report["ensemble"]["test"], report["selection"]["weights"]
    return [
        f"  ensemble of {', '.join(chosen)} ({len(chosen)} of {len(report['members'])} "
        f"candidates, chosen on {report['selected_on']}): accuracy {test['accuracy']:.4f} · "
        f"f1_macro {test['f1_macro']:.4f} · n_test {test['n_test']}"
    ]


def _predicted(reports: list[dict[str, Any]]) -> list[str]:
    if not reports:
        return []
    report = reports[-1]
    model = report["model"]
    by = "ensemble" if model["kind"] == "ensemble" else f"{model['route']} ({model['model_name']})"
    samples = f" in {report['samples']} samples" if report.get("samples", 1) > 1 else ""
    return [
        f"  predicted: {report['images']} images of {report['source']['name']}{samples} with {by}, "
        f"{report['unknown']} unknown, {report['skipped_count']} files skipped"
    ]


def _downloaded(reports: list[dict[str, Any]]) -> list[str]:
    if not reports:
        return []
    return [
        f"  downloaded: {name} -> {item['path']} ({item['bytes']:,} bytes, "
        f"{'SHA-256 verified' if item['verified'] else 'no checksum given'})"
        for name, item in reports[-1].items()
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


@dataclass(frozen=True)
class TrainedModel:
    """What the summary keeps of a trained checkpoint (not its weights)."""

    run: str
    stage: str | None
    model_name: str
    dataset: str | None
    selection_metric: str | None
    best_score: float
    best_epoch: int | None


def light(data: Any) -> Any:
    """What the summary needs of a saved value: small dicts (metrics, reports) as they are,
    a trained checkpoint as a :class:`TrainedModel`, nothing of ensembles, tables, arrays or
    figures: a long run must not hold every model until it ends."""
    if isinstance(data, Checkpoint):
        history = data.history
        return TrainedModel(
            run=data.label,
            stage=data.identity.stage,
            model_name=data.model_name,
            dataset=data.identity.dataset,
            selection_metric=history.selection_metric,
            best_score=history.best_score,
            best_epoch=history.best_epoch,
        )
    return data if isinstance(data, dict) else None


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
