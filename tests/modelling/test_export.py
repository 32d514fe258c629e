"""ONNX export: ONNX Runtime gives torch's probabilities, and the sidecar alone classifies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from plankton_kedro.engine.checkpoint import EnsembleCheckpoint
from plankton_kedro.engine.config import ExportParams
from plankton_kedro.engine.modelling.classify import Classifier, predict_files
from plankton_kedro.engine.modelling.export import export_onnx
from plankton_kedro.engine.onnx_runtime import OnnxClassifier
from plankton_kedro.pipelines.export.nodes import ExportMismatchError, parity
from tests.modelling.test_classify import _trained, ingested  # noqa: F401 - fixture

# measured: at most ~1e-8 between torch (CPU) and ONNX Runtime on these models
TOLERANCE = 1e-5


@pytest.fixture
def trained(ingested, tmp_path):  # noqa: F811 - the fixture imported above
    root, cache, manifest = ingested
    return root, cache, _trained(cache, manifest, tmp_path)


def test_onnx_runtime_gives_torchs_probabilities_for_any_batch_size(trained):
    """Catches a graph that differs from the torch classifier (normalisation, temperature,
    channel order) or that only accepts the batch size it was exported with."""
    _, cache, checkpoint = trained
    calibration = {"temperature": 1.7, "rejection_threshold": 0.6}
    onnx_bytes, sidecar = export_onnx(checkpoint, calibration)
    torch_classifier = Classifier(checkpoint, calibration)
    onnx_classifier = OnnxClassifier(onnx_bytes, sidecar)
    for batch in (cache[:1], cache[:7], cache[:33]):
        expected, _ = torch_classifier(batch)
        got = onnx_classifier.probabilities(batch)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < TOLERANCE


def test_an_ensemble_exports_as_one_graph_with_its_weights_and_temperatures(trained, tmp_path):
    """Catches ensemble members, weights, temperatures or the combination mode dropped."""
    _, cache, first = trained
    second = dataclasses.replace(
        first,
        state_dict={
            k: v * 0.5 if v.is_floating_point() else v for k, v in first.state_dict.items()
        },
    )
    for mode in ("probabilities", "logits"):
        ensemble = EnsembleCheckpoint(
            members=[first, second],
            member_names=["a", "b"],
            weights=[0.7, 0.3],
            temperatures=[1.3, 2.2],
            mode=mode,
            selection={},
            rejection_threshold=0.5,
        )
        onnx_bytes, sidecar = export_onnx(ensemble)
        expected, _ = Classifier(ensemble)(cache[:9])
        got = OnnxClassifier(onnx_bytes, sidecar).probabilities(cache[:9])
        assert np.abs(got - expected).max() < TOLERANCE, mode


@pytest.mark.parametrize("per_class", [False, True], ids=["global", "per_class"])
def test_the_sidecar_alone_classifies_image_files_as_predict_does(trained, tmp_path, per_class):
    """Catches a sidecar missing a preprocessing value (fill, colour, sizes), the classes or
    the "unknown" thresholds (global, or per class: the ONNX path ignoring them): the files
    are decoded from the sidecar's values only (read back from its JSON text) and must get
    predict's labels."""
    root, _, checkpoint = trained
    files = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in sorted(root.rglob("*.png"))]
    # a threshold in the middle of the confidences, so that some images are "unknown"
    first = predict_files(Classifier(checkpoint), files, workers=1).predictions
    threshold = float(np.median(first["probability"]))
    calibration = {"temperature": 1.0, "rejection_threshold": threshold}
    if per_class:  # the global threshold accepts all; the most predicted class's, half of it
        favourite = first["label"].value_counts().index[0]
        own = float(np.median(first.loc[first["label"] == favourite, "probability"]))
        calibration["rejection_threshold"] = 0.0
        calibration["class_thresholds"] = {
            name: own if name == favourite else 0.0 for name in checkpoint.class_names
        }
    expected = predict_files(Classifier(checkpoint, calibration), files, workers=1).predictions
    onnx_bytes, sidecar = export_onnx(checkpoint, calibration)
    (tmp_path / "model.json").write_text(json.dumps(sidecar))
    rows, skipped = OnnxClassifier(
        onnx_bytes, json.loads((tmp_path / "model.json").read_text())
    ).classify(files)
    assert not skipped and len(rows) == len(files) == len(expected)
    assert (expected["label"] == "unknown").any() and (expected["label"] != "unknown").any()
    if per_class:
        assert set(expected.loc[expected["label"] == "unknown", "top1_label"]) == {favourite}
    assert rows["rel_path"].tolist() == expected["rel_path"].tolist()
    assert rows["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(rows["probability"], expected["probability"], atol=TOLERANCE)


def test_an_export_that_disagrees_with_torch_is_refused(trained):
    """Catches the parity check passing whatever the exported graph computes."""
    _, _, checkpoint = trained
    onnx_bytes, sidecar = export_onnx(checkpoint, {"temperature": 1.0})
    hotter = Classifier(checkpoint, {"temperature": 3.0})  # not what was exported
    with pytest.raises(ExportMismatchError, match="differ from torch's"):
        parity(onnx_bytes, sidecar, hotter, ExportParams())
    assert parity(onnx_bytes, sidecar, Classifier(checkpoint), ExportParams()) < TOLERANCE
