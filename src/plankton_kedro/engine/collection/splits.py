"""Train/val/test splits: stratified and seeded, or the data set's official ones read from
split lists or a split table; never a class dropped, never a duplicate across splits."""

from __future__ import annotations

import zlib
from pathlib import Path
from posixpath import splitext

import numpy as np
import pandas as pd

from plankton_kedro.engine.errors import CollectionError

SPLITS = ("train", "val", "test")
CALIBRATION = "calibration"  # optional split carved from validation (ingestion.split.calibration)
# Spellings of official split names found in split tables.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def split_counts(n: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) counts for a class of ``n`` images.

    Rounded fractions, but every class keeps at least one training image, and a class of
    three or more images gets at least one validation and one test image when those
    fractions are non-zero. Two images: one train, one test (or val when test is 0).
    """
    if n <= 1:
        return n, 0, 0
    if n == 2:
        return (1, 0, 1) if test > 0 else (1, 1, 0) if val > 0 else (2, 0, 0)
    n_val = max(int(np.floor(n * val + 0.5)), 1 if val > 0 else 0)
    n_test = max(int(np.floor(n * test + 0.5)), 1 if test > 0 else 0)
    while n_val + n_test > n - 1:
        if n_val >= n_test and n_val > (1 if val > 0 else 0):
            n_val -= 1
        elif n_test > (1 if test > 0 else 0):
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(
    rel_paths: pd.Series, labels: pd.Series, *, val: float, test: float, seed: int
) -> pd.Series:
    """The split of each image, stratified by label and reproducible for ``seed``.

    Images are ordered by path before shuffling, so the result does not depend on the order
    in which a file system or an archive listed them.
    """
    frame = pd.DataFrame({"rel_path": rel_paths.to_numpy(), "label": labels.to_numpy()})
    result = pd.Series("train", index=rel_paths.index, dtype=object)
    rng = np.random.default_rng(seed)
    for label in sorted(frame["label"].unique()):
        members = frame.index[frame["label"] == label]
        ordered = members[np.argsort(frame.loc[members, "rel_path"].to_numpy(), kind="stable")]
        shuffled = ordered[rng.permutation(len(ordered))]
        n_train, n_val, _ = split_counts(len(shuffled), val, test)
        positions = rel_paths.index[shuffled]
        result.loc[positions[n_train : n_train + n_val]] = "val"
        result.loc[positions[n_train + n_val :]] = "test"
    return result


def carve_calibration(
    assigned: pd.Series, rel_paths: pd.Series, labels: pd.Series, *, share: float, seed: int
) -> pd.Series:
    """``assigned`` with ``share`` of each class's validation images (seeded, independent of
    listing order) moved to a ``calibration`` split; every class keeps one validation image."""
    result = assigned.copy()
    if share == 0:
        return result
    rng = np.random.default_rng(seed)
    in_val = assigned == "val"
    for label in sorted(labels[in_val].unique()):
        members = assigned.index[in_val & (labels == label)]
        ordered = members[np.argsort(rel_paths[members].to_numpy(), kind="stable")]
        shuffled = ordered[rng.permutation(len(ordered))]
        n_calibration = min(int(np.floor(len(shuffled) * share + 0.5)), len(shuffled) - 1)
        result.loc[shuffled[:n_calibration]] = CALIBRATION
    return result


def split_from_lists(rel_paths: pd.Series, lists: dict[str, list[str]]) -> pd.Series:
    """Each image's split from official file lists (``{split: [entries]}``), "" if unlisted.

    Lists often carry other path prefixes than the collection (``./data/…/class/img.jpg``),
    so an entry with a folder is matched on its last two components (``<class>/<file>``); an
    entry without one on the file name, or, without an extension, on the name's stem (an
    object id such as ZooScanNet's).
    """
    lookups: dict[str, dict[str, str]] = {"pair": {}, "name": {}, "stem": {}}
    for split, entries in lists.items():
        for entry in entries:
            entry = entry.strip().replace("\\", "/")
            if entry:
                kind = "pair" if "/" in entry else "name" if splitext(entry)[1] else "stem"
                lookups[kind][_last_two(entry) if kind == "pair" else entry] = split

    def split_of(path: str) -> str:
        name = path.rsplit("/", 1)[-1]
        return (
            lookups["pair"].get(_last_two(path))
            or lookups["name"].get(name)
            or lookups["stem"].get(splitext(name)[0], "")
        )

    return rel_paths.map(split_of)


def _last_two(path: str) -> str:
    return "/".join(path.split("/")[-2:])


def keep_duplicates_together(split: pd.Series, rel_paths: pd.Series, keys: pd.Series) -> pd.Series:
    """Put every group of identical files (same ``keys``, e.g. SHA-1) in one split: the split
    of the group's first path, so a copy in train never inflates a test score."""
    frame = pd.DataFrame({"split": split, "rel_path": rel_paths, "key": keys})
    duplicated = frame[frame.duplicated("key", keep=False)].sort_values("rel_path")
    first = duplicated.groupby("key")["split"].transform("first")
    result = split.copy()
    result.loc[first.index] = first
    return result


