"""Tabulate and plot the routes' test metrics (mean ± std over seeds)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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


def plot_routes(runs: pd.DataFrame) -> plt.Figure:
    """Bars of mean accuracy and F1 macro per route, std error bars, one dot per seed."""
    routes = sorted(runs["route"].unique())
    metrics = ["accuracy", "f1_macro"]
    width = 0.38
    fig, ax = plt.subplots(figsize=(1.9 * len(routes) + 2.5, 4.2))
    for j, metric in enumerate(metrics):
        positions = np.arange(len(routes)) + (j - 0.5) * width
        groups = [runs.loc[runs["route"] == r, metric].to_numpy(dtype=float) for r in routes]
        means = [g.mean() for g in groups]
        stds = [g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]
        ax.bar(positions, means, width, yerr=stds, capsize=4, label=metric.replace("_", " "))
        for x, values in zip(positions, groups, strict=True):
            ax.scatter(np.full(len(values), x), values, color="black", s=10, zorder=3)
        for x, mean in zip(positions, means, strict=True):
            ax.text(x, mean / 2, f"{mean:.3f}", ha="center", color="white", fontsize=8)
    ax.set_xticks(np.arange(len(routes)), routes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("target test split")
    seeds = runs.groupby("route")["seed"].nunique().max()
    ax.set_title(f"Transfer routes: mean ± std over {seeds} seed(s), dots = single runs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
