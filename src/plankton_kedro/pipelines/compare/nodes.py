"""Tabulate and plot the routes' test metrics (mean ± std over seeds), per label budget, with
the paper's frozen-feature probe beside each route and the routes' ensemble."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.config import EnsemblingParams, RunParams
from plankton_kedro.lazy import lazy_import
from plankton_kedro.pipelines.ensembling.nodes import combine_on_validation

analysis_metrics = lazy_import("plankton_kedro.engine.analysis.metrics")
splits = lazy_import("plankton_kedro.engine.collection.splits")

HEADLINE = ["accuracy", "f1_macro", "f1_micro", "f1_weighted", "balanced_accuracy"]
IDENTITY = ["model_name", "dataset", "n_test", "checkpoint_version", "manifest_version"]
PROBES = {"logistic_regression": "probe_lr", "svc_rbf": "probe_svc"}
PROBE_METRICS = ("accuracy", "f1_macro")
ENSEMBLE = "ensemble"


def select_label_budget(manifest: pd.DataFrame, run: RunParams) -> pd.DataFrame:
    """The target manifest with at most ``run.labels_per_class`` train images per class (a
    nested subset drawn with the run's seed); validation and test untouched."""
    return splits.label_budget(manifest, run.labels_per_class, run.seed)


def comparison_row(metrics: dict[str, Any], feature_classifiers: dict[str, Any]) -> dict[str, Any]:
    """One (route, seed, budget) run: the fine-tuned model's test scores, what produced them,
    and the paper's probe (frozen features of what the route fine-tunes from) on the same
    test images."""
    extra = [k for k in sorted(metrics) if k.startswith("top") and k.endswith("_accuracy")]
    probe = feature_classifiers.get("pretrained") or {}
    return {
        "route": metrics["route"],
        "seed": metrics.get("seed"),
        "run": metrics.get("run", metrics["route"]),
        "labels_per_class": metrics.get("labels_per_class"),
        "n_train": metrics.get("n_train"),
        "n_classes": len(metrics.get("per_class") or {}) or None,
        **{k: metrics.get(k) for k in HEADLINE + extra},
        **{
            f"{short}_{metric}": ((probe.get(name) or {}).get("test") or {}).get(metric)
            for name, short in PROBES.items()
            for metric in PROBE_METRICS
        },
        **{k: metrics.get(k) for k in IDENTITY},
    }


def ensemble_routes(
    image_cache: np.ndarray,
    manifest: pd.DataFrame,
    ensembling: EnsemblingParams,
    *route_models: Checkpoint,
) -> dict[str, Any]:
    """The routes' models of one seed and budget ensembled: members chosen by greedy forward
    selection on validation (``ensembling``'s metric, mode and calibration), scored on test;
    a row of the comparison table."""
    members = {model.identity.route: model for model in route_models}
    combined = combine_on_validation(members, image_cache, manifest, ensembling)
    test = analysis_metrics.classification_report(
        combined.test_labels,
        combined.test_probabilities.argmax(1),
        combined.class_names,
        scores=combined.test_probabilities,
    )
    seed = route_models[0].identity.seed
    budget = manifest.attrs.get("labels_per_class")
    return {
        "route": ENSEMBLE,
        "seed": seed,
        "run": f"{ENSEMBLE}_seed{seed}" + (f"_n{budget}" if budget else ""),
        "labels_per_class": budget,
        "n_train": int((manifest["split"] == "train").sum()),
        "n_classes": len(combined.class_names),
        **{k: test.get(k) for k in HEADLINE},
        "members": "+".join(combined.selection["selected"]),
        f"val_{ensembling.metric}": combined.selection["val_score"],
        "model_name": "+".join(sorted({m.model_name for m in route_models})),
        "dataset": str(manifest.attrs.get("dataset")),
        "n_test": int(len(combined.test_labels)),
        "manifest_version": manifest.attrs.get("version"),
    }


def tabulate_runs(*rows: dict[str, Any]) -> pd.DataFrame:
    """One row per (route, seed, label budget) run, routes' ensembles included."""
    return pd.DataFrame([{k: v for k, v in row.items() if k != "per_class"} for row in rows])


def summarise_routes(runs: pd.DataFrame) -> dict[str, Any]:
    """Per route and metric, with every labelled image (the largest budget): mean, standard
    deviation over seeds (ddof 1) and run count."""
    runs = full_label_rows(runs)
    metrics = [
        c
        for c in runs.columns
        if c in HEADLINE or c.startswith("top") or c.startswith(tuple(PROBES.values()))
    ]
    summary = {}
    for route, group in runs.groupby("route", sort=True):
        summary[route] = {
            metric: {
                "mean": float(group[metric].mean()),
                "std": float(group[metric].std(ddof=1)) if group[metric].count() > 1 else 0.0,
                "n": int(group[metric].count()),
            }
            for metric in metrics
            if group[metric].notna().any()
        }
        summary[route]["seeds"] = sorted(int(s) for s in group["seed"].dropna())
    return summary


def plot_routes(runs: pd.DataFrame) -> Any:
    """Bars of mean accuracy and F1 macro per route, std error bars, one dot per seed
    (a matplotlib figure), with every labelled image."""
    return analysis_metrics.route_comparison_figure(full_label_rows(runs))


def summarise_label_budgets(runs: pd.DataFrame) -> pd.DataFrame:
    """Per route and labels per class: mean and std over seeds of accuracy and F1 macro, and
    the mean number of train images (``labels_per_class`` empty: all of them)."""
    budgets = runs.assign(
        labels_per_class=runs["labels_per_class"].astype("Int64"),
        train_per_class=runs["n_train"] / runs["n_classes"],
    )
    grouped = budgets.groupby(["route", "labels_per_class"], dropna=False, sort=True)
    table = grouped.agg(
        n_train=("n_train", "mean"),
        train_per_class=("train_per_class", "mean"),
        seeds=("seed", "nunique"),
        accuracy_mean=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        f1_macro_mean=("f1_macro", "mean"),
        f1_macro_std=("f1_macro", "std"),
    )
    return table.reset_index()


def plot_label_budgets(runs: pd.DataFrame) -> Any:
    """Accuracy and F1 macro against labelled images per class, a line per route with a
    mean ± std band over seeds (a matplotlib figure)."""
    return analysis_metrics.label_budget_figure(summarise_label_budgets(runs))


def full_label_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with every labelled train image, or, when no budget is "all", the largest."""
    if "labels_per_class" not in runs or runs["labels_per_class"].isna().all():
        return runs
    budgets = runs["labels_per_class"]
    if budgets.isna().any():
        return runs[budgets.isna()]
    return runs[budgets == budgets.max()]
