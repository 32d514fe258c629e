"""Ingestion reuse: the same files with the same settings are not decoded again, and any
change of a file, of the listing or of a setting is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI

from plankton_kedro.datasets.image_cache import ImageCacheDataset
from plankton_kedro.engine.collection.fingerprint import ingestion_fingerprint
from plankton_kedro.engine.collection.sources import ImageSource
from plankton_kedro.pipelines.ingestion import nodes
from tests.bad_inputs import class_members, png, write_folder, write_zip
from tests.conftest import copy_project

SETTINGS = {"cache_size": 27, "preprocessing": {"fill": "auto"}}


def fingerprint(path: Path, settings: dict = SETTINGS) -> str:
    return ingestion_fingerprint(ImageSource(path), settings)


def test_the_fingerprint_follows_the_listing_and_the_settings_not_the_location(tmp_path):
    """Catches a fingerprint blind to a file's change (same size, new bytes), an added or
    removed file, or a setting; and one that changes for an identical copy."""
    members = class_members(("copepod", "diatom"), 3, seed=4)
    folder = write_folder(tmp_path / "cast", members)
    original = fingerprint(folder)
    assert fingerprint(folder) == original
    assert fingerprint(folder, {**SETTINGS, "cache_size": 28}) != original

    changed = folder / "copepod" / "000.png"
    stat = changed.stat()
    changed.write_bytes(changed.read_bytes()[::-1])  # same size, other bytes, later mtime
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert fingerprint(folder) != original
    (folder / "diatom" / "extra.png").write_bytes(png(9))
    assert fingerprint(folder) not in {original}

    (tmp_path / "a").mkdir()
    zipped = write_zip(tmp_path / "a" / "cast.zip", members)
    same = tmp_path / "b"
    same.mkdir()
    write_zip(same / "cast.zip", members)
    assert fingerprint(zipped) == fingerprint(same / "cast.zip")  # same content elsewhere
    other = dict(members)
    other["copepod/000.png"] = members["copepod/000.png"][::-1]  # same size: the CRC tells
    write_zip(same / "cast.zip", other)
    assert fingerprint(zipped) != fingerprint(same / "cast.zip")


@pytest.fixture
def project(tmp_path) -> Path:
    root = copy_project(tmp_path / "project")
    (root / "conf" / "local" / "parameters_tracking.yml").write_text(
        "tracking:\n  enabled: false\n"
    )
    return root


def _ingest(project: Path, caplog, params: str) -> str:
    """``kedro run --pipelines=ingestion`` in process; the log of this run."""
    caplog.clear()
    result = CliRunner().invoke(
        KedroCLI(project_path=project), ["run", "--pipelines=ingestion", "--params", params]
    )
    import traceback

    traceback.print_exception(*result.exc_info) if result.exc_info else None
    assert result.exit_code == 0, (result.exception, result.output[-3000:], caplog.text[-3000:])
    return caplog.text


def _newest(project: Path, relative: str) -> Path:
    return sorted((project / relative).iterdir())[-1] / Path(relative).name


def test_a_second_identical_ingestion_decodes_nothing_and_links_the_cache(
    project, tmp_path, monkeypatch, caplog
):
    """Catches ingestion redone on every run (decoding and a second full cache), a reused
    ingestion whose outputs differ from the original's, and reuse where something changed:
    a file's content, an added file, a setting, or ``ingestion.reuse=false``."""
    monkeypatch.chdir(project)
    source = write_folder(tmp_path / "cast", class_members(("copepod", "diatom"), 8, seed=5))
    target = write_folder(tmp_path / "target", class_members(("copepod", "diatom"), 8, seed=6))
    params = f"source_images={source},target_images={target}"
    cache = "data/05_model_input/source/images.npy"
    report = "data/08_reporting/source/ingestion_report.json"
    manifest = "data/03_primary/source/manifest.parquet"

    _ingest(project, caplog, params)
    first_cache, first_manifest = _newest(project, cache), _newest(project, manifest)
    first = json.loads(_newest(project, report).read_text())
    assert first["reused_from"] is None

    decoded = []
    real_scan = nodes.scan_images
    monkeypatch.setattr(
        nodes, "scan_images", lambda *a, **k: decoded.append(1) or real_scan(*a, **k)
    )
    log = _ingest(project, caplog, params)
    assert not decoded, "the second identical ingestion decoded the images again"
    assert (
        f"already ingested with the same files and settings: reusing {first_cache.parent.name}"
        in log
    )
    assert f"(reused {first_cache.parent.name}: not decoded again)" in log  # run summary
    again = json.loads(_newest(project, report).read_text())
    assert again["reused_from"] == first_cache.parent.name
    assert {k: v for k, v in again.items() if k != "reused_from"} == {
        k: v for k, v in first.items() if k != "reused_from"
    }
    reused_cache = _newest(project, cache)
    assert reused_cache != first_cache and reused_cache.stat().st_ino == first_cache.stat().st_ino
    assert _newest(project, manifest).read_bytes() != b""
    import pandas as pd

    pd.testing.assert_frame_equal(
        pd.read_parquet(_newest(project, manifest)), pd.read_parquet(first_manifest)
    )

    def ingested_afresh(run_params: str) -> bool:
        """Whether this run decoded the images and wrote a cache of its own (and not both
        or neither)."""
        decoded.clear()
        before = _newest(project, cache).stat().st_ino
        _ingest(project, caplog, run_params)
        fresh = _newest(project, cache).stat().st_ino != before
        assert fresh == bool(decoded)
        return fresh

    assert ingested_afresh(f"{params},ingestion.reuse=false")
    assert ingested_afresh(f"{params},preprocessing.source.fill=0")
    changed = source / "copepod" / "000.png"
    changed.write_bytes(png(77))
    assert ingested_afresh(params)
    assert not ingested_afresh(params)  # ... and that one is reused in turn
    (source / "diatom" / "new.png").write_bytes(png(78))
    assert ingested_afresh(params)


