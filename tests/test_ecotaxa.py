"""EcoTaxa export: the archive and TSV follow EcoTaxa's import format (as its importer,
ecotaxa_back ``py/BO/TSVFile.py``, reads it), images are displayable, taxonomy errors are
clear."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError, Version
from PIL import Image

from plankton_kedro.datasets import EcoTaxaExportDataset
from plankton_kedro.engine import ecotaxa
from plankton_kedro.engine.collection.imaging import load_image, to_rgb
from plankton_kedro.engine.ecotaxa import EcoTaxaExportError

COLUMN = re.compile(r"(img|object|sample|acq|process)_[a-z0-9_]+")
FLOAT_COLUMNS = {"img_rank", "object_probability"} | {f"object_top{k}_probability" for k in (1, 2)}


def _png(mode: str = "RGB", size=(6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 90).save(buffer, "PNG")
    return buffer.getvalue()


def _tiff_rgb() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 100, 50)).save(buffer, "TIFF")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 5), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


SIXTEEN_BIT = np.array([[0, 4095, 32896, 65535]], dtype=np.uint16)


def _sixteen_bit(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(SIXTEEN_BIT).save(buffer, fmt)
    return buffer.getvalue()


IMAGES = {
    "s1/copepod_1.png": _png(),
    "s1/deep/sub/diatom_2.jpg": _jpeg(),  # a sub-folder path
    "s2/detritus_3.tif": _sixteen_bit("TIFF"),  # EcoTaxa refuses TIFF: converted to PNG
    "s2/raw16.png": _sixteen_bit("PNG"),  # 16-bit PNG: converted, same name
    "s2/colour.tif": _tiff_rgb(),  # 8-bit colour TIFF: EcoTaxa refuses TIFF, converted
    "s2/blob.tif": _png("L"),  # a PNG named .tif, rejected by the model ("unknown")
}
EXTRA = {"s2/not_predicted.png": _png(), "notes.txt": b"not an image"}


def _predictions() -> pd.DataFrame:
    rows = [
        ("s1/copepod_1.png", "s1", "copepod", 0.9, "copepod", "diatom", 0.05),
        ("s1/deep/sub/diatom_2.jpg", "s1", "diatom", 0.8, "diatom", "copepod", 0.1),
        ("s2/detritus_3.tif", "Bañyuls", "detritus", 0.7, "detritus", "diatom", 0.2),
        ("s2/raw16.png", "Bañyuls", "copepod", 0.6, "copepod", "detritus", 0.3),
        ("s2/blob.tif", "Bañyuls", "unknown", 0.4, "diatom", "copepod", 0.35),
        ("s2/colour.tif", "s1", "diatom", 0.5, "diatom", "copepod", 0.3),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "rel_path",
            "sample",
            "label",
            "probability",
            "top1_label",
            "top2_label",
            "top2_probability",
        ],
    )
    frame.insert(5, "top1_probability", frame["probability"])
    return frame


@pytest.fixture
def taxonomy_file(tmp_path):
    path = tmp_path / "taxonomy.csv"
    path.write_text("label,ecotaxa_name\n# our classes\ncopepod,Copepoda\ndiatom,Bacillariophyta\n")
    return path


@pytest.fixture
def export(tmp_path, taxonomy_file):
    """A zip export through the dataset; returns (zip path, table, unmapped, factory calls)."""
    taxonomy = ecotaxa.read_taxonomy(taxonomy_file)
    table, unmapped = ecotaxa.ecotaxa_table(_predictions(), taxonomy)
    calls = []

    def images():
        calls.append(1)
        yield from {**IMAGES, **EXTRA}.items()

    dataset = EcoTaxaExportDataset(filepath=str(tmp_path / "predictions.zip"))
    dataset.save({"table": table, "images": images})
    return tmp_path / "predictions.zip", table, unmapped, calls


def _as_ecotaxa_reads(data: bytes) -> list[dict[str, str]]:
    """EcoTaxa's reading (TSVFile.open): Latin-1 unless a UTF-8 BOM, tab-separated, header
    then the type row; returns [type row, rows...] as dicts."""
    text = data.decode("latin_1")
    if text[:3] == "ï»¿":
        text = data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quotechar='"'))


def test_zip_export_follows_the_ecotaxa_format(export):
    """Catches: no type row, a wrong type code, a TSV EcoTaxa would not find, a converted
    image the TSV still names by its old name, images of no row, statuses without a
    category, repeated object ids."""
    path, _, _, calls = export
    assert calls == [1]  # the image factory is called once, at write time
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        tsvs = [n for n in names if n.endswith(".tsv")]
        assert tsvs == ["ecotaxa_predictions.tsv"]  # at the top, named ecotaxa*.tsv
        data = archive.read(tsvs[0])
        lines = data.decode("utf-8-sig").split("\n")
        header = lines[0].split("\t")
        assert all(COLUMN.fullmatch(c) for c in header), header
        assert {"img_file_name", "object_id", "sample_id", "object_annotation_status"} <= set(
            header
        )
        assert lines[1].split("\t") == ["[f]" if c in FLOAT_COLUMNS else "[t]" for c in header]
        rows = _as_ecotaxa_reads(data)
        types, rows = rows[0], rows[1:]
        assert len(rows) == len(IMAGES)
        for column, code in types.items():
            values = [r[column] for r in rows if r[column] != ""]
            if code == "[f]":
                assert all(np.isfinite(float(v)) for v in values), column
        by_model_label = {r["object_model_label"]: r for r in rows}
        assert by_model_label["unknown"]["object_annotation_status"] == ""
        assert by_model_label["unknown"]["object_annotation_category"] == ""
        for row in rows:
            if row["object_model_label"] != "unknown":
                assert row["object_annotation_status"] == "predicted"
                assert row["object_annotation_category"] != ""
        ids = [r["object_id"] for r in rows]
        assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
        assert {r["sample_id"] for r in rows} == {"s1", "Bañyuls"}  # UTF-8 read intact
        files = [r["img_file_name"] for r in rows]
        assert sorted(files) == sorted(n for n in names if n not in tsvs)  # no extra image
        for name in files:
            with Image.open(io.BytesIO(archive.read(name))) as img:
                assert img.format in ("PNG", "JPEG", "GIF") and img.mode in ("L", "RGB")
                assert name.endswith({"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif"}[img.format])
        assert {"s2/detritus_3.png", "s2/colour.png", "s2/blob.png"} <= set(files)
        assert "s1/deep/sub/diatom_2.jpg" in files
        assert archive.read("s1/copepod_1.png") == IMAGES["s1/copepod_1.png"]  # kept as is


def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(export):
    """Catches 16-bit grey clipped at 255 (nearly all white) or cast (wrapped) to 8 bits."""
    path, _, _, _ = export
    with zipfile.ZipFile(path) as archive:
        for name in ("s2/detritus_3.png", "s2/raw16.png"):
            pixels = np.asarray(Image.open(io.BytesIO(archive.read(name))))
            assert pixels.dtype == np.uint8
            assert pixels.tolist() == [[0, 16, 128, 255]]


def test_taxonomy_maps_labels_and_reports_the_unmapped(export):
    _, table, unmapped, _ = export
    assert unmapped == ["detritus"]
    category = dict(
        zip(table["object_model_label"], table["object_annotation_category"], strict=True)
    )
    assert category == {
        "copepod": "Copepoda",
        "diatom": "Bacillariophyta",
        "detritus": "detritus",  # kept as is
        "unknown": "",
    }


def test_the_dataset_loads_and_previews_the_table_with_the_converted_names(export):
    path, table, _, _ = export
    dataset = EcoTaxaExportDataset(filepath=str(path))
    loaded = dataset.load()
    assert list(loaded.columns) == list(table.columns)
    assert loaded["object_probability"].tolist() == pytest.approx(table["object_probability"])
    assert "s2/detritus_3.png" in set(loaded["img_file_name"])
    preview = dataset.preview(nrows=2)
    assert preview["columns"] == list(table.columns) and len(preview["data"]) == 2


def test_a_row_without_its_image_fails_and_leaves_no_file(tmp_path):
    """Catches an archive EcoTaxa would refuse ('Missing Image') written anyway."""
    table, _ = ecotaxa.ecotaxa_table(_predictions())
    images = {k: v for k, v in IMAGES.items() if k != "s2/raw16.png"}
    dataset = EcoTaxaExportDataset(filepath=str(tmp_path / "export.zip"))
    with pytest.raises(DatasetError, match="raw16"):
        dataset.save({"table": table, "images": lambda: iter(images.items())})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="needs the images"):
        dataset.save({"table": table})


def test_tsv_form_round_trip_versioned_and_name_checked(tmp_path):
    table, _ = ecotaxa.ecotaxa_table(_predictions())
    path = str(tmp_path / "ecotaxa_run.tsv")
    EcoTaxaExportDataset(filepath=path, version=Version(None, "v1")).save({"table": table})
    loaded = EcoTaxaExportDataset(filepath=path, version=Version(None, None)).load()
    assert loaded["img_file_name"].tolist() == table["img_file_name"].tolist()
    assert loaded.attrs["ecotaxa_types"]["object_top2_probability"] == "[f]"
    with pytest.raises(DatasetError, match="ecotaxa"):
        EcoTaxaExportDataset(filepath=str(tmp_path / "predictions.tsv"))


def test_object_ids_are_stable_safe_and_distinct():
    """Catches an id that changes between runs or releases (Python's salted ``hash``, another
    digest): EcoTaxa matches a re-imported image to its object by this id."""
    paths = ["a/b.png", "a_b.png", "a/b.tif", "é è/x y.png"]
    ids = [ecotaxa.object_id(p) for p in paths]
    assert ids[0] == "a_b_7f9c894b6f"  # fixed once: the same in every run and release
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("label,ecotaxa_name\ncopepod,Copepoda,extra\n", 2, "expected 2 columns"),
        ("copepod,Copepoda\ndiatom\n", 2, "expected 2 columns"),
        ("copepod,Copepoda\n\ncopepod,Calanoida\n", 3, "already mapped on line 1"),
        ("copepod,\n", 1, "empty"),
    ],
)
def test_taxonomy_errors_name_the_file_and_line(tmp_path, content, line, reason):
    path = tmp_path / "taxa.csv"
    path.write_text(content)
    with pytest.raises(EcoTaxaExportError, match=reason) as error:
        ecotaxa.read_taxonomy(path)
    assert str(path) in str(error.value) and f"line {line}" in str(error.value)


def test_taxonomy_missing_file_and_tab_separated(tmp_path):
    with pytest.raises(EcoTaxaExportError, match="does not exist") as error:
        ecotaxa.read_taxonomy(tmp_path / "nope.csv")
    assert "nope.csv" in str(error.value)
    path = tmp_path / "taxa.tsv"
    path.write_text("copepod\tCalanus<Calanidae\ndiatom, big\tBacillariophyta\n")
    assert ecotaxa.read_taxonomy(path) == {
        "copepod": "Calanus<Calanidae",
        "diatom, big": "Bacillariophyta",
    }


def test_exported_high_bit_depth_images_look_as_the_model_saw_them(tmp_path):
    """Catches an export that scales 12-bit or float images otherwise than training did: the
    instrument's bit depth lost on the way to the dataset (16-bit scale), or floats stretched
    to the full range instead of kept."""
    twelve = np.array([[0, 1000, 4095, 5000]], dtype=np.uint16)  # one value above 12 bits
    floats = np.array([[0.0, 50.0, 100.0]], dtype=np.float32)
    images = {}
    for name, pixels in (("s/twelve.png", twelve), ("s/floats.tif", floats)):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG" if name.endswith(".png") else "TIFF")
        images[name] = buffer.getvalue()
    predictions = pd.DataFrame(
        {"rel_path": list(images), "sample": "s", "label": "copepod", "probability": 0.9}
    )
    table, _ = ecotaxa.ecotaxa_table(predictions)
    path = tmp_path / "export.zip"
    EcoTaxaExportDataset(filepath=str(path)).save(
        {"table": table, "images": lambda: images.items(), "bit_depth": 12}
    )
    with zipfile.ZipFile(path) as archive:
        for name, data in images.items():
            exported = np.asarray(Image.open(io.BytesIO(archive.read(f"{name[:-4]}.png"))))
            as_trained = np.asarray(to_rgb(load_image(data), bit_depth=12))[..., 0]
            np.testing.assert_array_equal(exported, as_trained)
