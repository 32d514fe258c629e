"""Ingestion nodes: scan + validate + cache, split (with data hygiene), report."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.collection.earlier import EarlierIngestions
from plankton_kedro.engine.collection.fingerprint import ingestion_fingerprint
from plankton_kedro.engine.collection.hygiene import EXCLUDED, assign_splits
from plankton_kedro.engine.collection.layouts import nothing_usable
from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    background_kind,
    record_preprocessing,
    recorded_preprocessing,
)
from plankton_kedro.engine.collection.scan import scan_images
from plankton_kedro.engine.collection.sources import ImageSource, MergedImageSource
from plankton_kedro.engine.collection.splits import (
    classes_missing_splits,
    split_from_lists,
    split_table,
)
from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    PreprocessingParams,
)
from plankton_kedro.engine.errors import CollectionError

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
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


def scan_collection(
    images: ImageSource | MergedImageSource,
    data: DataParams,
    preprocessing: PreprocessingParams,
    ingestion: IngestionParams,
    earlier_ingestions: EarlierIngestions | None = None,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Decode and validate every file once; return the usable images' records, their
    padded and resized uint8 pixels (``preprocessing`` being this collection's settings), and
    what was skipped and why. An earlier ingestion with the same fingerprint (same listing,
    same settings) in ``earlier_ingestions`` is returned instead, without decoding
    (``ingestion.reuse``)."""
    fingerprint = ingestion_fingerprint(
        images, {"cache_size": data.cache_size, "preprocessing": preprocessing.model_dump()}
    )
    reusable = ingestion.reuse and earlier_ingestions is not None
    earlier = earlier_ingestions.find(fingerprint) if reusable else None
    if earlier is not None:
        logger.info(
            "%s: already ingested with the same files and settings: reusing %s "
            "(%d images; no decoding, the %.1f s it took are saved)",
            images.name,
            earlier.version,
            len(earlier.records),
            earlier.summary.get("seconds", 0.0),
        )
        summary = {**earlier.summary, "source": _source_summary(images)}
        return earlier.records, earlier.images, {**summary, "reused_from": earlier.version}
    started = time.perf_counter()
    progress = _ProgressLog(images.name)
    settings = CachePreprocessing.from_settings(data.cache_size, preprocessing.model_dump())
    result = scan_images(
        images,
        preprocessing=settings,
        workers=ingestion.workers,
        progress=progress,
        spool_dir=_existing(ingestion.spool_dir),
        layout=images.layout,
        exclude_classes=images.exclude_classes,
        parted=images.part_column is not None,
        frame_crop=images.frame_crop,
    )
    seconds = time.perf_counter() - started
    logger.info(
        "%s: %d images usable, %d files skipped, %d empty class folders "
        "(%d files in %.1f s, %.0f files/s)",
        images.name,
        len(result.records),
        len(result.skipped),
        len(result.empty_classes),
        result.n_files,
        seconds,
        result.n_files / max(seconds, 1e-9),
    )
    if len(result.records) == 0:
        raise CollectionError(
            f"{nothing_usable(images.location, result.n_files, result.skipped)}; expected "
            "class folders of images ([top/]<class>/<image>)"
        )
    records = result.records.copy()
    if images.split_lists:  # unlisted files were never read (ImageSource.unlisted)
        records["official_split"] = split_from_lists(records["rel_path"], images.split_lists)
    if images.part_column is None:
        records = records.drop(columns="part")
    else:
        records = records.rename(columns={"part": images.part_column})
    records.attrs["dataset"] = images.name
    records.attrs["part_column"] = images.part_column
    applied = settings.resolved(colour_seen=bool(records["colour"].any()))
    record_preprocessing(records, applied)
    summary = {
        "source": _source_summary(images),
        "fingerprint": fingerprint,
        "reused_from": None,
        "files_seen": result.n_files,
        "seconds": round(seconds, 2),
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
        "empty_classes": list(result.empty_classes),
        "layout": images.layout,
        "excluded_classes": result.excluded,
        "not_in_split_lists": len(images.unlisted),
        "outside_root": len(images.outside_root),
        "frame_crop": _frame_crop_summary(images, records),
        "preprocessing": _preprocessing_summary(images.name, applied, records),
    }
    if summary["frame_crop"] is not None:
        logger.info(
            "%s: scale bar found and removed in %d of %d images",
            images.name,
            summary["frame_crop"]["images_cropped"],
            len(records),
        )
    return records, result.images, summary


