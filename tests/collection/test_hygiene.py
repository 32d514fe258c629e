"""Data hygiene of the splits: byte-identical files under two labels, copies of official test
images, target test images a source-trained model has seen."""

from __future__ import annotations

import pandas as pd
import pytest

from plankton_kedro.engine.collection.hygiene import (
    CONFLICTING,
    COPY_OF_TEST,
    EXCLUDED,
    IN_SOURCE,
    assign_splits,
)
from plankton_kedro.engine.config import HygieneParams, SplitParams
from plankton_kedro.engine.errors import CollectionError

SPLIT = SplitParams(train=0.6, val=0.2, test=0.2, seed=3)


def records(rows: list[tuple[str, str, str]], official: bool = False) -> pd.DataFrame:
    """(path, label, sha1) rows; with ``official``, the first path component is the split."""
    frame = pd.DataFrame(rows, columns=["rel_path", "label", "sha1"])
    frame["official_split"] = frame["rel_path"].str.split("/").str[0] if official else ""
    return frame


def many(label: str, count: int, start: int = 0) -> list[tuple[str, str, str]]:
    return [(f"{label}/{i:03d}.png", label, f"{label}-{i}") for i in range(start, start + count)]


@pytest.mark.parametrize("policy", ["drop", "keep", "error"])
def test_copies_under_two_labels_follow_the_policy(policy):
    rows = many("a", 10) + many("b", 10) + [("b/copy.png", "b", "a-3")]  # a/003 filed as b too
    hygiene = HygieneParams(conflicting_labels=policy)
    if policy == "error":
        with pytest.raises(CollectionError, match=r"2 files .* \(e\.g\. a/003.png, b/copy.png\)"):
            assign_splits(records(rows), SPLIT, hygiene, name="set")
        return
    result = assign_splits(records(rows), SPLIT, hygiene, name="set")
    copies = result.split.index[[3, 20]]  # rows of a/003.png and b/copy.png
    assert result.findings["conflicting_labels"] == {"files": 2, "groups": 1, "policy": policy}
    if policy == "drop":
        assert (result.split[copies] == EXCLUDED).all()
        assert (result.exclusion[copies] == CONFLICTING).all()
    else:
        assert result.split[copies].nunique() == 1 and EXCLUDED not in set(result.split)


def test_a_train_copy_of_an_official_test_image_is_left_out_not_the_test_image():
    rows = [(f"train/a/{i}.png", "a", f"x{i}") for i in range(8)]
    rows += [("test/a/t0.png", "a", "x5"), ("test/a/t1.png", "a", "y")]
    result = assign_splits(records(rows, official=True), SPLIT, HygieneParams(), name="set")
    assert result.split.tolist()[-2:] == ["test", "test"]
    assert result.split[5] == EXCLUDED and result.exclusion[5] == COPY_OF_TEST
    assert (result.split[:8].drop(5) != EXCLUDED).all()
    assert result.source == "official (val carved from train)"


@pytest.mark.parametrize("policy", ["drop_from_test", "keep", "error"])
def test_target_test_images_seen_in_the_source_follow_the_policy(policy):
    target = records(many("a", 10) + many("b", 10))
    everything = set(target["sha1"])
    hygiene = HygieneParams(source_overlap=policy)
    if policy == "error":
        with pytest.raises(CollectionError, match="test images are byte-identical to source"):
            assign_splits(target, SPLIT, hygiene, name="t", source_keys=everything)
        return
    result = assign_splits(target, SPLIT, hygiene, name="t", source_keys=everything)
    plain = assign_splits(target, SPLIT, hygiene, name="t", source_keys=set())
    in_test = plain.split == "test"
    assert result.findings["source_overlap"] == {
        "files": 20,
        "in_test": int(in_test.sum()),
        "policy": policy,
    }
    if policy == "drop_from_test":
        assert (result.split[in_test] == EXCLUDED).all()
        assert (result.exclusion[in_test] == IN_SOURCE).all()
        assert result.split[~in_test].equals(plain.split[~in_test])  # train/val untouched
    else:
        assert result.split.equals(plain.split)