def split_table(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images per class and split: ``{label: {train, val, test, [calibration,] total}}``."""
    splits = [*SPLITS, *([CALIBRATION] if (manifest["split"] == CALIBRATION).any() else [])]
    table = pd.crosstab(manifest["label"], manifest["split"]).reindex(columns=splits, fill_value=0)
    return {
        str(label): {**{s: int(row[s]) for s in splits}, "total": int(row.sum())}
        for label, row in table.iterrows()
    }


def classes_missing_splits(
    table: dict[str, dict[str, int]], *, val: float, test: float
) -> dict[str, str]:
    """Classes too small to appear in every split they should, with what happened to them."""
    wanted = [s for s, fraction in (("val", val), ("test", test)) if fraction > 0]
    tiny = {}
    for label, counts in table.items():
        absent = [s for s in wanted if counts[s] == 0]
        if absent:
            tiny[label] = (
                f"only {counts['total']} image(s): kept in train"
                + (
                    f" and {', '.join(s for s in wanted if counts[s])}"
                    if len(absent) < len(wanted)
                    else ""
                )
                + f", none in {', '.join(absent)}"
            )
    return tiny


def read_split_table(path: str, key: str, split: str = "split") -> dict[str, list[str]]:
    """``{split: [image keys]}`` from a CSV table (``.csv`` or ``.csv.gz``) with one row per
    image: a ``key`` column (path, file name or file name without extension) and a ``split``
    column (train/val/test; training/valid/validation/testing are understood)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CollectionError(f"split_table: {path} does not exist")
    try:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CollectionError(f"split_table: {path} is not a readable CSV table ({exc})") from exc
    missing = [column for column in (key, split) if column not in table.columns]
    if missing:
        raise CollectionError(
            f"split_table: {path} has no column {missing}; its columns: {list(table.columns)}"
        )
    names = table[split].str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLIT_NAMES))
    if unknown:
        raise CollectionError(
            f"split_table: {path} column '{split}' has values {unknown[:5]} that are not "
            "train/val/test"
        )
    lists: dict[str, list[str]] = {}
    for entry, name in zip(table[key], names, strict=True):
        lists.setdefault(SPLIT_NAMES[name], []).append(entry)
    return lists


def read_split_lists(paths: dict[str, str]) -> dict[str, list[str]]:
    """``{split: [entries]}`` from official split list files (one image path per line)."""
    lists = {}
    for split, path in paths.items():
        if split not in SPLITS:
            raise CollectionError(f"split_lists: '{split}' is not one of {', '.join(SPLITS)}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise CollectionError(f"split_lists: the {split} list {path} does not exist")
        lists[split] = file.read_text(encoding="utf-8", errors="replace").splitlines()
    return lists


UNLABELLED = "unlabelled"  # train images left out by a label budget (never read by training)


def label_budget(manifest: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """``manifest`` with at most ``per_class`` train images of each class, the others moved to
    the split ``unlabelled``: as if only those had been annotated. Validation and test rows
    are untouched. The subsets are nested (the images kept for 5 are among those kept for 10)
    and drawn per class from ``seed``, independently of the other classes and of the row
    order; a class with fewer train images keeps them all. ``attrs["labels_per_class"]``
    records the budget."""
    if per_class < 1:
        raise ValueError(f"a label budget is at least 1 image per class, not {per_class}")
    train = manifest.index[manifest["split"].to_numpy() == "train"]
    kept = []
    for label, rows in manifest.loc[train].groupby("label", sort=True).groups.items():
        order = np.sort(manifest.loc[rows, "rel_path"].to_numpy(dtype=str))  # row-order free
        rng = np.random.default_rng([seed, zlib.crc32(str(label).encode())])
        chosen = set(rng.permutation(order)[:per_class])
        kept.extend(r for r in rows if manifest.at[r, "rel_path"] in chosen)
    budgeted = manifest.copy()
    budgeted.loc[train.difference(kept), "split"] = UNLABELLED
    budgeted.attrs = {**manifest.attrs, "labels_per_class": int(per_class)}
    return budgeted
