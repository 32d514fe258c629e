"""Stratified seeded splits."""

import pandas as pd
import pytest

from plankton_kedro.engine.collection.splits import (
    carve_calibration,
    classes_missing_splits,
    keep_duplicates_together,
    label_budget,
    split_counts,
    split_table,
    stratified_split,
)


def _collection(sizes):
    rows = [(f"{label}/{i:04d}.png", label) for label, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["rel_path", "label"])


def test_split_is_stratified_deterministic_and_disjoint():
    frame = _collection({"a": 100, "b": 40, "c": 10})
    split = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=1)
    again = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=1)
    other = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=2)
    assert split.equals(again)
    assert not split.equals(other)
    table = split_table(frame.assign(split=split))
    assert table["a"] == {"train": 60, "val": 20, "test": 20, "total": 100}
    assert table["b"] == {"train": 24, "val": 8, "test": 8, "total": 40}
    assert table["c"] == {"train": 6, "val": 2, "test": 2, "total": 10}
    assert len(split) == len(frame)  # each image in exactly one split


def test_split_does_not_depend_on_listing_order():
    frame = _collection({"a": 30, "b": 12})
    shuffled = frame.sample(frac=1, random_state=0)
    first = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=0)
    second = stratified_split(shuffled["rel_path"], shuffled["label"], val=0.2, test=0.2, seed=0)
    assert dict(zip(frame["rel_path"], first, strict=True)) == dict(
        zip(shuffled["rel_path"], second, strict=True)
    )


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (4, (2, 1, 1)), (10, (6, 2, 2))],
)
def test_tiny_classes_keep_a_training_image(n, expected):
    assert split_counts(n, val=0.2, test=0.2) == expected


def test_tiny_classes_are_reported_not_dropped():
    frame = _collection({"big": 20, "pair": 2, "single": 1})
    split = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=0)
    table = split_table(frame.assign(split=split))
    assert table["single"]["total"] == 1 and table["pair"]["total"] == 2
    tiny = classes_missing_splits(table, val=0.2, test=0.2)
    assert set(tiny) == {"pair", "single"}
    assert "none in val, test" in tiny["single"]
    assert "none in val" in tiny["pair"]


def test_duplicates_are_moved_into_one_split():
    split = pd.Series(["train", "test", "val", "test"])
    paths = pd.Series(["b/2.png", "a/1.png", "c/3.png", "d/4.png"])
    keys = pd.Series(["x", "x", "y", "x"])
    together = keep_duplicates_together(split, paths, keys)
    assert together.tolist() == ["test", "test", "val", "test"]  # a/1.png comes first


def test_calibration_is_carved_from_validation_only():
    """Catches calibration images taken from train or test (they would bias training or the
    test scores) and a class left without validation images."""
    frame = _collection({"a": 100, "b": 40, "single_val": 5})
    split = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=1)
    carved = carve_calibration(split, frame["rel_path"], frame["label"], share=0.5, seed=1)
    table = split_table(frame.assign(split=carved))
    assert table["a"] == {"train": 60, "val": 10, "test": 20, "calibration": 10, "total": 100}
    assert table["b"] == {"train": 24, "val": 4, "test": 8, "calibration": 4, "total": 40}
    assert table["single_val"]["val"] == 1 and table["single_val"]["calibration"] == 0
    moved = carved != split
    assert (split[moved] == "val").all() and (carved[moved] == "calibration").all()
    unchanged = carve_calibration(split, frame["rel_path"], frame["label"], share=0.0, seed=1)
    assert unchanged.equals(split)


def _split_collection(sizes, seed=3):
    frame = _collection(sizes)
    split = stratified_split(frame["rel_path"], frame["label"], val=0.2, test=0.2, seed=seed)
    manifest = frame.assign(split=split)
    manifest.attrs = {"dataset": "t", "version": "v1"}
    return manifest


def _labelled(manifest):
    return set(manifest.loc[manifest["split"] == "train", "rel_path"])


def test_label_budget_keeps_at_most_k_train_images_per_class_and_never_touches_val_or_test():
    """Catches a budget that draws from validation or test, or moves them, and a budget
    counted over the whole set instead of per class."""
    manifest = _split_collection({"a": 100, "b": 40, "c": 5})
    budgeted = label_budget(manifest, 5, seed=1)
    kept = budgeted[budgeted["split"] == "train"].groupby("label").size().to_dict()
    assert kept == {"a": 5, "b": 5, "c": 3}  # c has only 3 train images: all kept
    untouched = manifest["split"].isin(["val", "test"])
    assert budgeted.loc[untouched, "split"].equals(manifest.loc[untouched, "split"])
    left_out = manifest.loc[budgeted["split"] == "unlabelled", "split"]
    assert (left_out == "train").all() and len(left_out) == (60 + 24 + 3) - 13
    assert budgeted.attrs == {"dataset": "t", "version": "v1", "labels_per_class": 5}
    assert "labels_per_class" not in manifest.attrs  # the input is not changed


def test_label_budgets_are_nested_seeded_and_free_of_row_order():
    """Catches subsets drawn independently per budget (5 not inside 10: the curve would mix
    label noise with budget), a seed that is ignored, and a draw that follows row order."""
    manifest = _split_collection({"a": 100, "b": 40})
    five, ten = (_labelled(label_budget(manifest, k, seed=1)) for k in (5, 10))
    assert five < ten
    assert five != _labelled(label_budget(manifest, 5, seed=2))
    shuffled = manifest.sample(frac=1.0, random_state=0)
    assert _labelled(label_budget(shuffled, 5, seed=1)) == five
    # a class's draw does not depend on the other classes
    only_a = manifest[manifest["label"] == "a"]
    assert _labelled(label_budget(only_a, 5, seed=1)) == {p for p in five if p.startswith("a/")}


def test_label_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1 image per class"):
        label_budget(_split_collection({"a": 10}), 0, seed=1)
