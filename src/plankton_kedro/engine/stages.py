"""One training stage and one evaluation, from cache + manifest to checkpoint / metrics.

These functions glue the engine parts together for the pipeline nodes; they take and return
plain arrays, frames and dicts, so they are usable without Kedro.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import timm

from . import distributed
from .calibration import (
    choose_rejection_threshold,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    rejection_report,
    reliability_diagram,
    softmax,
)
from .config import DataParams, ModelParams, TrainingParams
from .data import CachedImages
from .metrics import classification_report, confusion_matrix_figure
from .model import PlanktonNet, build_model
from .resume import TrainingStateStore
from .training import TrainResult, fit, predict, resolve_device, seed_everything

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class StageInputError(ValueError):
    """The inputs of a stage do not fit together (cache vs manifest, model vs checkpoint)."""


# Training settings that do not change what is learned: they may differ on resume.
OPERATIONAL_SETTINGS = {
    "device",
    "devices",
    "resume",
    "state_dir",
    "num_workers",
    "eval_batch_size",
    "augment_on_device",
}


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
    init_checkpoint: dict[str, Any] | None
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
    init_checkpoint: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train one stage on the train split, select on validation; return the best checkpoint.

    ``run_name`` (default: the route) names this run's resumable state, so that variants of
    a route (other seeds, ensemble members) never overwrite each other's.
    ``backbone_init``: ``scratch`` (random), ``pretrained`` (``model.pretrained``) or
    ``checkpoint`` (backbone + bottleneck of ``init_checkpoint``, fresh classifier).
    With ``training.devices > 1`` the stage runs as that many DDP processes; under
    ``torchrun`` this process is one rank of the job.
    """
    _check_cache(images, manifest, data)
    class_names = sorted(manifest["label"].unique())
    labels = manifest["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy()
    splits = manifest["split"].to_numpy()
    train_rows, val_rows = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "val")
    if len(val_rows) == 0:
        raise StageInputError(
            f"{_dataset_name(manifest)}: the validation split is empty; the best checkpoint is "
            "chosen on it (set ingestion.split.val > 0)"
        )
    logger.info(
        "%s/%s: training %s on %s (%d classes, %d train / %d val images, backbone from %s)",
        route,
        stage,
        model.name,
        _dataset_name(manifest),
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
        log_prefix=f"{run_name or route}/{stage} ",
        state_folder=str(Path(training.state_dir) / f"{run_name or route}_{stage}"),
        fingerprint=_fingerprint(manifest, class_names, model, data, training, init_checkpoint),
    )
    processes = distributed.resolve_devices(training.devices)
    if processes > 1 and not distributed.current().enabled:
        logger.info("%s/%s: starting %d DDP processes", route, stage, processes)
        result, weights, mean, std = distributed.launch_local(processes, run_job, job)
    else:
        result, weights, mean, std = run_job(job)
    return {
        "format": CHECKPOINT_FORMAT,
        "state_dict": result.state_dict,
        "model_name": model.name,
        "bottleneck_dim": model.bottleneck_dim,
        "class_names": class_names,
        "image_size": data.image_size,
        "cache_size": data.cache_size,
        "mean": list(mean),
        "std": list(std),
        "fill": data.fill,
        "route": route,
        "run": run_name or route,
        "stage": stage,
        "seed": training.seed,
        "dataset": _dataset_name(manifest),
        "manifest_version": manifest.attrs.get("version"),
        "initial_weights": weights,
        "pretrained_weights": _pretrained_weights(backbone_init, weights, init_checkpoint),
        "selection_metric": training.selection_metric,
        "best_score": result.best_score,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "updates_per_epoch": result.updates_per_epoch,
        "history": result.history,
        "params": {
            "model": model.model_dump(),
            "data": data.model_dump(),
            "training": training.model_dump(),
        },
    }


