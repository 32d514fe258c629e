"""Export a trained model (or an ensemble) to ONNX, with a JSON sidecar that says how to use it.

The ONNX graph takes the centre crops as they come out of preprocessing (uint8, NHWC, RGB,
``image_size`` square, any batch size) and returns calibrated class probabilities: the
normalisation, every ensemble member, the temperature scaling and the ensemble's combination
are inside. The sidecar has what the graph cannot hold: the class names, the preprocessing that
makes an image into the graph's input (padding fill, colour, bit depth, cache and crop sizes)
and the "unknown" threshold. With the two files, ONNX Runtime classifies without torch or this
package (:mod:`plankton_kedro.engine.onnx_runtime` is one such reader).
"""

from __future__ import annotations

import dataclasses
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plankton_kedro.engine.checkpoint import AnyCheckpoint, EnsembleCheckpoint

from .classify import UNKNOWN, Classifier
from .data import normalise

SIDECAR_FORMAT = 1
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
OPSET = 18


class CalibratedClassifier(nn.Module):
    """uint8 NHWC crops -> calibrated probabilities, as :class:`Classifier` computes them."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.nets = nn.ModuleList(net.cpu().eval() for net in classifier.nets)
        for i, (mean, std) in enumerate(classifier.norms):
            self.register_buffer(f"mean_{i}", mean.cpu())
            self.register_buffer(f"std_{i}", std.cpu())
        weights = torch.tensor(classifier.weights, dtype=torch.float32)
        self.register_buffer("weights", weights / weights.sum())
        self.register_buffer("temperatures", torch.tensor(classifier.temperatures))
        self.mode = classifier.mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.permute(0, 3, 1, 2)
        scaled = []
        for i, net in enumerate(self.nets):
            mean, std = getattr(self, f"mean_{i}"), getattr(self, f"std_{i}")
            _, _, logits = net(normalise(batch, mean, std))
            scaled.append(logits.float() / self.temperatures[i])
        stacked = torch.stack(scaled)  # (members, n, k)
        member_weights = self.weights.view(-1, 1, 1)
        if self.mode == "logits":
            return torch.softmax((stacked * member_weights).sum(0), dim=1)
        return (torch.softmax(stacked, dim=2) * member_weights).sum(0)


def export_onnx(
    model: AnyCheckpoint, calibration: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The ONNX model (dynamic batch) and its sidecar for ``model`` (with its calibration)."""
    classifier = Classifier(model, calibration)
    module = CalibratedClassifier(classifier).eval()
    crop = classifier.crop
    example = torch.zeros((2, crop, crop, 3), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=65536)}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        return path.read_bytes(), sidecar(model, classifier)


def sidecar(model: AnyCheckpoint, classifier: Classifier) -> dict[str, Any]:
    """Everything outside the graph that classifying an image needs, and where it came from."""
    ensemble = isinstance(model, EnsembleCheckpoint)
    preprocessing = dataclasses.asdict(model.preprocessing)
    return {
        "format": SIDECAR_FORMAT,
        "classes": classifier.class_names,
        "unknown_label": UNKNOWN,
        "rejection_threshold": classifier.threshold,
        "class_thresholds": classifier.class_thresholds,  # None: the global one for all
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["batch", classifier.crop, classifier.crop, 3],
            "layout": "NHWC, RGB",
            "how": (
                "decode; grey or colour as colour_mode, 16-bit scaled by bit_depth, inverted if "
                "invert; pad to a square with fill ('auto': the median of a border-pixel ring "
                "of each image); resize to cache_size; take the centre image_size crop"
            ),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(classifier.class_names)],
            "meaning": "class probabilities, temperature-scaled (and combined, for an ensemble)",
        },
        "preprocessing": {
            key: preprocessing[key]
            for key in ("cache_size", "image_size", "fill", "colour_mode", "border", "bit_depth")
        }
        | {"invert": preprocessing["invert"]},
        "calibration": {
            "temperatures": classifier.temperatures,
            "ensemble_mode": classifier.mode if ensemble else None,
            "ensemble_weights": classifier.weights if ensemble else None,
        },
        "model": {
            "kind": model.kind,
            "name": model.member_names if ensemble else model.model_name,
            "run": None if ensemble else model.label,
            "checkpoint_version": model.version,
        },
        "opset": OPSET,
        "exported_by": f"plankton-kedro {package_version('plankton-kedro')}",
    }
