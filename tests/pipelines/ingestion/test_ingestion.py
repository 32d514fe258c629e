"""Ingestion nodes on a collection with every kind of bad file."""

from __future__ import annotations

import gc
import io
import zipfile

import numpy as np
import pytest
from kedro.io import DatasetError
from PIL import Image

from plankton_kedro.datasets import ImageSourceDataset, ManifestDataset
from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    recorded_preprocessing,
)
from plankton_kedro.engine.config import DataParams, IngestionParams, PreprocessingParams
from plankton_kedro.engine.errors import CollectionError
from plankton_kedro.pipelines.ingestion.nodes import build_report, scan_collection, split_records


def _png(value: int, size=(30, 20), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    for label, count, offset in (("copepod", 12, 1), ("diatom", 10, 4), ("rare", 2, 7)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            (root / label / f"{i:02d}.png").write_bytes(_png(10 * i + offset))
    good = _png(77)
    (root / "copepod" / "dup.png").write_bytes(good)
    (root / "diatom" / "dup.png").write_bytes(good)
    (root / "copepod" / "truncated.png").write_bytes(_png(5, (200, 200))[:60])
    (root / "copepod" / "zero.jpg").write_bytes(b"")
    (root / "diatom" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "diatom" / "readme.txt").write_text("labels by hand")
    (root / "diatom" / "page.jpg").write_text("<!DOCTYPE html><html></html>")
    (root / "empty_class").mkdir()
    return root


def test_bad_files_are_listed_with_reasons_and_good_ones_kept(messy_folder):
    source = ImageSourceDataset(path=str(messy_folder)).load()
    data, ingestion = DataParams(image_size=16, resize_ratio=0.8), IngestionParams()
    records, cache, summary = scan_collection(source, data, PreprocessingParams(), ingestion)
    manifest = split_records(records, ingestion)
    report = build_report(manifest, summary, data, ingestion)

    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert reasons["copepod/truncated.png"].startswith("truncated or corrupt image")
    assert reasons["copepod/zero.jpg"] == "empty file (0 bytes)"
    assert reasons["diatom/.DS_Store"].startswith("not an image file")
    assert reasons["diatom/readme.txt"].startswith("not an image file")
    assert reasons["diatom/page.jpg"].startswith("not an image")
    assert report["empty_classes"] == ["empty_class"]
    assert len(manifest) == len(cache) == 12 + 10 + 2 + 2  # row-aligned, all cached
    assert report["skipped_count"] == 5
    assert report["files_seen"] == 31
    assert report["per_class"]["rare"]["total"] == 2
    assert "rare" in report["tiny_classes"]
    # one file filed as copepod and as diatom: reported, and both copies left out (policy drop)
    [duplicate] = report["duplicates"]
    assert duplicate["paths"] == ["copepod/dup.png", "diatom/dup.png"]
    assert duplicate["labels"] == ["copepod", "diatom"] and duplicate["splits"] == ["excluded"]
    assert report["images"] == 24
    assert report["excluded"] == {"identical file under another label": 2}
    assert report["hygiene"]["conflicting_labels"] == {"files": 2, "groups": 1, "policy": "drop"}
    assert list(manifest.columns) == [
        "rel_path",
        "label",
        "width",
        "height",
        "mode",
        "bytes",
        "sha1",
        "background",
        "colour",
        "bits",
        "split",
        "split_source",
        "exclusion",
    ]
    assert manifest.attrs["dataset"] == "messy"
    assert cache.shape == (26, 20, 20, 3) and cache.dtype == np.uint8


def test_a_fixed_fill_pads_with_it_and_aspect_is_kept(messy_folder):
    source = ImageSourceDataset(path=str(messy_folder)).load()
    records, cache, _ = scan_collection(
        source,
        DataParams(image_size=16, resize_ratio=0.8),
        PreprocessingParams(fill=255),
        IngestionParams(),
    )
    row = records.index[records["rel_path"] == "copepod/00.png"][0]
    image = cache[row]  # a 30x20 grey-3 image padded to 30x30 then resized to 20x20
    assert (image[0] == 255).all() and (image[-1] == 255).all()
    assert image[10, 10, 0] == 1


def test_an_archive_without_usable_images_is_a_clear_error(tmp_path):
    path = tmp_path / "nothing.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/readme.txt", "no images here")
    source = ImageSourceDataset(path=str(path)).load()
    # a user error (one `Error:` line from `kedro run`), not a bare ValueError's traceback
    expected = r"no usable image among the 1 files of .*nothing\.zip \(a/readme.txt: not an image"
    with pytest.raises(CollectionError, match=expected):
        scan_collection(source, DataParams(image_size=16), PreprocessingParams(), IngestionParams())


@pytest.mark.parametrize("copies_of_the_other_class", [False, True])
def test_fewer_than_two_classes_is_an_error_at_ingestion(tmp_path, copies_of_the_other_class):
    """Catches a one-class set trained to "val accuracy 1.0" and then crashing in
    scikit-learn's feature classifiers; also when the second class is only copies of the
    first's images, which data hygiene leaves out (as UVP6's darksphere)."""
    root = tmp_path / "one"
    (root / "copepod").mkdir(parents=True)
    for i in range(12):
        (root / "copepod" / f"{i:02d}.png").write_bytes(_png(10 * i + 1))
    if copies_of_the_other_class:
        (root / "ghost").mkdir()
        for i in range(12):
            (root / "ghost" / f"{i:02d}.png").write_bytes(_png(10 * i + 1))
    source = ImageSourceDataset(path=str(root)).load()
    ingestion = IngestionParams(workers=1, spool_dir=None)
    records, _, _ = scan_collection(
        source, DataParams(image_size=16), PreprocessingParams(), ingestion
    )
    expected = (
        r"no image left after ingestion, 24 left out by the data hygiene checks"
        if copies_of_the_other_class
        else r"only 'copepod' \(12 images\) left after ingestion"
    )
    with pytest.raises(CollectionError, match=expected):
        split_records(records, ingestion)


def test_spooled_pixels_equal_in_memory_pixels(messy_folder, tmp_path):
    source = ImageSourceDataset(path=str(messy_folder)).load()
    data = DataParams(image_size=16, resize_ratio=0.8)
    in_memory = scan_collection(
        source, data, PreprocessingParams(), IngestionParams(spool_dir=None)
    )
    spooled = scan_collection(
        source, data, PreprocessingParams(), IngestionParams(spool_dir=str(tmp_path / "spool"))
    )
    assert isinstance(spooled[1], np.memmap)
    assert np.array_equal(in_memory[1], spooled[1])
    assert in_memory[0].equals(spooled[0])
    del spooled
    gc.collect()
    assert list((tmp_path / "spool").iterdir()) == []  # the spool goes with its memory map


def test_official_split_folders_and_exact_class_exclusion(tmp_path):
    """A WHOI-22-like archive: official train/test kept, val carved from train only, and
    excluding 'flagellate' keeps 'dinoflagellate' (exact names, not substrings)."""
    path = tmp_path / "whoi22.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("train", 10), ("test", 4)):
            for label, offset in (("dinoflagellate", 1), ("flagellate", 4), ("diatom", 7)):
                for i in range(count):
                    name = f"whoi22/{split}/{label}/{label}_{split}_{i}.png"
                    archive.writestr(name, _png(10 * i + offset + (50 if split == "test" else 0)))
        archive.writestr("whoi22/train/readme.txt", "class list")
        archive.writestr("whoi22/extra/diatom/x.png", _png(200))
    source = ImageSourceDataset(
        path=str(path), layout="split_folders", exclude_classes=["flagellate"]
    ).load()
    data, ingestion = DataParams(image_size=16, resize_ratio=0.8), IngestionParams()
    records, _, summary = scan_collection(source, data, PreprocessingParams(), ingestion)
    manifest = split_records(records, ingestion)
    report = build_report(manifest, summary, data, ingestion)

    assert sorted(manifest["label"].unique()) == ["diatom", "dinoflagellate"]
    assert report["excluded_classes"] == {"flagellate": 14}
    test_rows = manifest["rel_path"].str.startswith("test/")
    assert (manifest.loc[test_rows, "split"] == "test").all()
    # train images byte-identical to official test images are left out, the test split kept
    excluded = manifest["split"] == "excluded"
    assert set(manifest.loc[~test_rows & ~excluded, "split"]) == {"train", "val"}
    assert set(manifest.loc[excluded, "exclusion"]) == {"copy of a test image"}
    test_files = set(manifest.loc[test_rows, "sha1"])
    assert set(manifest.loc[excluded, "sha1"]) == test_files & set(manifest.loc[~test_rows, "sha1"])
    assert excluded.sum() == 8
    assert (manifest["split_source"] == "official (val carved from train)").all()
    assert report["split_source"] == "official (val carved from train)"
    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert reasons["extra/diatom/x.png"] == "not inside a train/val/test folder"
    assert reasons["train/readme.txt"].startswith("not an image file")


def test_unknown_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="unknown layout 'whoi'"):
        ImageSourceDataset(path=str(tmp_path), layout="whoi").load()


