"""Export predictions in EcoTaxa's import format (https://ecotaxa.obs-vlfr.fr).

What EcoTaxa reads (its import help, ``ecotaxa_front: appli/templates/v2/help/
_help_jobs_prepare_data.html``, and its importer, ``ecotaxa_back: py/BO/TSVFile.py``,
``py/BO/Bundle.py``, ``py/BO/Mappings.py``, ``py/BO/Image.py``):

* a tab-separated file named ``ecotaxa*.tsv`` (or ``.txt``): line 1 the column names, line 2
  one type code per column, ``[f]`` (float) or ``[t]`` (text), then one line per image;
* column names are ``<level>_<field>``, lower case, level ``img``, ``object``, ``sample``,
  ``acq`` or ``process``; only ``img_file_name`` and ``object_id`` are mandatory; a project
  holds at most 500 ``[f]`` and 20 ``[t]`` free ``object_*`` columns, texts of 250 characters
  and ids / file names of 255;
* ``img_file_name`` is a path relative to the TSV (sub-folders allowed); the image must be
  PNG, JPEG or GIF in colour or 8-bit grey (EcoTaxa refuses TIFF, BMP…, and shows 16-bit
  grey badly: its own thumbnails clip it);
* ``object_annotation_status`` ``predicted`` needs an ``object_annotation_category`` (a taxon
  name, ``Name<Parent`` when ambiguous); a category needs a status. Names it does not find
  are listed for the user to map during the import;
* the file is read as Latin-1 unless it starts with a UTF-8 byte-order mark, so we write
  UTF-8 *with* the mark (taxon and file names with accents stay intact).

Our choices: a rejected image (label ``unknown``) gets no category and no status, so it
lands in EcoTaxa as *unclassified* (to be sorted by hand) rather than under a made-up
taxon; ``object_model_label`` keeps our label (``unknown`` included) and the top-k labels and
probabilities go into ``object_top<k>_label`` / ``object_top<k>_probability``, all
filterable in EcoTaxa. Object ids are derived from the image path alone, so the same image
always gets the same id (EcoTaxa can then skip or update it on a second import).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from plankton_kedro.engine.collection import imaging
from plankton_kedro.engine.errors import PlanktonUserError
from plankton_kedro.engine.rejection import UNKNOWN

PREDICTED = "predicted"
FLOAT, TEXT = "[f]", "[t]"
TSV_ENCODING = "utf-8-sig"  # EcoTaxa reads Latin-1 unless the file starts with this BOM
TAXONOMY_COLUMNS = ("label", "ecotaxa_name")

# EcoTaxa's limits (ecotaxa_back: DB/Object.py, DB/Image.py; import help page)
MAX_ID_LENGTH = 255  # object_id, sample_id, img_file_name
MAX_TEXT_LENGTH = 250  # free [t] columns
MAX_FREE_TEXT_COLUMNS = 20  # free object_* [t] columns per project
MAX_FREE_FLOAT_COLUMNS = 500
# object_* columns EcoTaxa maps itself (not free columns).
PREDEFINED = {"object_id", "object_annotation_category", "object_annotation_status"}
COLUMN_NAME = re.compile(r"(img|object|sample|acq|process)_[a-z0-9_]+")
STATUSES = {"", PREDICTED, "validated", "dubious"}

# Image formats EcoTaxa accepts as they are, with the file extensions that name them.
DISPLAYABLE = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "GIF": (".gif",)}
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same export gives the same bytes


class EcoTaxaExportError(PlanktonUserError, ValueError):
    """A taxonomy table, a predictions table or an image that cannot be exported as asked."""


class ExportTable(NamedTuple):
    """The EcoTaxa table (one row per image, columns in EcoTaxa's names) and the labels
    that had no taxonomy mapping (kept as they are; the caller should report them)."""

    table: pd.DataFrame
    unmapped: list[str]


def read_taxonomy(path: str | Path) -> dict[str, str]:
    """Read the user's table ``our label -> EcoTaxa taxon name``.

    Two columns, ``label`` and ``ecotaxa_name``, comma-separated (``.csv``) or tab-separated
    (``.tsv``/``.txt``, or any file whose first line holds a tab); an optional header row
    ``label,ecotaxa_name``; blank lines and lines starting with ``#`` are skipped; cells are
    stripped. Several labels may map to one taxon. Raises :class:`EcoTaxaExportError` naming
    the file and line for a missing file, a wrong column count, an empty cell or a label
    given twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EcoTaxaExportError(f"taxonomy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EcoTaxaExportError(f"taxonomy file {path} cannot be read: {exc}") from None
    lines = text.splitlines()
    tabbed = path.suffix.lower() in (".tsv", ".txt") or (bool(lines) and "\t" in lines[0])
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    rows = csv.reader(lines, delimiter="\t" if tabbed else ",")
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not mapping and not first_line and tuple(c.lower() for c in cells) == TAXONOMY_COLUMNS:
            continue  # the header
        where = f"taxonomy file {path}, line {number}"
        if len(cells) != 2:
            raise EcoTaxaExportError(
                f"{where}: expected 2 columns (label, ecotaxa_name), found {len(cells)}: {row}"
            )
        label, name = cells
        if not label or not name:
            raise EcoTaxaExportError(f"{where}: empty label or EcoTaxa name: {row}")
        if label in mapping:
            raise EcoTaxaExportError(
                f"{where}: label '{label}' is already mapped on line {first_line[label]}"
            )
        mapping[label], first_line[label] = name, number
    return mapping


def object_id(rel_path: str) -> str:
    """A stable, unique EcoTaxa ``object_id`` for an image path: the path without its
    extension in safe characters (letters, digits, ``_``, ``-``), then 10 hex digits of its
    SHA-1, which keep ``a/b.png``, ``a_b.png`` and ``a/b.tif`` apart."""
    stem = (
        str(PurePosixPath(rel_path).with_suffix("")) if PurePosixPath(rel_path).suffix else rel_path
    )
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:200] or "image"
    return f"{safe}_{hashlib.sha1(rel_path.encode('utf-8')).hexdigest()[:10]}"


def ecotaxa_table(
    predictions: pd.DataFrame, taxonomy: Mapping[str, str] | None = None
) -> ExportTable:
    """The EcoTaxa table of a ``predict`` output (``rel_path``, ``sample``, ``label``,
    ``probability``, ``top<k>_label``, ``top<k>_probability``).

    Labels go through ``taxonomy`` (our label -> EcoTaxa name); labels without a mapping keep
    our name and are returned in ``unmapped``. ``unknown`` rows get no category and no status
    (unclassified in EcoTaxa); the others are ``predicted``. Checked when written
    (:func:`write_zip`, :func:`write_tsv`).
    """
    missing = [c for c in ("rel_path", "sample", "label", "probability") if c not in predictions]
    if missing:
        raise EcoTaxaExportError(f"the predictions table lacks the column(s) {missing}")
    taxonomy = dict(taxonomy or {})
    predictions = predictions.reset_index(drop=True)
    paths = predictions["rel_path"].astype(str)
    labels = predictions["label"].astype(str)
    known = labels != UNKNOWN
    category = labels.map(lambda label: taxonomy.get(label, label)).where(known, "")
    unmapped = sorted(set(labels[known]) - set(taxonomy))
    table = pd.DataFrame(
        {
            "img_file_name": paths,
            "img_rank": 0,
            "object_id": paths.map(object_id),
            "object_annotation_category": category,
            "object_annotation_status": np.where(known, PREDICTED, ""),
            "sample_id": predictions["sample"].map(lambda s: "" if pd.isna(s) else str(s)),
            "object_model_label": labels,
            "object_probability": pd.to_numeric(predictions["probability"]).astype(float),
        }
    )
    ks = sorted(
        int(m.group(1))
        for c in predictions.columns
        if (m := re.fullmatch(r"top(\d+)_label", str(c)))
    )
    for k in ks:
        label_column = predictions[f"top{k}_label"]
        table[f"object_top{k}_label"] = label_column.map(lambda x: "" if pd.isna(x) else str(x))
        if f"top{k}_probability" in predictions:
            probability = pd.to_numeric(predictions[f"top{k}_probability"]).astype(float)
            table[f"object_top{k}_probability"] = probability
    return ExportTable(table, unmapped)


def column_types(table: pd.DataFrame) -> list[str]:
    """EcoTaxa's type code of each column: ``[f]`` for numbers, ``[t]`` for the rest."""
    return [
        FLOAT
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        else TEXT
        for dtype in table.dtypes
    ]


def check_table(table: pd.DataFrame) -> None:
    """Refuse a table EcoTaxa would refuse: bad column names, missing, repeated or too long
    ids, unsafe image paths, a status without a category (or the reverse), too many free
    columns. Raises :class:`EcoTaxaExportError`."""
    names = [str(c) for c in table.columns]
    bad = [n for n in names if not COLUMN_NAME.fullmatch(n)]
    if bad:
        raise EcoTaxaExportError(f"column names EcoTaxa does not accept: {bad}")
    for required in ("img_file_name", "object_id"):
        if required not in names:
            raise EcoTaxaExportError(f"an EcoTaxa table needs the column {required}")
    types = dict(zip(names, column_types(table), strict=True))
    free = [n for n in names if n.startswith("object_") and n not in PREDEFINED]
    for code, limit in ((TEXT, MAX_FREE_TEXT_COLUMNS), (FLOAT, MAX_FREE_FLOAT_COLUMNS)):
        if sum(types[n] == code for n in free) > limit:
            raise EcoTaxaExportError(f"EcoTaxa holds at most {limit} free {code} object columns")
    ids = table["object_id"].astype(str)
    if (ids == "").any() or ids.duplicated().any():
        raise EcoTaxaExportError(
            f"object ids must be unique and non-empty: {sorted(set(ids[ids.duplicated()]))[:5]}"
        )
    for path in table["img_file_name"].astype(str):
        _check_member_name(path)
    for column in ("object_id", "sample_id", "img_file_name"):
        if column in table and (table[column].astype(str).str.len() > MAX_ID_LENGTH).any():
            raise EcoTaxaExportError(f"{column} values longer than {MAX_ID_LENGTH} characters")
    for name in free:
        if types[name] == TEXT and (table[name].astype(str).str.len() > MAX_TEXT_LENGTH).any():
            raise EcoTaxaExportError(f"{name} values longer than {MAX_TEXT_LENGTH} characters")
    if "object_annotation_status" in table:
        status = table["object_annotation_status"].fillna("").astype(str)
        category = table.get("object_annotation_category", pd.Series("", index=table.index))
        has_category = category.fillna("").astype(str) != ""
        if not status.isin(STATUSES).all():
            raise EcoTaxaExportError(f"annotation statuses must be one of {sorted(STATUSES)}")
        if ((status != "") != has_category).any():
            raise EcoTaxaExportError("a category needs a status and a status needs a category")


def write_tsv(table: pd.DataFrame, stream: IO[bytes]) -> None:
    """Write ``table`` as an EcoTaxa TSV: header, the type row, one row per image (UTF-8
    with BOM, missing values empty)."""
    check_table(table)
    text = io.TextIOWrapper(stream, encoding=TSV_ENCODING, newline="")
    try:
        writer = csv.writer(text, delimiter="\t", lineterminator="\n")
        writer.writerow([str(c) for c in table.columns])
        types = column_types(table)
        writer.writerow(types)
        for row in table.itertuples(index=False, name=None):
            writer.writerow([_cell(v, t) for v, t in zip(row, types, strict=True)])
        text.flush()
    finally:
        text.detach()  # the caller owns the stream


def read_tsv(stream: IO[bytes]) -> pd.DataFrame:
    """Read an EcoTaxa TSV (header, type row, rows): ``[f]`` columns as floats, ``[t]`` as
    strings (empty for missing); the type codes are kept in ``attrs["ecotaxa_types"]``."""
    raw = pd.read_csv(stream, sep="\t", dtype=str, keep_default_na=False, encoding=TSV_ENCODING)
    if raw.empty and not len(raw.columns):
        raise EcoTaxaExportError("an EcoTaxa TSV needs a header row and a type row")
    types = raw.iloc[0].tolist() if len(raw) else []
    if any(t not in (FLOAT, TEXT) for t in types) or len(types) != len(raw.columns):
        raise EcoTaxaExportError(f"the second line of an EcoTaxa TSV holds [f]/[t] codes: {types}")
    table = raw.iloc[1:].reset_index(drop=True)
    for column, code in zip(raw.columns, types, strict=True):
        if code == FLOAT:
            table[column] = pd.to_numeric(table[column].replace("", np.nan))
    table.attrs["ecotaxa_types"] = dict(zip(raw.columns, types, strict=True))
    return table


def write_zip(
    table: pd.DataFrame,
    images: Iterable[tuple[str, bytes]],
    stream: IO[bytes],
    *,
    tsv_name: str,
    bit_depth: int | None = None,
) -> None:
    """Write an EcoTaxa import archive: the images of ``table``'s rows under their paths,
    then the TSV at the top (so ``img_file_name`` is relative to it).

    ``images`` is read once, one image at a time, straight into the archive: images of no
    row are skipped, a repeated path is written once, and a row whose image never comes is
    an error. Images EcoTaxa cannot show (TIFF, BMP, WebP, 16-bit, CMYK…) become PNG (16-bit
    grey scaled by ``bit_depth``, default 16 bits) and the row's ``img_file_name`` follows.
    """
    check_table(table)
    if not (tsv_name.startswith("ecotaxa") and tsv_name.endswith(".tsv")) or "/" in tsv_name:
        raise EcoTaxaExportError(f"EcoTaxa only reads a TSV named ecotaxa*.tsv, not '{tsv_name}'")
    wanted = set(table["img_file_name"].astype(str))
    taken = set(wanted) | {tsv_name}
    stored: dict[str, str] = {}
    with zipfile.ZipFile(stream, mode="w") as archive:
        for rel_path, data in images:
            if rel_path not in wanted or rel_path in stored:
                continue
            name, payload = displayable_image(rel_path, data, bit_depth=bit_depth)
            if name != rel_path:
                name = _free_name(rel_path, name, taken)
                taken.add(name)
            stored[rel_path] = name
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            archive.writestr(info, payload, compress_type=zipfile.ZIP_STORED)
        absent = sorted(wanted - set(stored))
        if absent:
            raise EcoTaxaExportError(
                f"{len(absent)} image(s) of the table never came from the image source, "
                f"e.g. {absent[:3]}"
            )
        out = table.copy()
        out["img_file_name"] = out["img_file_name"].astype(str).map(stored)
        buffer = io.BytesIO()
        write_tsv(out, buffer)
        info = zipfile.ZipInfo(tsv_name, date_time=_ZIP_DATE)
        archive.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def read_zip(stream: IO[bytes]) -> pd.DataFrame:
    """The table of the one ``ecotaxa*.tsv`` inside an export archive."""
    with zipfile.ZipFile(stream) as archive:
        tsvs = [
            n
            for n in archive.namelist()
            if PurePosixPath(n).name.startswith("ecotaxa") and n.endswith(".tsv")
        ]
        if len(tsvs) != 1:
            raise EcoTaxaExportError(f"expected one ecotaxa*.tsv in the archive, found {tsvs}")
        with archive.open(tsvs[0]) as member:
            return read_tsv(member)


def displayable_image(
    rel_path: str, data: bytes, *, bit_depth: int | None = None
) -> tuple[str, bytes]:
    """``(name, bytes)`` of an image as EcoTaxa can show it: PNG/JPEG/GIF in 8 bits are kept
    byte for byte (an extension that does not match the format is corrected; only the header
    is read); anything else is decoded and re-encoded as PNG under ``<stem>.png``, high bit
    depths scaled as for training (:func:`~plankton_kedro.engine.collection.imaging.eight_bit`:
    by ``bit_depth``, the instrument's, the same for every image)."""
    path = PurePosixPath(rel_path)
    try:
        header = Image.open(io.BytesIO(data), formats=imaging.FORMATS)
        extensions = DISPLAYABLE.get(header.format or "")
        if extensions and header.mode in EIGHT_BIT_MODES:
            kept = rel_path if path.suffix in extensions else str(path.with_suffix(extensions[0]))
            return kept, data
        img = imaging.eight_bit(imaging.load_image(data), bit_depth)
    except (imaging.ImageDecodeError, OSError) as exc:
        raise EcoTaxaExportError(f"{rel_path} cannot be read as an image: {exc}") from None
    if img.mode not in EIGHT_BIT_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return str(path.with_suffix(".png")), buffer.getvalue()


def _free_name(rel_path: str, name: str, taken: set[str]) -> str:
    """``name`` unless another row or image uses it, then ``<rel_path><new suffix>``."""
    if name not in taken:
        return name
    fallback = rel_path + PurePosixPath(name).suffix
    if fallback in taken:
        raise EcoTaxaExportError(f"no free name for the converted image {rel_path}")
    return fallback


def _check_member_name(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or "\\" in path or ".." in parts or "." in parts:
        raise EcoTaxaExportError(f"an image path must be relative and plain, not '{path}'")


def _cell(value: object, code: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if code == FLOAT:
        number = float(value)  # type: ignore[arg-type]
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)
