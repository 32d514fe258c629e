"""Retention: which saved versions ``kedro prune`` may delete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI

from plankton_kedro.engine.retention import SavedVersion, bytes_freed, prune_plan, references
from tests.bad_inputs import checkpoint_payload
from tests.conftest import copy_project

CACHE = "05_model_input/source/images.npy"
MANIFEST = "03_primary/source/manifest.parquet"
MODEL = "06_models/two_stage/target_model.pt"
METRICS = "08_reporting/two_stage/metrics.json"
REPORT = "08_reporting/predictions/prediction_report.json"


def version(n: int, hour: int = 0) -> str:
    """Ingestion runs at midnight, training runs at noon: every run its own version."""
    return f"2026-12-0{n}T{hour:02d}.00.00.000Z"


def save(data: Path, output: str, n: int, content: bytes = b"x", hour: int = 0) -> Path:
    path = data / output / version(n, hour) / Path(output).name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def checkpoint_on(manifest_version: str, folder: Path) -> bytes:
    payload = checkpoint_payload()
    payload["identity"] = {**payload["identity"], "manifest_version": manifest_version}
    payload["state_dict"] = {}
    path = folder / "checkpoint.pt"
    torch.save(payload, path)
    return path.read_bytes()


def saved_runs(data: Path) -> None:
    """Five ingestions and four trainings; the newest two trained on the first ingestion, the
    newest predictions made with the first model."""
    for n in range(1, 6):  # five ingestions
        save(data, CACHE, n)
        save(data, MANIFEST, n)
    for n in range(1, 5):  # four trainings, the newest two on the first ingestion's manifest
        trained_on = version(1) if n >= 3 else version(n)
        save(data, MODEL, n, checkpoint_on(trained_on, data.parent), hour=12)
        metrics = {"checkpoint_version": version(n, 12)}  # the manifest: only the model says
        save(data, METRICS, n, json.dumps(metrics).encode(), hour=12)
    # the newest predictions were made with the first model
    save(data, REPORT, 5, json.dumps({"model": {"version": version(1, 12)}}).encode(), hour=18)


PRUNABLE = {
    (CACHE, version(2)),
    (CACHE, version(3)),
    (MANIFEST, version(2)),
    (MANIFEST, version(3)),
    (MODEL, version(2, 12)),
}


def test_prune_keeps_the_newest_and_everything_they_refer_to(tmp_path):
    """Catches pruning a cache or manifest the newest model was trained on, the model the
    newest predictions came from, or small reports; and pruning nothing at all."""
    data = tmp_path / "data"
    saved_runs(data)
    plan = prune_plan(data, keep=2, referenced=references)
    assert {(str(saved.output.relative_to(data)), saved.version) for saved in plan} == PRUNABLE
    assert {saved.path for saved in plan} <= set(data.rglob("*"))


def test_kedro_prune_lists_before_it_deletes_and_deletes_only_that(tmp_path, monkeypatch):
    """Catches a dry run that deletes, a prune that deletes more (or other) than it listed, and
    the ``retention.keep_versions`` setting ignored."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "parameters.yml").write_text("retention:\n  keep_versions: 2\n")
    monkeypatch.chdir(project)
    saved_runs(project / "data")
    before = {p for p in (project / "data").rglob("*") if p.is_file()}
    listed = CliRunner().invoke(KedroCLI(project_path=project), ["prune", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert {p for p in (project / "data").rglob("*") if p.is_file()} == before
    expected = {Path("data") / output / v / Path(output).name for output, v in PRUNABLE}
    lines = [line for line in listed.output.splitlines() if line.startswith("would delete")]
    assert {Path(line.split()[2]) for line in lines} == expected
    assert "5 old version(s)" in listed.output and "run `kedro prune` to delete" in listed.output

    pruned = CliRunner().invoke(KedroCLI(project_path=project), ["prune"])
    assert pruned.exit_code == 0, pruned.output
    after = {p for p in (project / "data").rglob("*") if p.is_file()}
    assert before - after == {project / path for path in expected}


def test_hard_linked_versions_free_only_what_no_kept_version_links(tmp_path):
    """Catches a prune that counts a reused ingestion's linked cache (one file or shards) as
    freed while a kept version still links it, or counts a file linked between two deleted
    versions twice."""
    data = tmp_path / "data"
    kept = save(data, CACHE, 3, b"k" * 1000)  # the kept cache ...
    linked_to_kept = data / CACHE / version(1) / "images.npy"
    linked_to_kept.parent.mkdir(parents=True)
    os.link(kept, linked_to_kept)  # ... which an old reused version links
    shards = data / "05_model_input/target/images.npy"
    old, older = (shards / version(n) / "images.npy" for n in (1, 2))
    older.mkdir(parents=True)
    (older / "shard-000000.npy").write_bytes(b"s" * 300)
    (older / "index.json").write_bytes(b"i" * 20)
    old.mkdir(parents=True)
    for shard in older.iterdir():  # a reuse of the older shards, both to be deleted
        os.link(shard, old / shard.name)
    (old / "own.npy").write_bytes(b"o" * 7)
    plain = save(data, MANIFEST, 1, b"m" * 50)
    plan = [
        SavedVersion(data / CACHE, version(1)),
        SavedVersion(shards, version(2)),
        SavedVersion(shards, version(1)),
        SavedVersion(plain.parent.parent, version(1)),
    ]
    assert [saved.bytes for saved in plan] == [1000, 320, 327, 50]
    assert bytes_freed(plan) == [0, 320, 7, 50]
