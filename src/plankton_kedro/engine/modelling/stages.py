"""One training stage end to end: from an ingested cache + manifest to the best checkpoint.

Takes and returns plain arrays, frames and the typed checkpoint, so it is usable without
Kedro. With ``training.devices > 1`` the stage runs as that many DDP processes; under
``torchrun`` this process is one rank of the job.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plankton_kedro.engine.analysis.report import dataset_name
from plankton_kedro.engine.checkpoint import Checkpoint, History, Identity, Preprocessing
from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    recorded_preprocessing,
)
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.errors import StageInputError

from . import distributed
from .data import CachedImages
from .fit import TrainResult, fit
from .model import (
    PlanktonNet,
    build_model,
    check_image_size,
    model_from_checkpoint,
    model_normalisation,
)
from .resume import TrainingStateStore, stage_fingerprint, stage_lock
from .runtime import seed_everything

logger = logging.getLogger(__name__)

BACKBONE_INITS = ("scratch", "pretrained", "checkpoint")
USED_SPLITS = ("train", "val", "test")  # rows of other splits ("excluded") are never read


@dataclass
class StageJob:
    """Everything one training stage needs, picklable for worker processes."""

    images: np.ndarray | str  # the cache, or the path of its .npy file (memory-mapped again)
    labels: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    class_names: list[str]
    model: ModelParams
    data: DataParams
    training: TrainingParams
    backbone_init: str
    init_checkpoint: Checkpoint | None
    log_prefix: str
    state_folder: str
    fingerprint: dict[str, Any]


def train_stage(
    images: np.ndarray,
    manifest: pd.DataFrame,
    *,
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    route: str,
    stage: str,
    backbone_init: str,
    init_checkpoint: Checkpoint | None = None,
    run_name: str | None = None,
    preprocessing: CachePreprocessing | None = None,
) -> Checkpoint:
    """Train one stage on the train split, select on validation; return the best checkpoint.

    ``run_name`` (default: the route) names this run's resumable state, so that variants of
    a route (other seeds, ensemble members) never overwrite each other's.
    ``backbone_init``: ``scratch`` (random), ``pretrained`` (``model.pretrained``) or
    ``checkpoint`` (backbone + bottleneck of ``init_checkpoint``, fresh classifier).
    The checkpoint records the preprocessing the cache was made with (from the manifest);
    ``preprocessing``, the collection's current settings, must match it.
    """
    if backbone_init not in BACKBONE_INITS or (
        backbone_init == "checkpoint" and init_checkpoint is None
    ):
        raise ValueError(f"unknown backbone initialisation '{backbone_init}'")
    cache = _cache_preprocessing(images, manifest, data, preprocessing)
    dataset = dataset_name(manifest)
    run = run_name or route
    splits = manifest["split"].to_numpy()
    class_names = sorted(manifest.loc[np.isin(splits, USED_SPLITS), "label"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    labels = manifest["label"].map(index).fillna(-1).astype(np.int64).to_numpy()
    train_rows, val_rows = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "val")
    if len(val_rows) == 0:
        raise StageInputError(
            f"{dataset}: the validation split is empty; the best checkpoint is "
            "chosen on it (set ingestion.split.val > 0)"
        )
    logger.info(
        "%s/%s: training %s on %s (%d classes, %d train / %d val images, backbone from %s)",
        route,
        stage,
        model.name,
        dataset,
        len(class_names),
        len(train_rows),
        len(val_rows),
        _describe_init(backbone_init, model, init_checkpoint),
    )
    job = StageJob(
        images=_shareable(images),
        labels=labels,
        train_rows=train_rows,
        val_rows=val_rows,
        class_names=class_names,
        model=model,
        data=data,
        training=training,
        backbone_init=backbone_init,
        init_checkpoint=init_checkpoint,
        log_prefix=f"{run}/{stage} ",
        state_folder=str(Path(training.state_dir) / f"{run}_{stage}"),
        fingerprint=stage_fingerprint(
            manifest,
            dataset,
            class_names,
            model,
            data,
            training,
            None if init_checkpoint is None else init_checkpoint.state_dict,
            cache.to_dict(),
        ),
    )
    processes = distributed.resolve_devices(training.devices)
    layout = distributed.current()
    # one lock per stage run: by this process, or by rank 0 of a job started with torchrun
    lock = stage_lock(job.state_folder) if layout.is_main else contextlib.nullcontext()
    with lock:
        if processes > 1 and not layout.enabled:
            check_image_size(model.name, data.image_size)  # one clear error, not one per rank
            logger.info("%s/%s: starting %d DDP processes", route, stage, processes)
            result, weights, mean, std = distributed.launch_local(processes, run_job, job)
        else:
            result, weights, mean, std = run_job(job)
    return Checkpoint(
        model_name=model.name,
        bottleneck_dim=model.bottleneck_dim,
        class_names=class_names,
        state_dict=result.state_dict,
        preprocessing=Preprocessing(
            cache_size=cache.cache_size,
            image_size=data.image_size,
            fill=cache.fill,
            border=cache.border,
            colour_mode=cache.colour,
            bit_depth=cache.bit_depth,
            invert=cache.invert,
            mean=tuple(mean),
            std=tuple(std),
        ),
        identity=Identity(
            route=route,
            run=run,
            stage=stage,
            dataset=dataset,
            manifest_version=manifest.attrs.get("version"),
            seed=training.seed,
        ),
        history=History(
            epochs=result.history,
            selection_metric=training.selection_metric,
            best_score=result.best_score,
            best_epoch=result.best_epoch,
            stopped_early=result.stopped_early,
            resumed_from_epoch=result.resumed_from_epoch,
            updates_per_epoch=result.updates_per_epoch,
            runtime=result.runtime,
            initial_weights=weights,
            pretrained_weights=_pretrained_weights(backbone_init, weights, init_checkpoint),
            settings={
                "model": model.model_dump(),
                "data": data.model_dump(),
                "training": training.model_dump(),
            },
        ),
    )


def run_job(job: StageJob) -> tuple[TrainResult, str | None, tuple, tuple]:
    """Build the network and train it: in this process, or as one rank of a DDP job."""
    distributed.init_from_environment()
    images = np.load(job.images, mmap_mode="r") if isinstance(job.images, str) else job.images
    seed_everything(job.training.seed)
    net, weights = _initial_model(
        job.model, len(job.class_names), job.backbone_init, job.init_checkpoint, job.data
    )
    mean, std = model_normalisation(net)
    crop = job.data.image_size
    result = fit(
        net,
        CachedImages(
            images,
            job.labels,
            job.train_rows,
            crop,
            train=True,
            augment_on_device=job.training.augment_on_device,
        ),
        CachedImages(images, job.labels, job.val_rows, crop, train=False),
        job.training,
        mean=mean,
        std=std,
        backbone_pretrained=job.backbone_init != "scratch" and weights is not None,
        log_prefix=job.log_prefix,
        store=TrainingStateStore(job.state_folder, job.fingerprint),
    )
    return result, weights, mean, std


def _initial_model(
    model: ModelParams,
    num_classes: int,
    backbone_init: str,
    init_checkpoint: Checkpoint | None,
    data: DataParams,
) -> tuple[PlanktonNet, str | None]:
    if backbone_init == "scratch":
        return build_model(
            model.name,
            num_classes,
            bottleneck_dim=model.bottleneck_dim,
            image_size=data.image_size,
        )
    if backbone_init == "pretrained":
        return build_model(
            model.name,
            num_classes,
            pretrained=model.pretrained,
            bottleneck_dim=model.bottleneck_dim,
            image_size=data.image_size,
        )
    if init_checkpoint.model_name != model.name:
        raise StageInputError(
            f"the stage-1 checkpoint {init_checkpoint.version} is a "
            f"'{init_checkpoint.model_name}' but model.name is '{model.name}': "
            "run stage 1 again with this model, or set model.name to the checkpoint's"
        )
    net = model_from_checkpoint(init_checkpoint, image_size=data.image_size)
    net.reset_classifier(num_classes)
    return net, _describe_init("checkpoint", model, init_checkpoint)


def _pretrained_weights(
    backbone_init: str, weights: str | None, init_checkpoint: Checkpoint | None
) -> str | None:
    """The outside weights a model descends from (timm tag or file), through every stage."""
    if backbone_init == "pretrained":
        return weights
    if backbone_init == "checkpoint" and init_checkpoint is not None:
        return init_checkpoint.history.pretrained_weights
    return None


def _describe_init(
    backbone_init: str, model: ModelParams, init_checkpoint: Checkpoint | None
) -> str:
    if backbone_init == "checkpoint" and init_checkpoint is not None:
        origin = f"{init_checkpoint.identity.route}/{init_checkpoint.identity.stage}"
        return f"{origin} checkpoint {init_checkpoint.version}"
    if backbone_init == "pretrained" and model.pretrained != "none":
        return f"model.pretrained={model.pretrained}"
    return "random initialisation"


def _shareable(images: np.ndarray) -> np.ndarray | str:
    """A memory-mapped cache is passed to worker processes by path, never copied."""
    filename = getattr(images, "filename", None)
    if isinstance(images, np.memmap) and filename and str(filename).endswith(".npy"):
        return str(filename)
    return images


def _cache_preprocessing(
    images: np.ndarray,
    manifest: pd.DataFrame,
    data: DataParams,
    expected: CachePreprocessing | None,
) -> CachePreprocessing:
    """How the cache was made, as ingestion recorded it, checked against the cache and the
    collection's current settings (``expected``)."""
    if len(images) != len(manifest):
        raise StageInputError(
            f"the image cache has {len(images)} images but the manifest "
            f"{manifest.attrs.get('version')} has {len(manifest)} rows: they come from "
            "different ingestion runs; run the ingestion pipeline again"
        )
    if images.shape[1] != data.cache_size:
        raise StageInputError(
            f"the image cache holds {images.shape[1]} px images but data.image_size="
            f"{data.image_size} needs {data.cache_size} px: run the ingestion pipeline "
            "with the same data.image_size"
        )
    dataset = dataset_name(manifest)
    recorded = recorded_preprocessing(manifest)
    if recorded is None:
        logger.warning(
            "%s: manifest %s was written before preprocessing was recorded: assuming white "
            "padding (fill 255), the default then; run the ingestion pipeline again to record it",
            dataset,
            manifest.attrs.get("version"),
        )
        return CachePreprocessing(cache_size=data.cache_size, fill=255, colour="rgb")
    if recorded.cache_size != images.shape[1]:
        raise StageInputError(
            f"manifest {manifest.attrs.get('version')} records {recorded.cache_size} px images "
            f"but the image cache holds {images.shape[1]} px: they come from different "
            "ingestion runs; run the ingestion pipeline again"
        )
    differences = [] if expected is None else recorded.differences(expected)
    if differences:
        raise StageInputError(
            f"the {dataset} cache was made with {recorded.describe()} but the settings now say "
            f"{expected.describe()} ({', '.join(differences)} differ): run the ingestion "
            "pipeline again, or set the preprocessing back"
        )
    return recorded
