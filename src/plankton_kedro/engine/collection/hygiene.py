"""Which split each image goes to, with the data hygiene that keeps evaluation honest.

Byte-identical files (same SHA-1) can mislead: one file filed under two labels teaches two
answers to one picture; a copy in train of a test image inflates the test score; a target test
image that is also in the source set has been seen by any model pre-trained on the source.
:func:`assign_splits` applies the policies of ``ingestion.hygiene`` to them and says what it
did. Images left out stay in the manifest and the cache (row-aligned) with the split
``excluded`` and the reason in ``exclusion``; nothing uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import pandas as pd

from plankton_kedro.engine.config import HygieneParams, SplitParams
from plankton_kedro.engine.errors import CollectionError

from .splits import carve_calibration, keep_duplicates_together, stratified_split

logger = logging.getLogger(__name__)

EXCLUDED = "excluded"
CONFLICTING = "identical file under another label"
COPY_OF_TEST = "copy of a test image"
IN_SOURCE = "identical to a source image"
MAX_NAMED = 5


@dataclass
class Assignment:
    """Each row's split (``excluded`` included), how the split was made, each row's reason
    for exclusion (``""`` when used), and what the hygiene checks found."""

    split: pd.Series
    source: str
    exclusion: pd.Series
    findings: dict[str, dict] = field(default_factory=dict)


def assign_splits(
    records: pd.DataFrame,
    split: SplitParams,
    hygiene: HygieneParams,
    *,
    name: str,
    source_keys: Collection[str] | None = None,
) -> Assignment:
    """Splits for ``records`` (official when they carry one, else stratified and seeded);
    ``source_keys``: the SHA-1s of the source set, when ``records`` are the target's."""
    exclusion = pd.Series("", index=records.index, dtype=object)
    findings = {"conflicting_labels": _conflicts(records, hygiene, name, exclusion)}
    usable = exclusion == ""
    used = records[usable]
    if (used["official_split"] != "").any():
        assigned, source = official_split(used, split)
        copies = copies_of_test(assigned, used["sha1"])
        exclusion[copies[copies].index] = COPY_OF_TEST
        findings["copies_of_test"] = {"files": int(copies.sum())}
        if copies.any():
            logger.warning(
                "%s: %d train/val images are byte-identical to official test images; left out",
                name,
                int(copies.sum()),
            )
    else:
        assigned = stratified_split(
            used["rel_path"], used["label"], val=split.val, test=split.test, seed=split.seed
        )
        assigned = keep_duplicates_together(assigned, used["rel_path"], used["sha1"])
        source = "stratified"
    assigned = carve_calibration(
        assigned, used["rel_path"], used["label"], share=split.calibration, seed=split.seed
    )
    result = pd.Series(EXCLUDED, index=records.index, dtype=object)
    result[assigned.index] = assigned
    if source_keys is not None:
        findings["source_overlap"] = _overlap(records, result, source_keys, hygiene, name)
        if hygiene.source_overlap == "drop_from_test":
            exclusion[(result == "test") & records["sha1"].isin(set(source_keys))] = IN_SOURCE
    result[exclusion != ""] = EXCLUDED
    return Assignment(result, source, exclusion, findings)


def official_split(records: pd.DataFrame, split: SplitParams) -> tuple[pd.Series, str]:
    """The data set's own split; without an official validation split, a stratified, seeded
    validation part is carved from the official train split (test is never touched), keeping
    identical files together."""
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
    carved = keep_duplicates_together(
        carved, records.loc[train, "rel_path"], records.loc[train, "sha1"]
    )
    assigned.loc[train] = carved
    return assigned, "official (val carved from train)"


def conflicting_labels(keys: pd.Series, labels: pd.Series) -> pd.Series:
    """Rows whose file (same ``keys``, e.g. SHA-1) is also filed under another label."""
    distinct = pd.DataFrame({"key": keys, "label": labels}).groupby("key")["label"].nunique()
    return keys.map(distinct).fillna(1).gt(1)


def copies_of_test(split: pd.Series, keys: pd.Series) -> pd.Series:
    """Train or validation rows identical to a test row (an official split may file one
    image in both): the test split keeps its image, the copy must go."""
    in_test = set(keys[split == "test"])
    return (split != "test") & keys.isin(in_test)


def _conflicts(
    records: pd.DataFrame, hygiene: HygieneParams, name: str, exclusion: pd.Series
) -> dict:
    conflicts = conflicting_labels(records["sha1"], records["label"])
    files = int(conflicts.sum())
    found = {"files": files, "groups": int(records.loc[conflicts, "sha1"].nunique())}
    found["policy"] = hygiene.conflicting_labels
    if not files:
        return found
    examples = ", ".join(records.loc[conflicts, "rel_path"].head(MAX_NAMED))
    if hygiene.conflicting_labels == "error":
        raise CollectionError(
            f"{name}: {files} files are byte-identical copies filed under different labels "
            f"(e.g. {examples}); fix the labels, or set ingestion.hygiene.conflicting_labels "
            "to drop (leave them all out) or keep"
        )
    if hygiene.conflicting_labels == "drop":
        exclusion[conflicts] = CONFLICTING
    logger.warning(
        "%s: %d files in %d groups are identical copies filed under different labels "
        "(e.g. %s): %s (ingestion.hygiene.conflicting_labels=%s)",
        name,
        files,
        found["groups"],
        examples,
        "left out" if hygiene.conflicting_labels == "drop" else "kept",
        hygiene.conflicting_labels,
    )
    return found


def _overlap(
    records: pd.DataFrame,
    split: pd.Series,
    source_keys: Collection[str],
    hygiene: HygieneParams,
    name: str,
) -> dict:
    shared = records["sha1"].isin(set(source_keys)) & (split != EXCLUDED)
    in_test = shared & (split == "test")
    found = {
        "files": int(shared.sum()),
        "in_test": int(in_test.sum()),
        "policy": hygiene.source_overlap,
    }
    if not in_test.any():
        return found
    examples = ", ".join(records.loc[in_test, "rel_path"].head(MAX_NAMED))
    if hygiene.source_overlap == "error":
        raise CollectionError(
            f"{name}: {found['in_test']} test images are byte-identical to source images "
            f"(e.g. {examples}); a model pre-trained on the source has seen them. Set "
            "ingestion.hygiene.source_overlap to drop_from_test (leave them out of the test "
            "split) or keep"
        )
    logger.warning(
        "%s: %d test images are byte-identical to source images (e.g. %s): %s "
        "(ingestion.hygiene.source_overlap=%s)",
        name,
        found["in_test"],
        examples,
        "left out of the test split" if hygiene.source_overlap == "drop_from_test" else "kept",
        hygiene.source_overlap,
    )
    return found
