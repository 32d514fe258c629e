"""Tabulate and plot the routes' test metrics (mean ± std over seeds)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from plankton_kedro.lazy import lazy_import

analysis_metrics = lazy_import("plankton_kedro.engine.analysis.metrics")

HEADLINE = ["accuracy", "f1_macro", "f1_micro", "f1_weighted", "balanced_accuracy"]
IDENTITY = ["model_name", "dataset", "n_test", "checkpoint_version", "manifest_version"]


def tabulate_runs(*metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per (route, seed) run: headline metrics and what produced them."""
    rows = []
    for m in metrics:
        extra = [k for k in sorted(m) if k.startswith("top") and k.endswith("_accuracy")]
        rows.append(
            {
                "route": m["route"],
                "seed": m.get("seed"),
                "run": m.get("run", m["route"]),
                **{k: m.get(k) for k in HEADLINE + extra},
                **{k: m.get(k) for k in IDENTITY},
            }
        )
    return pd.DataFrame(rows)


def summarise_routes(runs: pd.DataFrame) -> dict[str, Any]:
    """Per route and metric: mean, standard deviation over seeds (ddof 1) and run count."""
    metrics = [c for c in runs.columns if c in HEADLINE or c.startswith("top")]
    summary = {}
    for route, group in runs.groupby("route", sort=True):
        summary[route] = {
            metric: {
                "mean": float(group[metric].mean()),
                "std": float(group[metric].std(ddof=1)) if len(group) > 1 else 0.0,
                "n": int(group[metric].count()),
            }
            for metric in metrics
        }
        summary[route]["seeds"] = sorted(int(s) for s in group["seed"].dropna())
    return summary


def plot_routes(runs: pd.DataFrame) -> Any:
    """Bars of mean accuracy and F1 macro per route, std error bars, one dot per seed
    (a matplotlib figure)."""
    return analysis_metrics.route_comparison_figure(runs)
