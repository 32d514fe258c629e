"""The checkpoint contract: one typed schema, older schemas still read, newer ones refused."""

from __future__ import annotations

import pytest
import torch

from plankton_kedro.engine.checkpoint import (
    SCHEMA_VERSION,
    Checkpoint,
    EnsembleCheckpoint,
    Preprocessing,
    load_checkpoint,
)
from plankton_kedro.engine.errors import CheckpointError, PlanktonUserError
from tests.conftest import small_checkpoint

# A checkpoint as plankton-kedro wrote it before the typed schema (format 1, flat keys).
FLAT = {
    "format": 1,
    "state_dict": {"w": torch.ones(2, 2)},
    "model_name": "resnet10t",
    "bottleneck_dim": 512,
    "class_names": ["a", "b"],
    "image_size": 48,
    "cache_size": 55,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "fill": 255,
    "route": "two_stage",
    "run": "two_stage_seed1",
    "stage": "fine_tuning",
    "seed": 1,
    "dataset": "demo_target",
    "manifest_version": "2026-11-30T18.36.10.000Z",
    "initial_weights": "two_stage/pretraining checkpoint v0",
    "pretrained_weights": None,
    "selection_metric": "accuracy",
    "best_score": 0.9125,
    "best_epoch": 15,
    "stopped_early": True,
    "resumed_from_epoch": None,
    "updates_per_epoch": 7,
    "history": [{"epoch": 1, "train_loss": 2.1}],
    "params": {"training": {"seed": 1}},
}


def test_a_checkpoint_survives_its_on_disk_form(tmp_path):
    checkpoint = small_checkpoint()
    torch.save(checkpoint.to_dict(), tmp_path / "c.pt")
    loaded = load_checkpoint(torch.load(tmp_path / "c.pt", weights_only=True))
    assert loaded.to_dict()["schema"] == SCHEMA_VERSION
    assert (loaded.preprocessing, loaded.identity, loaded.history) == (
        checkpoint.preprocessing,
        checkpoint.identity,
        checkpoint.history,
    )
    assert torch.equal(loaded.state_dict["w"], checkpoint.state_dict["w"])


def test_a_checkpoint_of_the_flat_format_1_still_loads_with_every_field():
    loaded = load_checkpoint(dict(FLAT))
    assert loaded.model_name == "resnet10t" and loaded.class_names == ["a", "b"]
    assert loaded.preprocessing == Preprocessing(
        55, 48, 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    )
    identity = loaded.identity
    assert (identity.route, identity.run, identity.stage, identity.seed) == (
        "two_stage",
        "two_stage_seed1",
        "fine_tuning",
        1,
    )
    assert (identity.dataset, identity.manifest_version) == (
        FLAT["dataset"],
        FLAT["manifest_version"],
    )
    history = loaded.history
    assert (history.best_score, history.best_epoch, history.updates_per_epoch) == (0.9125, 15, 7)
    assert history.stopped_early and history.epochs == FLAT["history"]
    assert history.initial_weights == FLAT["initial_weights"]
    assert history.settings == {"training": {"seed": 1}}


def test_a_newer_schema_is_refused_with_what_to_do():
    data = {**small_checkpoint().to_dict(), "schema": SCHEMA_VERSION + 1}
    with pytest.raises(CheckpointError, match="newer than this version.*update plankton-kedro"):
        load_checkpoint(data, source="model.pt")


@pytest.mark.parametrize("missing", ["state_dict", "class_names", "fill"])
def test_a_checkpoint_without_a_required_field_names_it(missing):
    data = {key: value for key, value in FLAT.items() if key != missing}
    with pytest.raises(
        CheckpointError, match=f"m.pt is not a plankton-kedro checkpoint.*{missing}"
    ):
        load_checkpoint(data, source="m.pt")
    assert issubclass(CheckpointError, PlanktonUserError)


def _member(name: str, value: float, **preprocessing) -> Checkpoint:
    base = small_checkpoint().preprocessing
    fields = {**base.__dict__, **preprocessing}
    checkpoint = small_checkpoint(value, preprocessing=Preprocessing(**fields))
    checkpoint.version = f"v-{name}"
    return checkpoint


def test_an_ensemble_keeps_its_members_weights_and_their_versions():
    members = {"b": _member("b", 2.0), "a": _member("a", 1.0), "c": _member("c", 3.0)}
    selection = {"weights": {"a": 0.75, "b": 0.25}, "mode": "probabilities"}
    ensemble = EnsembleCheckpoint.from_selection(members, selection, {"a": 1.5}, 0.4)
    loaded = load_checkpoint(ensemble.to_dict())
    assert isinstance(loaded, EnsembleCheckpoint)
    assert loaded.member_names == ["a", "b"] and loaded.weights == [0.75, 0.25]
    assert loaded.temperatures == [1.5, 1.0] and loaded.rejection_threshold == 0.4
    assert [m.version for m in loaded.members] == ["v-a", "v-b"]
    assert loaded.members[1].state_dict["w"][0, 0] == 2.0


def test_members_that_preprocess_differently_cannot_form_an_ensemble():
    members = {"a": _member("a", 1.0), "b": _member("b", 1.0, fill=0)}
    selection = {"weights": {"a": 0.5, "b": 0.5}, "mode": "probabilities"}
    with pytest.raises(
        CheckpointError, match="member b preprocesses images differently \\(fill\\)"
    ):
        EnsembleCheckpoint.from_selection(members, selection, {})


def test_a_crop_larger_than_the_cache_is_refused_when_the_checkpoint_is_read():
    """Catches a checkpoint whose image_size exceeds its cache_size predicting with a
    negative crop offset (wrong crops, exit code 0)."""
    data = small_checkpoint().to_dict()
    data["preprocessing"] = {**data["preprocessing"], "image_size": 64, "cache_size": 55}
    with pytest.raises(CheckpointError, match="image_size 64 and cache_size 55 cannot be"):
        load_checkpoint(data, source="big_crop.pt")


def test_weights_that_do_not_fit_the_named_network_are_one_clear_error():
    """Catches torch's multi-line ``size mismatch`` RuntimeError reaching the user when a
    checkpoint's weights are of another class count (or another network)."""
    from plankton_kedro.engine.modelling.model import build_model, model_from_checkpoint

    net, _ = build_model("test_resnet", num_classes=3, bottleneck_dim=16)
    checkpoint = small_checkpoint(
        model_name="test_resnet",
        class_names=["a", "b", "c", "d", "e"],  # the weights have 3 outputs
        state_dict=net.state_dict(),
        bottleneck_dim=16,
    )
    with pytest.raises(CheckpointError, match=r"5 classes, bottleneck 16\): size mismatch"):
        model_from_checkpoint(checkpoint)