def run_job(job: StageJob) -> tuple[TrainResult, str | None, tuple, tuple]:
    """Build the network and train it: in this process, or as one rank of a DDP job."""
    distributed.init_from_environment()
    images = np.load(job.images, mmap_mode="r") if isinstance(job.images, str) else job.images
    seed_everything(job.training.seed)
    net, weights = _initial_model(
        job.model, len(job.class_names), job.backbone_init, job.init_checkpoint
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


def predict_splits(
    checkpoint: dict[str, Any],
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
    class_names = list(checkpoint["class_names"])
    if images.shape[1] != checkpoint["cache_size"]:
        raise StageInputError(
            f"the image cache holds {images.shape[1]} px images but checkpoint "
            f"{checkpoint.get('version')} was trained on {checkpoint['cache_size']} px "
            f"(data.image_size={checkpoint['image_size']}): run ingestion with "
            f"--params data.image_size={checkpoint['image_size']}"
        )
    unknown = sorted(set(manifest["label"]) - set(class_names))
    if unknown:
        raise StageInputError(
            f"{_dataset_name(manifest)} has classes the model was not trained on: "
            f"{', '.join(unknown)}"
        )
    trained_on, evaluated_on = checkpoint.get("manifest_version"), manifest.attrs.get("version")
    if trained_on and evaluated_on and trained_on != evaluated_on:
        logger.warning(
            "checkpoint %s was trained on manifest %s but is evaluated on manifest %s: if the "
            "split differs, some test images may have been seen in training",
            checkpoint.get("version"),
            trained_on,
            evaluated_on,
        )
    labels = manifest["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy()
    net = model_from_checkpoint(checkpoint)
    device = resolve_device("auto")
    outputs = {}
    for split in splits:
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        if len(rows) == 0:
            raise StageInputError(f"{_dataset_name(manifest)} has no images in the {split} split")
        started = time.perf_counter()
        result = predict(
            net,
            CachedImages(images, labels, rows, checkpoint["image_size"], train=False),
            batch_size,
            tuple(checkpoint["mean"]),
            tuple(checkpoint["std"]),
            device,
            with_embeddings=True,
            with_backbone_features=backbone_features,
        )
        logger.info(
            "%s: %s split predicted (%d images, %.0f img/s)",
            checkpoint.get("run", checkpoint.get("route")),
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


def evaluation_report(
    checkpoint: dict[str, Any],
    manifest: pd.DataFrame,
    predictions: dict[str, dict[str, Any]],
    *,
    target_precision: float,
    calibration_bins: int = 15,
    top_k: tuple[int, ...] = (3, 5),
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Test metrics, calibration and the "unknown" threshold, all chosen on validation.

    Returns the metrics, the calibration to store with the model (temperature and
    rejection threshold), the confusion matrix and the reliability diagram (test split,
    after temperature scaling).
    """
    class_names = list(checkpoint["class_names"])
    val, test = predictions["val"], predictions["test"]
    y_true, logits = test["labels"], test["logits"]
    y_pred = logits.argmax(1)
    temperature = fit_temperature(val["logits"], val["labels"])
    val_probabilities = softmax(val["logits"], temperature)
    test_probabilities = softmax(logits, temperature)
    threshold = choose_rejection_threshold(val_probabilities, val["labels"], target_precision)
    calibration = {
        "temperature": temperature,
        "rejection_threshold": threshold["threshold"],
        "target_precision": target_precision,
        "fitted_on": "val",
        "checkpoint_version": checkpoint.get("version"),
        "manifest_version": manifest.attrs.get("version"),
    }
    metrics = {
        **classification_report(y_true, y_pred, class_names, scores=logits, top_k=top_k),
        "split": "test",
        "route": checkpoint.get("route"),
        "run": checkpoint.get("run", checkpoint.get("route")),
        "seed": checkpoint.get("seed"),
        "model_name": checkpoint["model_name"],
        "dataset": _dataset_name(manifest),
        "checkpoint_version": checkpoint.get("version"),
        "manifest_version": manifest.attrs.get("version"),
        "trained_on_manifest_version": checkpoint.get("manifest_version"),
        "initial_weights": checkpoint.get("initial_weights"),
        "pretrained_weights": checkpoint.get("pretrained_weights"),
        "best_epoch": checkpoint.get("best_epoch"),
        "image_size": checkpoint["image_size"],
        "calibration": {
            "temperature": temperature,
            "bins": calibration_bins,
            "ece_before": expected_calibration_error(softmax(logits), y_true, calibration_bins),
            "ece_after": expected_calibration_error(test_probabilities, y_true, calibration_bins),
            "val_nll_before": negative_log_likelihood(val["logits"], val["labels"]),
            "val_nll_after": negative_log_likelihood(val["logits"], val["labels"], temperature),
            "test_nll_before": negative_log_likelihood(logits, y_true),
            "test_nll_after": negative_log_likelihood(logits, y_true, temperature),
        },
        "open_set": {
            "chosen_on_val": threshold,
            "test": rejection_report(test_probabilities, y_true, threshold["threshold"]),
        },
    }
    title = (
        f"{metrics['run']} · {checkpoint['model_name']} · {_dataset_name(manifest)} test "
        f"(accuracy {metrics['accuracy']:.3f}, n={metrics['n_test']})"
    )
    return (
        metrics,
        calibration,
        confusion_matrix_figure(y_true, y_pred, class_names, title),
        reliability_diagram(
            test_probabilities,
            y_true,
            calibration_bins,
            title=f"{metrics['run']}: test split after temperature scaling (T={temperature:.2f})",
        ),
    )


def model_from_checkpoint(checkpoint: dict[str, Any]) -> PlanktonNet:
    """Rebuild the network stored in ``checkpoint`` (no download: random init, then load)."""
    net, _ = build_model(
        checkpoint["model_name"],
        len(checkpoint["class_names"]),
        bottleneck_dim=checkpoint.get("bottleneck_dim", 512),
    )
    net.load_state_dict(checkpoint["state_dict"])
    return net


def model_normalisation(net: PlanktonNet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """timm's mean and std for the backbone."""
    config = timm.data.resolve_model_data_config(net.backbone)
    return tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"])


def _initial_model(
    model: ModelParams,
    num_classes: int,
    backbone_init: str,
    init_checkpoint: dict[str, Any] | None,
) -> tuple[PlanktonNet, str | None]:
    if backbone_init == "scratch":
        return build_model(model.name, num_classes, bottleneck_dim=model.bottleneck_dim)
    if backbone_init == "pretrained":
        return build_model(
            model.name,
            num_classes,
            pretrained=model.pretrained,
            bottleneck_dim=model.bottleneck_dim,
        )
    if backbone_init != "checkpoint" or init_checkpoint is None:
        raise ValueError(f"unknown backbone initialisation '{backbone_init}'")
    if init_checkpoint["model_name"] != model.name:
        raise StageInputError(
            f"the stage-1 checkpoint {init_checkpoint.get('version')} is a "
            f"'{init_checkpoint['model_name']}' but model.name is '{model.name}': "
            "run stage 1 again with this model, or set model.name to the checkpoint's"
        )
    net = model_from_checkpoint(init_checkpoint)
    net.reset_classifier(num_classes)
    return net, _describe_init("checkpoint", model, init_checkpoint)


def _pretrained_weights(
    backbone_init: str, weights: str | None, init_checkpoint: dict[str, Any] | None
) -> str | None:
    """The outside weights a model descends from (timm tag or file), through every stage."""
    if backbone_init == "pretrained":
        return weights
    if backbone_init == "checkpoint" and init_checkpoint is not None:
        return init_checkpoint.get("pretrained_weights")
    return None


def _describe_init(
    backbone_init: str, model: ModelParams, init_checkpoint: dict[str, Any] | None
) -> str:
    if backbone_init == "checkpoint" and init_checkpoint is not None:
        origin = f"{init_checkpoint.get('route')}/{init_checkpoint.get('stage')}"
        return f"{origin} checkpoint {init_checkpoint.get('version')}"
    if backbone_init == "pretrained" and model.pretrained != "none":
        return f"model.pretrained={model.pretrained}"
    return "random initialisation"


def _fingerprint(
    manifest: pd.DataFrame,
    class_names: list[str],
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    init_checkpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    """What an interrupted run must share with this one to be resumed by it."""
    used = manifest[manifest["split"].isin(["train", "val"])]
    columns = [c for c in ("rel_path", "label", "split", "sha1") if c in used.columns]
    content = pd.util.hash_pandas_object(used[columns], index=False).to_numpy().tobytes()
    return {
        "data": {
            "dataset": _dataset_name(manifest),
            "train and val images": hashlib.sha1(content).hexdigest(),
        },
        "classes": class_names,
        "model": model.model_dump(),
        "image settings": data.model_dump(),
        "training": training.model_dump(exclude=OPERATIONAL_SETTINGS),
        "initial checkpoint": _weights_digest(init_checkpoint),
    }


def _weights_digest(checkpoint: dict[str, Any] | None) -> str | None:
    if checkpoint is None:
        return None
    digest = hashlib.sha1()
    for name in sorted(checkpoint["state_dict"]):
        digest.update(name.encode())
        digest.update(checkpoint["state_dict"][name].cpu().numpy().tobytes())
    return digest.hexdigest()


def _shareable(images: np.ndarray) -> np.ndarray | str:
    """A memory-mapped cache is passed to worker processes by path, never copied."""
    filename = getattr(images, "filename", None)
    if isinstance(images, np.memmap) and filename and str(filename).endswith(".npy"):
        return str(filename)
    return images


def _check_cache(images: np.ndarray, manifest: pd.DataFrame, data: DataParams) -> None:
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


def _dataset_name(manifest: pd.DataFrame) -> str:
    return str(manifest.attrs.get("dataset", "unknown data set"))