def _source_summary(images: ImageSource | MergedImageSource) -> dict[str, Any]:
    return {
        "location": str(images.location),
        "name": images.name,
        "kind": images.kind,
        "top_folder": images.top_folder,
    }


def _frame_crop_summary(
    images: ImageSource | MergedImageSource, records: pd.DataFrame
) -> dict[str, Any] | None:
    """Which templates were looked for and in how many images one was found: a template
    that does not fit the collection's scale bar shows as few images cropped."""
    if images.frame_crop is None:
        return None
    cropped = int(records["frame_cropped"].sum())
    return {
        "templates": list(images.frame_crop.templates),
        "threshold": images.frame_crop.threshold,
        "images_cropped": cropped,
        "images_without_match": len(records) - cropped,
    }


def _existing(folder: str | None) -> str | None:
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
    return folder


def split_records(records: pd.DataFrame, ingestion: IngestionParams) -> pd.DataFrame:
    """The manifest: one row per usable image with its split, stratified and seeded or the
    data set's official one (byte-identical files share a split; copies under different
    labels are handled by ``ingestion.hygiene.conflicting_labels``)."""
    return _manifest(records, ingestion, source_keys=None)


def split_target_records(
    records: pd.DataFrame, source_manifest: pd.DataFrame, ingestion: IngestionParams
) -> pd.DataFrame:
    """The target's manifest, as :func:`split_records`, with its test images that are
    byte-identical to source images handled by ``ingestion.hygiene.source_overlap``."""
    return _manifest(records, ingestion, source_keys=source_manifest["sha1"])


def _manifest(
    records: pd.DataFrame, ingestion: IngestionParams, source_keys: pd.Series | None
) -> pd.DataFrame:
    assignment = assign_splits(
        records,
        ingestion.split,
        ingestion.hygiene,
        name=str(records.attrs.get("dataset")),
        source_keys=source_keys,
    )
    part_column = records.attrs.get("part_column")
    columns = MANIFEST_COLUMNS + ([part_column] if part_column else [])
    manifest = records.assign(
        split=assignment.split, split_source=assignment.source, exclusion=assignment.exclusion
    )[columns]
    manifest = manifest.reset_index(drop=True)
    manifest.attrs["dataset"] = records.attrs.get("dataset")
    manifest.attrs["preprocessing"] = records.attrs.get("preprocessing")
    manifest.attrs["hygiene"] = assignment.findings
    kept = manifest.loc[manifest["split"] != EXCLUDED, "label"].value_counts()
    if len(kept) < 2:
        only = f"only '{kept.index[0]}' ({kept.iloc[0]} images)" if len(kept) else "no image"
        excluded = int((manifest["split"] == EXCLUDED).sum())
        why = f", {excluded} left out by the data hygiene checks (ingestion.hygiene)" * bool(
            excluded
        )
        raise CollectionError(
            f"{manifest.attrs['dataset']}: {only} left after ingestion{why}; a classifier "
            "needs at least two classes (class folders of images: [top/]<class>/<image>)"
        )
    return manifest


