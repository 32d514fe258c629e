"""Each public-set adapter, configured exactly as docs/datasets.md says, ingests a small
synthetic archive shaped like the real set (tests/public_sets.py)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import AbstractDataset, DatasetError

from plankton_kedro.datasets import ImageSourceDataset
from plankton_kedro.engine.collection.frame_crop import FrameCrop, crop_frame
from plankton_kedro.engine.collection.imaging import pad_and_resize, to_rgb
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing
from plankton_kedro.engine.config import DataParams, IngestionParams, PreprocessingParams
from plankton_kedro.engine.modelling.classify import predict_files
from plankton_kedro.pipelines.ingestion.nodes import build_report, scan_collection, split_records
from tests.collection import public_sets

DOCS = Path(__file__).parents[2] / "docs" / "datasets.md"
DATA = DataParams(image_size=16, resize_ratio=0.8)
WHITE = 255  # the synthetic vignettes' background, which fill: auto pads with
INGESTION = IngestionParams(workers=2)


def documented_entries() -> dict[str, dict]:
    """``{section title: catalog entry}`` for every YAML catalog block of the public sets."""
    text = DOCS.read_text().split("## Public sets", 1)[1]
    entries = {}
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
            config = yaml.safe_load(block)
            name, entry = next(iter(config.items()))
            if name in ("source_images", "target_images"):
                entries[title] = entry
    return entries


ENTRIES = documented_entries()


def entry_for(title_start: str, raw: Path) -> dict:
    """The documented entry whose section title starts with ``title_start``, pointed at ``raw``
    instead of data/01_raw/."""
    (title,) = [t for t in ENTRIES if t.startswith(title_start)]

    def repoint(value):
        if isinstance(value, str):
            return value.replace("data/01_raw/", f"{raw}/")
        if isinstance(value, dict):
            return {k: repoint(v) for k, v in value.items()}
        return [repoint(v) for v in value] if isinstance(value, list) else value

    return repoint(ENTRIES[title])


def ingest(entry: dict):
    source = AbstractDataset.from_config("images", entry).load()
    records, cache, summary = scan_collection(source, DATA, PreprocessingParams(), INGESTION)
    manifest = split_records(records, INGESTION)
    return manifest, np.asarray(cache), build_report(manifest, summary, DATA, INGESTION)


def test_every_public_set_has_a_tested_catalog_entry():
    assert sorted(t.split(" ")[0] for t in ENTRIES) == sorted(
        ["NDSB", "ZooLake", "WHOI-Plankton", "WHOI-22", "ZooScanNet", "ZooScan-20"]
    )
    assert all(e["type"] == "plankton_kedro.datasets.ImageSourceDataset" for e in ENTRIES.values())


def test_ndsb_train_zip(tmp_path):
    public_sets.ndsb(tmp_path)
    manifest, cache, report = ingest(entry_for("NDSB", tmp_path))
    assert report["images"] == len(cache) == 3 * public_sets.PER_CLASS
    assert report["source"]["top_folder"] == "train"
    assert set(manifest["label"]) == {
        "acantharia_protist",
        "copepod_cyclopoid_oithona",
        "detritus_other",
    }
    assert (manifest["split_source"] == "stratified").all()


def test_zoolake_official_lists(tmp_path):
    archive = public_sets.zoolake(tmp_path)
    with zipfile.ZipFile(archive) as zipped:  # the docs' `unzip -j … -d data/01_raw/zoolake/`
        for member in zipped.namelist():
            if member.startswith("data/zoolake_train_test_val_separated/"):
                (archive.parent / Path(member).name).write_bytes(zipped.read(member))
    manifest, cache, report = ingest(entry_for("ZooLake", tmp_path))
    assert len(manifest) == len(cache) == 3 * public_sets.PER_CLASS
    assert report["not_in_split_lists"] == 1
    assert (manifest["split_source"] == "official").all()
    assert report["split_totals"] == {"train": 12, "val": 3, "test": 3}
    assert set(manifest["label"]) == {"daphnia", "copepod", "rotifers"}


def test_whoi_yearly_archives_merge_with_a_year_column_and_exact_exclusion(tmp_path):
    public_sets.whoi_years(tmp_path, years=(2006, 2007))
    manifest, cache, report = ingest(entry_for("WHOI-Plankton", tmp_path))
    kept = {"dinoflagellate", "flagellate", "Thalassiosira"}
    assert set(manifest["label"]) == kept
    assert report["excluded_classes"] == {"Ciliate_mix": 12, "mix": 12}
    assert manifest.groupby("year").size().to_dict() == {"2006": 18, "2007": 18}
    assert manifest["rel_path"].str.match(r"^200[67]/").all()
    assert len(cache) == 36 and report["skipped"] == []


def test_whoi22_official_halves(tmp_path):
    public_sets.whoi22(tmp_path)
    manifest, _, report = ingest(entry_for("WHOI-22", tmp_path))
    assert report["split_source"] == "official (val carved from train)"
    official_test = manifest["rel_path"].str.startswith("test/")
    assert (manifest.loc[official_test, "split"] == "test").all()
    assert (manifest.loc[~official_test, "split"] != "test").all()
    assert report["split_totals"]["val"] > 0


def test_zooscannet_root_and_split_table(tmp_path):
    public_sets.zooscannet(tmp_path)
    manifest, cache, report = ingest(entry_for("ZooScanNet", tmp_path))
    assert len(cache) == 3 * public_sets.PER_CLASS
    assert report["outside_root"] == 1  # taxa.csv, not read
    assert report["skipped"] == []
    assert (manifest["split_source"] == "official").all()
    assert report["split_totals"] == {"train": 12, "val": 3, "test": 3}
    assert set(manifest["label"]) == {"Calanoida", "Chaetognatha", "detritus"}


def test_zooscan20_scale_bar_is_cropped_away(tmp_path):
    public_sets.zooscan20(tmp_path)
    manifest, cache, report = ingest(entry_for("ZooScan-20", tmp_path))
    assert report["frame_crop"] == {
        "templates": ["zooscan"],
        "threshold": 0.8,
        "images_cropped": 3 * public_sets.PER_CLASS,
        "images_without_match": 0,
    }
    first = manifest.index[manifest["rel_path"] == "Appendicularia/Appendicularia_0.png"][0]
    expected = pad_and_resize(to_rgb(public_sets.tight_organism(0, 0)), DATA.cache_size, WHITE)
    np.testing.assert_array_equal(cache[first], expected)


def test_frame_crop_leaves_images_without_a_bar_unchanged_and_finds_the_bar_anywhere():
    crop = FrameCrop.from_setting("zooscan")
    plain = public_sets.framed(public_sets.tight_organism(1, 2), bar=False)
    assert crop_frame(plain, crop) == (plain, False)
    moved = public_sets.framed(public_sets.tight_organism(1, 2), bar=False)
    moved.paste(public_sets.scale_bar(), (moved.width - 86, moved.height - 28))  # right
    cropped, found = crop_frame(moved, crop)
    assert found and cropped.size == (90, 40)


def test_frame_crop_accepts_own_templates_and_names_a_missing_one(tmp_path):
    mine = tmp_path / "bar.png"
    public_sets.scale_bar().save(mine)
    assert FrameCrop.from_setting({"templates": [str(mine)], "threshold": 0.9}).threshold == 0.9
    with pytest.raises(DatasetError, match="template .*missing.png does not exist"):
        ImageSourceDataset(path=str(tmp_path), frame_crop={"templates": ["missing.png"]}).load()


def test_glob_without_match_and_bad_split_table_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no folder or archive matches"):
        ImageSourceDataset(path=str(tmp_path / "whoi" / "*.zip")).load()
    _, table = public_sets.zooscannet(tmp_path)
    with pytest.raises(DatasetError, match="has no column \\['split'\\]"):
        ImageSourceDataset(
            path=str(tmp_path), split_table={"path": str(table), "key": "objid"}
        ).load()
    bad = tmp_path / "bad.csv"
    bad.write_text("objid,set\n1,holdout\n")
    with pytest.raises(DatasetError, match="'holdout'.* not train/val/test"):
        ImageSourceDataset(
            path=str(tmp_path), split_table={"path": str(bad), "key": "objid", "split": "set"}
        ).load()


def test_merged_parts_need_distinct_names(tmp_path):
    for folder in ("a", "b"):
        public_sets.whoi_years(tmp_path / folder, years=(2006,))
    paths = [str(tmp_path / folder / "whoi" / "2006.zip") for folder in ("a", "b")]
    with pytest.raises(DatasetError, match="repeated: \\['2006'\\]"):
        ImageSourceDataset(path=paths).load()


class _RecordingClassifier:
    """Stands in for engine.predict.Classifier: keeps the pixels it is given."""

    preprocessing = CachePreprocessing(cache_size=DATA.cache_size)
    threshold, thresholds, class_names = None, None, ["a", "b"]

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images)
        return np.tile([[0.75, 0.25]], (len(images), 1)), np.zeros((len(images), 4))


def test_predict_crops_the_scale_bar_like_ingestion(tmp_path):
    vignette = public_sets.encode(public_sets.framed(public_sets.tight_organism(2, 1)), "PNG")
    classifier = _RecordingClassifier()
    crop = FrameCrop.from_setting("zooscan")
    result = predict_files(classifier, [("cast/1.png", vignette)], workers=1, frame_crop=crop)
    assert result.predictions["label"].tolist() == ["a"]
    expected = pad_and_resize(to_rgb(public_sets.tight_organism(2, 1)), DATA.cache_size, WHITE)
    np.testing.assert_array_equal(classifier.seen[0][0], expected)


@pytest.mark.slow
@pytest.mark.parametrize("env", [[], ["--env", "paper"]], ids=["default", "paper"])
def test_documented_entries_drive_a_kedro_ingestion_run(tmp_path, env):
    """WHOI yearly archives as source, WHOI-22 as target, from conf/local/catalog.yml exactly as
    documented: `kedro run --pipelines=ingestion` (and with the paper's recipe, `--env paper`,
    which must not fall back to the bundled demo) ingests them, with the year column."""
    from tests.conftest import copy_project
    from tests.test_kedro_run import kedro, latest, latest_json

    project = copy_project(tmp_path / "project")
    raw = project / "data" / "01_raw"
    public_sets.whoi_years(raw, years=(2006, 2007))
    public_sets.whoi22(raw)
    local = {
        "source_images": ENTRIES["WHOI-Plankton yearly archives (2006–2014), merged"],
        "target_images": ENTRIES["WHOI-22 (official train/test halves)"],
    }
    (project / "conf" / "local").mkdir(exist_ok=True)
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(local))
    result = kedro(project, "--pipelines=ingestion", *env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    source = latest_json(project, "data/08_reporting/source/ingestion_report.json")["source"]
    assert "2006.zip" in source["location"] and "2007.zip" in source["location"]
    assert "demo" not in source["location"]
    manifest = pd.read_parquet(latest(project, "data/03_primary/source/manifest.parquet"))
    assert manifest.groupby("year").size().to_dict() == {"2006": 18, "2007": 18}
    report = latest_json(project, "data/08_reporting/target/ingestion_report.json")
    assert report["split_source"] == "official (val carved from train)"
