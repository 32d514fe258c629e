"""A trained network's outputs: logits and embeddings of every image of a dataset, and of
every split of an ingested collection."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from plankton_kedro.engine.analysis.report import dataset_name
from plankton_kedro.engine.checkpoint import Checkpoint, Preprocessing
from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    recorded_preprocessing,
)
from plankton_kedro.engine.errors import StageInputError

from .data import CachedImages, normalise
from .model import PlanktonNet, model_from_checkpoint, model_normalisation
from .runtime import autocast, resolve_device

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Model outputs on a dataset: true labels, logits and (when asked) bottleneck and
    backbone features."""

    labels: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray | None = None
    backbone_features: np.ndarray | None = None


@torch.inference_mode()
def predict(
    model: PlanktonNet,
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    *,
    precision: str = "fp32",
    with_embeddings: bool = False,
    with_backbone_features: bool = False,
) -> Predictions:
    """Outputs for every item of ``dataset`` (evaluation mode, centre crops)."""
    device = torch.device(device)
    model.to(device).eval()
    mean_t = torch.tensor(mean, device=device)
    std_t = torch.tensor(std, device=device)
    labels, logits, embeddings, backbone = [], [], [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        with autocast(device, precision):
            features, embedding, output = model(normalise(images.to(device), mean_t, std_t))
        logits.append(output.float().cpu())
        labels.append(targets)
        if with_embeddings:
            embeddings.append(embedding.float().cpu())
        if with_backbone_features:
            backbone.append(features.float().cpu())
    if not logits:
        empty = np.zeros((0, 0), dtype=np.float32)
        return Predictions(
            np.zeros(0, np.int64),
            empty,
            empty if with_embeddings else None,
            empty if with_backbone_features else None,
        )
    return Predictions(
        torch.cat(labels).numpy(),
        torch.cat(logits).numpy(),
        torch.cat(embeddings).numpy() if with_embeddings else None,
        torch.cat(backbone).numpy() if with_backbone_features else None,
    )


def predict_splits(
    checkpoint: Checkpoint,
    images: np.ndarray,
    manifest: pd.DataFrame,
    *,
    splits: tuple[str, ...] = ("train", "val", "test"),
    batch_size: int = 128,
    backbone_features: bool = False,
) -> dict[str, dict[str, Any]]:
    """Labels, logits and bottleneck embeddings of ``checkpoint`` on each split (centre
    crops): ``{split: {"rel_path", "labels", "logits", "embeddings"}}``, plus
    ``"backbone_features"`` when asked."""
    class_names = list(checkpoint.class_names)
    preprocessing = checkpoint.preprocessing
    if images.shape[1] != preprocessing.cache_size:
        raise StageInputError(
            f"the image cache holds {images.shape[1]} px images but checkpoint "
            f"{checkpoint.version} was trained on {preprocessing.cache_size} px "
            f"(data.image_size={preprocessing.image_size}): run ingestion with "
            f"--params data.image_size={preprocessing.image_size}"
        )
    recorded = recorded_preprocessing(manifest)
    expected = cache_preprocessing(preprocessing)
    differences = [] if recorded is None else recorded.differences(expected)
    if differences:
        raise StageInputError(
            f"the {dataset_name(manifest)} cache was made with {recorded.describe()} but "
            f"checkpoint {checkpoint.version} was trained on images made with "
            f"{expected.describe()}: run ingestion with the checkpoint's preprocessing"
        )
    used = manifest["split"].isin(splits)
    unknown = sorted(set(manifest.loc[used, "label"]) - set(class_names))
    if unknown:
        raise StageInputError(
            f"{dataset_name(manifest)} has classes the model was not trained on: "
            f"{', '.join(unknown)}"
        )
    trained_on, evaluated_on = checkpoint.identity.manifest_version, manifest.attrs.get("version")
    if trained_on and evaluated_on and trained_on != evaluated_on:
        logger.warning(
            "checkpoint %s was trained on manifest %s but is evaluated on manifest %s: if the "
            "split differs, some test images may have been seen in training",
            checkpoint.version,
            trained_on,
            evaluated_on,
        )
    index = {name: i for i, name in enumerate(class_names)}
    labels = manifest["label"].map(index).fillna(-1).astype(np.int64).to_numpy()
    net = model_from_checkpoint(checkpoint)
    device = resolve_device("auto")
    outputs = {}
    for split in splits:
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        if len(rows) == 0:
            raise StageInputError(f"{dataset_name(manifest)} has no images in the {split} split")
        started = time.perf_counter()
        result = predict(
            net,
            CachedImages(images, labels, rows, preprocessing.image_size, train=False),
            batch_size,
            preprocessing.mean,
            preprocessing.std,
            device,
            with_embeddings=True,
            with_backbone_features=backbone_features,
        )
        logger.info(
            "%s: %s split predicted (%d images, %.0f img/s)",
            checkpoint.label,
            split,
            len(rows),
            len(rows) / max(time.perf_counter() - started, 1e-9),
        )
        outputs[split] = {
            "rel_path": manifest["rel_path"].iloc[rows].tolist(),
            "labels": result.labels,
            "logits": result.logits,
            "embeddings": result.embeddings,
        }
        if backbone_features:
            outputs[split]["backbone_features"] = result.backbone_features
    return outputs


def cache_preprocessing(preprocessing: Preprocessing) -> CachePreprocessing:
    """The cache settings a checkpoint's images were made with (to make new images alike)."""
    return CachePreprocessing(
        cache_size=preprocessing.cache_size,
        fill=preprocessing.fill,
        border=preprocessing.border,
        colour=preprocessing.colour_mode,
        bit_depth=preprocessing.bit_depth,
        invert=preprocessing.invert,
    )


def frozen_backbone_features(
    net: PlanktonNet,
    images: np.ndarray,
    manifest: pd.DataFrame,
    *,
    image_size: int,
    features_of: str,
    splits: tuple[str, ...] = ("train", "val", "test"),
    batch_size: int = 128,
) -> pd.DataFrame:
    """The pooled backbone features of ``net``, frozen (evaluation mode, centre crops), for
    every image of ``splits``: the paper's probe input. ``net`` may have been trained on
    other classes (a stage-1 model) or none (ImageNet weights): only its backbone is read.

    Returns :func:`~plankton_kedro.engine.analysis.features.feature_frame`'s layout
    (rel_path, split, label, f0000…) with ``attrs["features_of"] = features_of``.
    """
    from plankton_kedro.engine.analysis.features import feature_frame

    if image_size > images.shape[1]:
        raise StageInputError(
            f"the {dataset_name(manifest)} cache holds {images.shape[1]} px images, smaller "
            f"than the {image_size} px input of {features_of}: run ingestion with "
            f"--params data.image_size={image_size}"
        )
    class_names = sorted(manifest["label"].unique())
    labels = manifest["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy()
    mean, std = model_normalisation(net)
    device = resolve_device("auto")
    outputs = {}
    for split in splits:
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        started = time.perf_counter()
        result = predict(
            net,
            CachedImages(images, labels, rows, image_size, train=False),
            batch_size,
            mean,
            std,
            device,
            with_backbone_features=True,
        )
        logger.info(
            "probe features of %s: %s split (%d images, %.0f img/s)",
            features_of,
            split,
            len(rows),
            len(rows) / max(time.perf_counter() - started, 1e-9),
        )
        outputs[split] = {
            "rel_path": manifest["rel_path"].iloc[rows].tolist(),
            "labels": result.labels,
            "backbone_features": result.backbone_features,
        }
    frame = feature_frame(outputs, class_names)
    frame.attrs["features_of"] = features_of
    return frame
