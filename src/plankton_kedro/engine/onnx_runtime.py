"""Classify images with an exported ONNX model and its sidecar only: ONNX Runtime, no torch.

What an instrument's own software would do with the two files that ``kedro run
--pipelines=export`` writes: decode and preprocess each image as the sidecar says, take the
centre crop, run the graph, and label an image ``unknown`` below the sidecar's threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.collection.layouts import SkippedFile
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing, centre_crop
from plankton_kedro.engine.collection.scan import decode_files
from plankton_kedro.engine.rejection import accepted, class_thresholds_array


class OnnxClassifier:
    """An exported model: ``onnx_model`` (bytes or a path) described by ``sidecar``."""

    def __init__(self, onnx_model: bytes | str, sidecar: dict[str, Any]):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        self.sidecar = sidecar
        settings = sidecar["preprocessing"]
        fill = settings["fill"]
        self.preprocessing = CachePreprocessing(
            cache_size=settings["cache_size"],
            fill=tuple(fill) if isinstance(fill, list) else fill,
            border=settings["border"],
            colour=settings["colour_mode"],
            bit_depth=settings["bit_depth"],
            invert=settings["invert"],
        )
        self.crop = settings["image_size"]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 ``(n, cache_size, cache_size, 3)`` images."""
        crops = centre_crop(images, self.crop)
        name = self.sidecar["input"]["name"]
        return self.session.run(None, {name: np.ascontiguousarray(crops, dtype=np.uint8)})[0]

    def classify(
        self, files: Iterable[tuple[str, bytes]]
    ) -> tuple[pd.DataFrame, list[SkippedFile]]:
        """One row per decodable file (``rel_path``, ``label``, top ``probability``) and the
        files that could not be read."""
        decoded = list(decode_files(files, preprocessing=self.preprocessing, layout="unlabelled"))
        used = [item for item in decoded if not isinstance(item, SkippedFile)]
        skipped = [item for item in decoded if isinstance(item, SkippedFile)]
        if not used:
            return pd.DataFrame(columns=["rel_path", "label", "probability"]), skipped
        probabilities = self.probabilities(np.stack([pixels for _, pixels in used]))
        best = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        classes = np.asarray(self.sidecar["classes"], dtype=object)
        labels = classes[best]
        thresholds = class_thresholds_array(
            self.sidecar["classes"],
            self.sidecar.get("class_thresholds"),
            self.sidecar["rejection_threshold"],
        )
        if thresholds is not None:
            labels = np.where(
                accepted(probabilities, thresholds), labels, self.sidecar["unknown_label"]
            )
        rows = {
            "rel_path": [record["rel_path"] for record, _ in used],
            "label": labels,
            "probability": confidence,
        }
        return pd.DataFrame(rows), skipped