def build_report(
    manifest: pd.DataFrame, summary: dict[str, Any], data: DataParams, ingestion: IngestionParams
) -> dict[str, Any]:
    """The ingestion report: counts per class and split, every skipped file and why, what
    preprocessing did (backgrounds found, settings), tiny classes, duplicate files and what
    the hygiene checks left out."""
    used = manifest[manifest["split"] != EXCLUDED]
    table = split_table(used)
    split = ingestion.split
    tiny = classes_missing_splits(table, val=split.val, test=split.test)
    for label, note in tiny.items():
        logger.warning("%s: class '%s' %s", summary["source"]["name"], label, note)
    reasons = Counter(item["reason"].split(" (")[0] for item in summary["skipped"])
    excluded = manifest.loc[manifest["split"] == EXCLUDED, "exclusion"].value_counts()
    recorded = recorded_preprocessing(manifest)
    return {
        **summary,
        "images": len(used),
        "classes": len(table),
        "skipped_count": len(summary["skipped"]),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "per_class": table,
        "split_totals": {
            s: int((manifest["split"] == s).sum())
            for s in ("train", "val", "test", "calibration")
            if s != "calibration" or (manifest["split"] == s).any()
        },
        "tiny_classes": tiny,
        "duplicates": _duplicates(manifest),
        "excluded": {str(reason): int(n) for reason, n in sorted(excluded.items())},
        "hygiene": manifest.attrs.get("hygiene", {}),
        "split_source": str(manifest["split_source"].iloc[0]) if len(manifest) else None,
        "settings": {
            "image_size": data.image_size,
            "cache_size": data.cache_size,
            "preprocessing": None if recorded is None else recorded.to_dict(),
            "split": split.model_dump(),
        },
    }


def _preprocessing_summary(
    name: str, applied: CachePreprocessing, records: pd.DataFrame
) -> dict[str, Any]:
    """The backgrounds the collection's images showed (after colour and inversion), how they
    were padded, and a warning when a fixed fill does not match them or high-bit-depth images
    use fewer bits than they are scaled by."""
    kinds = records["background"].map(background_kind).value_counts()
    total = max(len(records), 1)
    shares = {k: round(float(kinds.get(k, 0)) / total, 4) for k in ("white", "black", "grey")}
    bits = int(records["bits"].max()) if len(records) else 8
    summary = {
        "applied": applied.to_dict(),
        "background_shares": shares,
        "background_median": int(records["background"].median()) if len(records) else None,
        "colour_images": int(records["colour"].sum()),
        "max_bits_used": bits,
    }
    logger.info(
        "%s: backgrounds %s; padded with %s",
        name,
        ", ".join(f"{share:.0%} {kind}" for kind, share in shares.items() if share >= 0.005),
        applied.describe(),
    )
    if applied.fill != "auto" and len(records):
        fill = applied.fill if isinstance(applied.fill, int) else sum(applied.fill) / 3
        common = str(kinds.idxmax())
        if common != "grey" and background_kind(round(fill)) != common:
            logger.warning(
                "%s: %.0f%% of the images have a %s background but are padded with fill=%s; "
                "fill: auto pads each image with its own background",
                name,
                100 * shares[common],
                common,
                applied.fill,
            )
    if 8 < bits < (applied.bit_depth or 16):
        logger.warning(
            "%s: high-bit-depth images use at most %d bits but are scaled as %d-bit: set "
            "preprocessing.<set>.bit_depth: %d to use the whole 8-bit range",
            name,
            bits,
            applied.bit_depth or 16,
            bits,
        )
    return summary


def _duplicates(manifest: pd.DataFrame) -> list[dict[str, Any]]:
    """Groups of byte-identical files (they may inflate test scores or carry two labels)."""
    groups = manifest[manifest.duplicated("sha1", keep=False)].groupby("sha1", sort=True)
    return [
        {
            "paths": group["rel_path"].tolist(),
            "labels": sorted(group["label"].unique()),
            "splits": sorted(group["split"].unique()),
        }
        for _, group in groups
    ]


class _ProgressLog:
    """Logs ingestion progress at most every 5 seconds."""

    def __init__(self, name: str, every_seconds: float = 5.0):
        self.name, self.every = name, every_seconds
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            rate = done / (now - self.started)
            logger.info("%s: %d files read · %.0f files/s …", self.name, done, rate)
