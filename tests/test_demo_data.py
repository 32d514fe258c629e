"""Tests of the synthetic demo data generator and of the committed demo archives."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    from plankton_kedro import demo_data
except ImportError:  # package not installed: import from the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from plankton_kedro import demo_data

RAW = REPO_ROOT / "data" / "01_raw"


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("split", demo_data.SPLITS)
def test_committed_archive_matches_generator(split):
    path = RAW / demo_data.ARCHIVE_NAMES[split]
    assert path.is_file(), f"{path} missing: run python -m plankton_kedro.demo_data"
    generated = list(demo_data.iter_demo_images(split))
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [name for name, _ in generated]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert all(i.date_time == demo_data.ZIP_DATE_TIME for i in infos)
        for info, (name, image) in zip(infos, generated, strict=True):
            stored = Image.open(io.BytesIO(zf.read(info)))
            assert stored.mode == "L" and stored.size == image.size, name
            if split == "source":  # JPEG: compare with a fresh encoding, tolerate codec drift
                fresh = Image.open(io.BytesIO(demo_data.encode_image(image, "jpg")))
                assert np.abs(_pixels(stored) - _pixels(fresh)).mean() <= 1.0, name
            else:  # PNG is lossless
                assert np.array_equal(_pixels(stored), _pixels(image)), name


def test_archives_are_reproducible_and_small(tmp_path):
    first = demo_data.write_demo_archives(tmp_path / "a", seed=3, images_per_class=2)
    second = demo_data.write_demo_archives(tmp_path / "b", seed=3, images_per_class=2)
    for split in demo_data.SPLITS:
        assert first[split].read_bytes() == second[split].read_bytes()
        with zipfile.ZipFile(first[split]) as zf:
            names = zf.namelist()
        assert names == sorted(names) and len(names) == 20
        assert all(n.startswith(f"{split}/") for n in names)
    total = sum((RAW / name).stat().st_size for name in demo_data.ARCHIVE_NAMES.values())
    assert total <= 3_000_000


def test_same_image_twice_is_identical_and_seed_matters():
    a = demo_data.make_image("source", "copepod", 5, seed=0)
    b = demo_data.make_image("source", "copepod", 5, seed=0)
    c = demo_data.make_image("source", "copepod", 5, seed=1)
    assert a.size == b.size and np.array_equal(_pixels(a), _pixels(b))
    assert a.size != c.size or not np.array_equal(_pixels(a), _pixels(c))


def test_images_do_not_depend_on_each_other():
    few = dict(demo_data.iter_demo_images("target", images_per_class=2))
    alone = demo_data.make_image("target", "pteropod", 1)
    assert np.array_equal(_pixels(few["target/pteropod/pteropod_0002.png"]), _pixels(alone))


def test_classes():
    src, tgt = demo_data.SOURCE_CLASSES, demo_data.TARGET_CLASSES
    assert len(src) == len(set(src)) == 10 and len(tgt) == len(set(tgt)) == 10
    assert list(src) == sorted(src) and list(tgt) == sorted(tgt)
    assert len(set(src) & set(tgt)) == 8
    assert all(name.isidentifier() and name == name.lower() for name in src + tgt)
    with pytest.raises(ValueError):
        demo_data.make_image("source", "ctenophore", 0)
    with pytest.raises(ValueError):
        list(demo_data.iter_demo_images("validation"))


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def test_image_properties():
    looks = {}
    for split in demo_data.SPLITS:
        images = [img for _, img in demo_data.iter_demo_images(split, images_per_class=4)]
        assert all(img.mode == "L" for img in images)
        sizes = np.array([img.size for img in images])
        assert sizes.min() >= demo_data.MIN_SIDE and sizes.max() <= demo_data.MAX_SIDE
        assert len({tuple(s) for s in sizes}) > len(images) // 2  # sizes vary
        assert (sizes[:, 0] != sizes[:, 1]).mean() > 0.5  # mostly non-square
        looks[split] = np.array([np.median(_border(_pixels(img))) for img in images])
        # an object that stands out from the background in every image: darker on the
        # source's white, brighter on the target's black
        if split == "source":
            assert all(_pixels(i).min() < np.median(_border(_pixels(i))) - 30 for i in images)
        else:
            assert all(_pixels(i).max() > np.median(_border(_pixels(i))) + 30 for i in images)
    assert looks["source"].min() >= 240
    assert looks["target"].max() <= 30


def test_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(demo_data.IMAGES_PER_CLASS, "source", 1)
    monkeypatch.setitem(demo_data.IMAGES_PER_CLASS, "target", 1)
    demo_data.main(["--out", str(tmp_path), "--seed", "7"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and "10 images" in out[0]
    assert (tmp_path / "demo_source.zip").is_file() and (tmp_path / "demo_target.zip").is_file()


@pytest.mark.parametrize(("split", "background"), [("source", "white"), ("target", "black")])
def test_each_demo_set_is_padded_with_its_own_background(split, background):
    """The source shows dark objects on white, the target bright objects on black; with the
    default preprocessing the bands that make each image square match its background (white
    bands in the dark target cache would be the old bug)."""
    from plankton_kedro.datasets import ImageSourceDataset
    from plankton_kedro.engine.config import DataParams, IngestionParams, PreprocessingParams
    from plankton_kedro.pipelines.ingestion.nodes import scan_collection

    source = ImageSourceDataset(path=str(RAW / demo_data.ARCHIVE_NAMES[split])).load()
    ingestion = IngestionParams(workers=1, spool_dir=None)
    records, cache, summary = scan_collection(
        source, DataParams(image_size=32), PreprocessingParams(), ingestion
    )
    assert summary["preprocessing"]["background_shares"][background] == 1.0
    wide = (records["width"] >= 1.5 * records["height"]).to_numpy()
    bands = np.concatenate([cache[wide][:, :2], cache[wide][:, -2:]], axis=1).astype(int)
    assert wide.sum() >= 20
    if background == "black":
        assert bands.mean() < 30 and bands.max() < 80
    else:
        assert bands.mean() > 230 and bands.min() > 180
