"""Ingestion nodes: scan + validate + cache, split, report."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.collection.provenance import CachePreprocessing, record_preprocessing
from plankton_kedro.engine.collection.scan import scan_images
from plankton_kedro.engine.collection.sources import ImageSource, MergedImageSource
from plankton_kedro.engine.collection.splits import (
    classes_missing_splits,
    keep_duplicates_together,
    split_from_lists,
    split_table,
    stratified_split,
)
from plankton_kedro.engine.config import DataParams, IngestionParams, SplitParams

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "rel_path",
    "label",
    "width",
    "height",
    "mode",
    "bytes",
    "sha1",
    "split",
    "split_source",
]


def scan_collection(
    images: ImageSource | MergedImageSource, data: DataParams, ingestion: IngestionParams
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Decode and validate every file once; return the usable images' records, their
    padded and resized uint8 pixels, and what was skipped and why."""
    started = time.perf_counter()
    progress = _ProgressLog(images.name)
    result = scan_images(
        images,
        size=data.cache_size,
        fill=data.fill,
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
        raise ValueError(
            f"{images.location}: no usable image found in {result.n_files} files; expected "
            "class folders of images ([top/]<class>/<image>). Skipped: "
            + "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
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
    record_preprocessing(records, CachePreprocessing(cache_size=data.cache_size, fill=data.fill))
    summary = {
        "source": {
            "location": str(images.location),
            "name": images.name,
            "kind": images.kind,
            "top_folder": images.top_folder,
        },
        "files_seen": result.n_files,
        "seconds": round(seconds, 2),
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
        "empty_classes": list(result.empty_classes),
        "layout": images.layout,
        "excluded_classes": result.excluded,
        "not_in_split_lists": len(images.unlisted),
        "outside_root": len(images.outside_root),
        "frame_crop": _frame_crop_summary(images, records),
    }
    if summary["frame_crop"] is not None:
        logger.info(
            "%s: scale bar found and removed in %d of %d images",
            images.name,
            summary["frame_crop"]["images_cropped"],
            len(records),
        )
    return records, result.images, summary


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
    """The manifest: one row per usable image with its stratified, seeded split
    (byte-identical files always share a split)."""
    split = ingestion.split
    official = records["official_split"] != ""
    if official.any():
        assigned, source = official_split(records, split)
    else:
        assigned = stratified_split(
            records["rel_path"], records["label"], val=split.val, test=split.test, seed=split.seed
        )
        assigned = keep_duplicates_together(assigned, records["rel_path"], records["sha1"])
        source = "stratified"
    part_column = records.attrs.get("part_column")
    columns = MANIFEST_COLUMNS + ([part_column] if part_column else [])
    manifest = records.assign(split=assigned, split_source=source)[columns]
    manifest = manifest.reset_index(drop=True)
    manifest.attrs["dataset"] = records.attrs.get("dataset")
    manifest.attrs["preprocessing"] = records.attrs.get("preprocessing")
    return manifest


def build_report(
    manifest: pd.DataFrame, summary: dict[str, Any], data: DataParams, ingestion: IngestionParams
) -> dict[str, Any]:
    """The ingestion report: counts per class and split, every skipped file and why,
    tiny classes and duplicate files."""
    table = split_table(manifest)
    split = ingestion.split
    tiny = classes_missing_splits(table, val=split.val, test=split.test)
    for label, note in tiny.items():
        logger.warning("%s: class '%s' %s", summary["source"]["name"], label, note)
    reasons = Counter(item["reason"].split(" (")[0] for item in summary["skipped"])
    return {
        **summary,
        "images": len(manifest),
        "classes": len(table),
        "skipped_count": len(summary["skipped"]),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "per_class": table,
        "split_totals": {s: int((manifest["split"] == s).sum()) for s in ("train", "val", "test")},
        "tiny_classes": tiny,
        "duplicates": _duplicates(manifest),
        "split_source": str(manifest["split_source"].iloc[0]) if len(manifest) else None,
        "settings": {
            "image_size": data.image_size,
            "cache_size": data.cache_size,
            "fill": data.fill,
            "split": split.model_dump(),
        },
    }


def official_split(records: pd.DataFrame, split: SplitParams) -> tuple[pd.Series, str]:
    """The data set's own split; without an official validation split, a stratified, seeded
    validation part is carved from the official train split (test is never touched)."""
    assigned = records["official_split"].copy()
    if (assigned == "val").any():
        return assigned, "official"
    train = assigned == "train"
    carved = stratified_split(
        records.loc[train, "rel_path"],
        records.loc[train, "label"],
        val=split.val / (split.train + split.val),
        test=0.0,
        seed=split.seed,
    )
    assigned.loc[train] = carved
    return assigned, "official (val carved from train)"


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
