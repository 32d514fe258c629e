"""Classify new, unlabelled images with a checkpoint or an ensemble, in streaming batches.

Images are preprocessed exactly as in training, with the values stored in the checkpoint
(padding fill, colour, bit depth, sizes, each member's normalisation), never the current
parameters. Probabilities are temperature-scaled as fitted on validation, and an image whose
top probability is below the stored "unknown" threshold of its predicted class (or the global
one) is labelled ``unknown``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
import torch

from plankton_kedro.engine.analysis.calibration import softmax
from plankton_kedro.engine.analysis.ensemble import combine
from plankton_kedro.engine.checkpoint import AnyCheckpoint, EnsembleCheckpoint
from plankton_kedro.engine.collection.frame_crop import FrameCrop
from plankton_kedro.engine.collection.layouts import SkippedFile
from plankton_kedro.engine.collection.preprocessing import centre_crop
from plankton_kedro.engine.collection.scan import decode_files
from plankton_kedro.engine.rejection import UNKNOWN, accepted, class_thresholds_array

from .data import normalise
from .inference import cache_preprocessing
from .model import model_from_checkpoint
from .runtime import resolve_device

logger = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    """One row per classified image, its embedding rows, the probabilities (rows in the
    table's order; for abundance estimates), and every file left out."""

    predictions: pd.DataFrame
    embeddings: pd.DataFrame
    probabilities: np.ndarray
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0


class Classifier:
    """A checkpoint or an ensemble, ready to turn uint8 cache-sized images into probabilities."""

    def __init__(
        self,
        model: AnyCheckpoint,
        calibration: dict[str, Any] | None = None,
        rejection: str = "per_class",
    ):
        self.is_ensemble = isinstance(model, EnsembleCheckpoint)
        members = model.members if self.is_ensemble else [model]
        preprocessing = model.preprocessing
        self.class_names = list(model.class_names)
        self.cache_size, self.crop = preprocessing.cache_size, preprocessing.image_size
        self.preprocessing = cache_preprocessing(preprocessing)
        self.device = resolve_device("auto")
        self.nets = [model_from_checkpoint(m).to(self.device).eval() for m in members]
        self.norms = [
            (
                torch.tensor(m.preprocessing.mean, device=self.device),
                torch.tensor(m.preprocessing.std, device=self.device),
            )
            for m in members
        ]
        if self.is_ensemble:
            self.mode, self.weights = model.mode, list(model.weights)
            self.temperatures = list(model.temperatures)
            self.threshold = model.rejection_threshold
        else:
            self.mode, self.weights = "probabilities", [1.0]
            self.temperatures = [(calibration or {}).get("temperature", 1.0)]
            self.threshold = (calibration or {}).get("rejection_threshold")
        #: per-class "unknown" thresholds (None: the global one for every class)
        self.class_thresholds = (
            fitted_for(model, calibration).get("class_thresholds")
            if rejection == "per_class"
            else None
        )
        self.thresholds = class_thresholds_array(
            self.class_names, self.class_thresholds, self.threshold
        )

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(n, k)`` and the first member's 512-d embeddings for ``images``
        (uint8 ``(n, cache_size, cache_size, 3)``, centre-cropped here)."""
        crops = centre_crop(images, self.crop)
        batch = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(self.device)
        logits, embeddings = [], None
        for net, (mean, std) in zip(self.nets, self.norms, strict=True):
            _, embedding, output = net(normalise(batch, mean, std))
            logits.append(output.float().cpu().numpy())
            embeddings = embedding.float().cpu().numpy() if embeddings is None else embeddings
        if len(logits) == 1:
            return softmax(logits[0], self.temperatures[0]), embeddings
        return combine(
            logits, self.weights, mode=self.mode, temperatures=self.temperatures
        ), embeddings


def fitted_for(model: AnyCheckpoint, calibration: dict[str, Any] | None) -> dict[str, Any]:
    """What evaluation fitted for this model on validation (per-class thresholds, abundance
    statistics): kept in an ensemble's checkpoint, in a route's calibration file otherwise."""
    if isinstance(model, EnsembleCheckpoint):
        return model.calibration
    return calibration or {}


def predict_files(
    classifier: Classifier,
    files: Iterable[tuple[str, bytes]],
    *,
    batch_size: int = 256,
    top_k: int = 3,
    workers: int = 2,
    with_embeddings: bool = False,
    progress: Callable[[int, float], None] | None = None,
    frame_crop: FrameCrop | None = None,
) -> PredictionResult:
    """Classify every image of ``files`` (``(rel_path, bytes)``) batch by batch; with
    ``frame_crop``, scale bars are removed first, as at ingestion of the training images."""
    started = time.perf_counter()
    rows, embedding_blocks, probability_blocks, skipped = [], [], [], []
    decoded = decode_files(
        files,
        preprocessing=classifier.preprocessing,
        workers=workers,
        layout="unlabelled",
        frame_crop=frame_crop,
    )
    done = 0
    for chunk in _chunks(decoded, batch_size):
        used = [item for item in chunk if not isinstance(item, SkippedFile)]
        skipped += [item for item in chunk if isinstance(item, SkippedFile)]
        if used:
            probabilities, embeddings = classifier(np.stack([pixels for _, pixels in used]))
            paths = [record["rel_path"] for record, _ in used]
            rows += _rows(paths, probabilities, classifier, top_k)
            probability_blocks.append(probabilities.astype(np.float32))
            if with_embeddings:
                embedding_blocks.append(_embedding_frame(paths, embeddings))
        done += len(chunk)
        if progress is not None:
            progress(done, time.perf_counter() - started)
    embeddings = (
        pd.concat(embedding_blocks, ignore_index=True)
        if embedding_blocks
        else pd.DataFrame({"rel_path": pd.Series(dtype=str)})
    )
    probabilities = (
        np.concatenate(probability_blocks)
        if probability_blocks
        else np.zeros((0, len(classifier.class_names)), np.float32)
    )
    return PredictionResult(
        pd.DataFrame(rows), embeddings, probabilities, skipped, time.perf_counter() - started
    )


def class_counts(predictions: pd.DataFrame, class_names: list[str]) -> dict[str, int]:
    """Images per predicted label (every class, then ``unknown``), for a quick census."""
    counts = predictions["label"].value_counts() if len(predictions) else pd.Series(dtype=int)
    return {name: int(counts.get(name, 0)) for name in [*class_names, UNKNOWN]}


def _rows(
    paths: list[str], probabilities: np.ndarray, classifier: Classifier, top_k: int
) -> list[dict[str, Any]]:
    k = min(top_k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    thresholds = classifier.thresholds
    keep = np.ones(len(paths), bool) if thresholds is None else accepted(probabilities, thresholds)
    rows = []
    for path, probs, best, known in zip(paths, probabilities, order, keep, strict=True):
        top = float(probs[best[0]])
        row = {
            "rel_path": path,
            "label": classifier.class_names[best[0]] if known else UNKNOWN,
            "probability": top,
        }
        for rank, index in enumerate(best, start=1):
            row[f"top{rank}_label"] = classifier.class_names[index]
            row[f"top{rank}_probability"] = float(probs[index])
        rows.append(row)
    return rows


def _embedding_frame(paths: list[str], embeddings: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(embeddings, columns=[f"b{i:03d}" for i in range(embeddings.shape[1])])
    frame.insert(0, "rel_path", paths)
    return frame


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
