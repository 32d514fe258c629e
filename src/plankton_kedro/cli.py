"""Commands this project adds to ``kedro`` (Kedro loads ``<package>.cli``): ``kedro prune``.

Imported by every ``kedro`` command: nothing heavy at module level.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click


@click.group(name="plankton-kedro")
def cli() -> None:
    """plankton-kedro's own commands."""


@cli.command()
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="Versions to keep of each large output (default: retention.keep_versions, 3).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
def prune(keep: int | None, dry_run: bool) -> None:
    """Delete old versions of image caches, tables, checkpoints and ONNX models in data/.

    Each output keeps its newest KEEP versions and every version that one of those refers to
    (the manifest and cache a kept model was trained on, an ensemble's members, the model of
    kept predictions). Metrics, reports and figures are small and always kept.
    """
    from plankton_kedro.engine.retention import bytes_freed, prune_plan, references

    keep = keep or _keep_versions()
    data = Path("data")
    plan = prune_plan(data, keep, references)
    frees = bytes_freed(plan)
    for saved, freed in zip(plan, frees, strict=True):
        size = saved.bytes
        note = "" if freed == size else f" (hard-linked to another version: frees {_size(freed)})"
        action = "would delete" if dry_run else "deleting"
        click.echo(f"{action} {saved.path} ({_size(size)}){note}")
        if not dry_run:
            shutil.rmtree(saved.output / saved.version)
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{len(plan)} old version(s), {verb} {_size(sum(frees))}; kept the newest {keep} of "
        "each output and every version they refer to"
        + ("; run `kedro prune` to delete" if dry_run and plan else "")
    )


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _keep_versions() -> int:
    """``retention.keep_versions`` from the project's parameters (conf/base, conf/local)."""
    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_CLASS(
        str(Path(settings.CONF_SOURCE)), **settings.CONFIG_LOADER_ARGS
    )
    from plankton_kedro.engine.config import RetentionParams

    return RetentionParams(**(loader["parameters"].get("retention") or {})).keep_versions