def test_official_split_lists_define_the_split(tmp_path):
    """ZooLake-like: class folders plus train/val/test file lists with another path prefix."""
    root = tmp_path / "zoolake"
    lists = {"train": [], "val": [], "test": []}
    for label, offset in (("daphnia", 1), ("copepod", 4)):
        (root / label).mkdir(parents=True)
        for i in range(9):
            (root / label / f"{label}_{i}.jpeg").write_bytes(_png(10 * i + offset))
            split = "train" if i < 5 else "val" if i < 7 else "test"
            lists[split].append(f"./data/zooplankton_0p5x/{label}/{label}_{i}.jpeg")
    (root / "copepod" / "unlisted.jpeg").write_bytes(_png(250))
    files = {}
    for split, entries in lists.items():
        files[split] = str(tmp_path / f"{split}_filenames.txt")
        (tmp_path / f"{split}_filenames.txt").write_text("\n".join(entries) + "\n")
    source = ImageSourceDataset(path=str(root), split_lists=files).load()
    data, ingestion = DataParams(image_size=16, resize_ratio=0.8), IngestionParams()
    records, cache, summary = scan_collection(source, data, PreprocessingParams(), ingestion)
    manifest = split_records(records, ingestion)
    assert len(manifest) == len(cache) == 18
    assert summary["not_in_split_lists"] == 1
    assert (manifest["split_source"] == "official").all()
    by_path = manifest.set_index("rel_path")["split"]
    assert by_path["daphnia/daphnia_0.jpeg"] == "train"
    assert by_path["daphnia/daphnia_5.jpeg"] == "val"
    assert by_path["copepod/copepod_8.jpeg"] == "test"


def test_the_manifest_records_how_its_cache_was_made_and_keeps_it_on_disk(messy_folder, tmp_path):
    source = ImageSourceDataset(path=str(messy_folder)).load()
    data = DataParams(image_size=16, resize_ratio=0.8)
    settings = PreprocessingParams(fill=0)
    records, cache, _ = scan_collection(source, data, settings, IngestionParams(spool_dir=None))
    manifest = split_records(records, IngestionParams())
    path = str(tmp_path / "manifest.parquet")
    ManifestDataset(filepath=path).save(manifest)
    recorded = recorded_preprocessing(ManifestDataset(filepath=path).load())
    assert recorded == CachePreprocessing(cache_size=20, fill=0, colour="grey")
    assert recorded.cache_size == cache.shape[1]
    assert (cache[records["rel_path"] == "copepod/00.png"][0, 0] == 0).all()  # padded with 0
