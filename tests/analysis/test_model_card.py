"""The model card: the facts it states come from the right inputs, and its dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from plankton_kedro.datasets import ModelCardDataset
from plankton_kedro.engine.analysis.model_card import model_card
from plankton_kedro.engine.analysis.report import evaluation_report
from plankton_kedro.engine.checkpoint import History, Identity, Preprocessing
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from tests.conftest import small_checkpoint

CLASSES = ["copepod", "detritus", "diatom", "rare"]
# Distinct per class and per split, so a count read from the wrong class or column shows.
COUNTS = {
    "copepod": {"train": 50, "val": 9, "test": 20},
    "detritus": {"train": 31, "val": 7, "test": 10},
    "diatom": {"train": 22, "val": 6, "test": 8},
    "rare": {"train": 13, "val": 5, "test": 3},
}
# Test predictions: (true, predicted) -> images. diatom -> detritus is the worst confusion;
# F1: diatom 0.615 < detritus 0.783 < rare 0.800 < copepod 0.976 (neither class order,
# support order nor recall order).
TEST_CONFUSIONS = {("detritus", "diatom"): 1, ("diatom", "detritus"): 4, ("rare", "copepod"): 1}
VAL_CONFUSIONS = {("diatom", "detritus"): 2, ("rare", "copepod"): 1}
MANIFEST_VERSION = "2026-02-03T04.05.06.789Z"


def _manifest() -> pd.DataFrame:
    rows = [
        {"rel_path": f"{label}/{split}_{i:03d}.png", "label": label, "split": split}
        for label, splits in COUNTS.items()
        for split, n in splits.items()
        for i in range(n)
    ]
    manifest = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    manifest.attrs.update(dataset="tiny_target", version=MANIFEST_VERSION)
    return manifest


def _predictions(split: str, confusions: dict, rng: np.random.Generator) -> dict:
    labels, predicted = [], []
    for c, name in enumerate(CLASSES):
        wrong = {CLASSES.index(p): n for (t, p), n in confusions.items() if t == name}
        targets = [p for p, n in wrong.items() for _ in range(n)]
        targets += [c] * (COUNTS[name][split] - len(targets))
        labels += [c] * len(targets)
        predicted += targets
    logits = rng.normal(0.0, 1.0, (len(labels), len(CLASSES)))
    logits[np.arange(len(labels)), predicted] += 6.0  # over-confident: T > 1 helps
    return {"labels": np.array(labels), "logits": logits}


def _checkpoint(**preprocessing):
    training = TrainingParams(max_epochs=12, batch_size=24, patience=3, weight_decay=0.0005)
    return small_checkpoint(
        model_name="resnet10t",
        class_names=CLASSES,
        preprocessing=Preprocessing(
            **{
                "cache_size": 55,
                "image_size": 48,
                "fill": "auto",
                "mean": (0.5,) * 3,
                "std": (0.25,) * 3,
                "colour_mode": "grey",
                **preprocessing,
            }
        ),
        identity=Identity(
            "two_stage", "two_stage_seed1", "fine_tuning", "tiny_target", MANIFEST_VERSION, 1
        ),
        history=History(
            epochs=[{"epoch": e, "val_accuracy": 0.5 + e / 100} for e in range(1, 8)],
            selection_metric="accuracy",
            best_score=0.9123,
            best_epoch=4,
            stopped_early=True,
            initial_weights="two_stage_pretraining@2026-01-01T00.00.00.000Z",
            pretrained_weights="imagenet",
            settings={
                "model": ModelParams(name="resnet10t").model_dump(),
                "data": DataParams(image_size=48).model_dump(),
                "training": training.model_dump(),
            },
        ),
        version="2026-02-04T00.00.00.000Z",
    )


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(0)
    checkpoint, manifest = _checkpoint(), _manifest()
    predictions = {
        "val": _predictions("val", VAL_CONFUSIONS, rng),
        "test": _predictions("test", TEST_CONFUSIONS, rng),
    }
    metrics, calibration, *figures = evaluation_report(
        checkpoint, manifest, predictions, target_precision=0.9
    )
    return checkpoint, manifest, metrics, calibration


@pytest.fixture(scope="module")
def card(evaluated) -> str:
    return model_card(*evaluated)


def _section(card: str, heading: str) -> str:
    """The text under the ``## heading…`` line, up to the next ``## ``."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    return "\n".join(lines[start:end])


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text``, cells stripped."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows if not set("".join(row)) <= set("-")]


def test_card_counts_each_class_per_split_from_the_manifest(card):
    """Catches counts from the wrong split column or class (every count here is distinct)."""
    rows = _table_rows(_section(card, "## Classes"))
    assert rows[0] == ["class", "train", "val", "test"]
    for name, counts in COUNTS.items():
        assert [name, *(str(counts[s]) for s in ("train", "val", "test"))] in rows
    assert rows[-1] == ["**all**", "**116**", "**27**", "**41**"]