def test_a_sharded_cache_is_reused_by_linking_its_shards(project, tmp_path, monkeypatch, caplog):
    """Catches a sharded cache (what collections of WHOI's size use) that is never reused,
    or reused by copying every shard; and a changed ``shard_size`` that keeps the old cut."""
    monkeypatch.chdir(project)
    catalog = project / "conf" / "local" / "catalog.yml"
    entry = (
        '"{dataset}_image_cache":\n  type: plankton_kedro.datasets.ImageCacheDataset\n'
        "  filepath: data/05_model_input/{dataset}/images.npy\n  versioned: true\n"
    )
    catalog.write_text(entry + "  shard_size: 5\n")
    source = write_folder(tmp_path / "cast", class_members(("copepod", "diatom"), 8, seed=7))
    target = write_folder(tmp_path / "target", class_members(("copepod", "diatom"), 8, seed=8))
    params = f"source_images={source},target_images={target}"
    cache = "data/05_model_input/source/images.npy"

    _ingest(project, caplog, params)
    first = _newest(project, cache)
    assert sorted(p.name for p in first.iterdir())[-1] == "shard-000003.npy"  # 16 images / 5
    decoded = []
    real_scan = nodes.scan_images
    monkeypatch.setattr(
        nodes, "scan_images", lambda *a, **k: decoded.append(1) or real_scan(*a, **k)
    )
    log = _ingest(project, caplog, params)
    assert not decoded and f"reusing {first.parent.name}" in log
    reused = _newest(project, cache)
    assert reused != first
    for shard in first.iterdir():
        assert (reused / shard.name).stat().st_ino == shard.stat().st_ino
    originals = ImageCacheDataset(filepath=str(first)).load()

    catalog.write_text(entry + "  shard_size: 7\n")  # same images, cut anew (copied)
    _ingest(project, caplog, params)
    recut = _newest(project, cache)
    assert not decoded and json.loads((recut / "index.json").read_text())["shard_size"] == 7
    assert (recut / "shard-000000.npy").stat().st_ino != (first / "shard-000000.npy").stat().st_ino
    np.testing.assert_array_equal(
        np.asarray(ImageCacheDataset(filepath=str(recut)).load()), np.asarray(originals)
    )