def test_per_class_table_lists_the_weakest_f1_first(card, evaluated):
    """Catches the table left in class order, sorted best first, or by support or recall."""
    metrics = evaluated[2]
    section = _section(card, "## Test metrics")
    per_class = section[section.index("Per class") :]
    names = [row[0] for row in _table_rows(per_class)[1:]]
    assert names == ["diatom", "detritus", "rare", "copepod"]
    diatom = metrics["per_class"]["diatom"]
    assert _table_rows(per_class)[1] == [
        "diatom",
        f"{diatom['precision']:.3f}",
        f"{diatom['recall']:.3f}",
        f"{diatom['f1']:.3f}",
        "8",
    ]
    assert f"| Accuracy | {metrics['accuracy']:.3f} |" in section
    assert f"| Macro F1 | {metrics['f1_macro']:.3f} |" in section
    assert f"| Top-3 accuracy | {metrics['top3_accuracy']:.3f} |" in section


def test_card_names_the_most_confused_pair_true_class_first(card):
    """Catches the true and predicted classes swapped (the card would say detritus is taken
    for diatom)."""
    rows = _table_rows(_section(card, "## Most confused"))
    assert rows[1][:3] == ["diatom", "detritus", "4"]
    assert rows[1][3] == "50.0 %"


def test_card_gives_calibration_before_and_after_and_the_threshold(card, evaluated):
    """Catches ECE before and after swapped, or the temperature / threshold not shown."""
    metrics, calibration = evaluated[2], evaluated[3]
    measured = metrics["calibration"]
    assert f"{measured['ece_before']:.3f}" != f"{measured['ece_after']:.3f}"
    section = _section(card, "## Calibration")
    assert f"| ECE (test) | {measured['ece_before']:.3f} | {measured['ece_after']:.3f} |" in section
    assert f"T = {calibration['temperature']:.2f}" in section
    assert f"**{calibration['rejection_threshold']:.3f}**" in section
    coverage = metrics["open_set"]["test"]["coverage"]
    assert ["test", f"{100 * coverage:.1f} %"] in [row[:2] for row in _table_rows(section)]


def test_known_limits_name_the_classes_with_fewer_than_ten_test_images(card):
    """Catches the count taken from train or val, or ``<=`` in place of ``<`` (detritus has
    exactly 10 test images)."""
    section = _section(card, "## Known limits")
    assert "diatom (8)" in section and "rare (3)" in section
    assert "detritus (" not in section and "copepod (" not in section


def test_card_states_data_versions_recipe_and_preprocessing(card):
    data = _section(card, "## Data and versions")
    assert f"`tiny_target`, manifest version `{MANIFEST_VERSION}`" in data
    assert "`two_stage_pretraining@2026-01-01T00.00.00.000Z`" in data and "`imagenet`" in data
    recipe = _section(card, "## Training recipe")
    assert "7 run of at most 12; best epoch 4; stopped early (patience 3)" in recipe
    assert "| Batch size | 24" in recipe and "weight decay 0.0005" in recipe
    assert "backbone 0.001," in recipe  # fine-tuned from weights, not the from-scratch rate
    limits = _section(card, "## Known limits")
    assert "greyscale" in limits and "border median" in limits and "55 px" in limits
    assert card.startswith("# Model card: two_stage_seed1 · resnet10t")
    assert "## Intended use" in card


def test_class_thresholds_and_quantification_are_optional_and_shown_when_fitted(evaluated):
    """Catches a card that breaks without the optional keys, or does not show the per-class
    thresholds and the recommended abundance estimate that evaluation stored."""
    checkpoint, manifest, metrics, calibration = evaluated
    bare = {k: v for k, v in calibration.items() if k not in ("class_thresholds", "quantification")}
    bare_metrics = {
        **metrics,
        "open_set": {k: metrics["open_set"][k] for k in ("chosen_on", "test")},
    }
    card = model_card(checkpoint, manifest, bare_metrics, bare)
    assert "Per predicted class" not in card
    assert "no correction statistics" in _section(card, "## Known limits")

    predictions = {
        "val": _predictions("val", VAL_CONFUSIONS, np.random.default_rng(0)),
        "test": _predictions("test", TEST_CONFUSIONS, np.random.default_rng(1)),
    }
    fitted_metrics, fitted, *_ = evaluation_report(  # classes predicted 5 times get their own
        checkpoint, manifest, predictions, target_precision=0.9, class_threshold_min_images=5
    )
    fitted_card = model_card(checkpoint, manifest, fitted_metrics, fitted)
    rows = {row[0]: row for row in _table_rows(_section(fitted_card, "## Calibration"))}
    chosen = fitted_metrics["open_set"]["per_class"]["classes"]
    own = [name for name in CLASSES if chosen[name]["from"] == "class"]
    assert own and len(own) < len(CLASSES)  # both kinds of rows
    for name in CLASSES:
        assert rows[name][1:3] == [f"{fitted['class_thresholds'][name]:.3f}", chosen[name]["from"]]
    recommended = fitted["quantification"]["recommended"]
    assert f"for `{recommended}`, the estimate to read" in _section(fitted_card, "## Known limits")


def test_dataset_round_trips_and_previews_html_with_tables(tmp_path, card):
    path = str(tmp_path / "model_card.md")
    ModelCardDataset(filepath=path, version=Version(None, "v1")).save(card)
    dataset = ModelCardDataset(filepath=path, version=Version(None, None))
    assert dataset.load() == card
    assert [p.name for p in (tmp_path / "model_card.md").iterdir()] == ["v1"]
    html = dataset.preview()
    assert "<table>" in html and "<h1>" in html and "<td>diatom</td>" in html
    with pytest.raises(DatasetError, match="must be a str"):
        ModelCardDataset(filepath=path, version=Version(None, "v2")).save(b"bytes")
