"""One epoch of training and one evaluation, as in torchvision's reference ``train.py``:
``train_one_epoch`` and ``evaluate`` know nothing of epochs' order, resuming or stopping
(that is :mod:`.fit`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from plankton_kedro.engine.analysis.metrics import selection_score
from plankton_kedro.engine.config import TrainingParams

from . import distributed
from .data import CachedImages
from .inference import predict
from .model import PlanktonNet
from .schedule import RecipeSchedule


def wrap_for_training(
    model: PlanktonNet, training: TrainingParams, layout: distributed.Distributed, device
) -> nn.Module:
    """DDP when distributed (with SyncBatchNorm on GPUs; torch has none for CPU, where each
    process normalises its own batch), then ``torch.compile`` when asked."""
    runner: nn.Module = model
    if layout.enabled:
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        runner = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if training.compile:
        runner = torch.compile(runner)
    return runner


def train_one_epoch(
    runner: nn.Module,
    loader: DataLoader,
    schedule: RecipeSchedule,
    scaler: torch.amp.GradScaler,
    criterion: nn.Module,
    *,
    accumulation_steps: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    precision_context: contextlib.AbstractContextManager,
    layout: distributed.Distributed,
) -> float:
    """One pass over ``loader``, an optimiser update every ``accumulation_steps`` batches (the
    gradients of the others are not synchronised across ranks); the mean batch loss."""
    runner.train()
    total, batches = 0.0, 0
    schedule.optimizer.zero_grad(set_to_none=True)
    for i, (images, labels) in enumerate(loader, start=1):
        updating = i % accumulation_steps == 0
        sync = contextlib.nullcontext() if updating or not layout.enabled else runner.no_sync()
        with sync:
            with precision_context:
                logits = runner(prepare(images))[2]
            loss = criterion(logits.float(), labels.to(logits.device, non_blocking=True))
            scaler.scale(loss / accumulation_steps).backward()
        if updating:
            schedule.step(scaler)
        total += loss.item()
        batches += 1
    return distributed.mean_over_ranks(total / max(1, batches))


def evaluate(
    model: PlanktonNet,
    val_set: CachedImages,
    positions: np.ndarray,
    training: TrainingParams,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    precision: str,
    layout: distributed.Distributed,
) -> float:
    """Selection metric on the fixed validation subset, each rank scoring its share."""
    shard = Subset(val_set, positions[layout.rank :: layout.world_size].tolist())
    outputs = predict(
        model, shard, training.eval_batch_size, mean, std, device, training.num_workers,
        precision=precision,
    )  # fmt: skip
    y_true, logits = outputs.labels, outputs.logits
    parts = distributed.all_gather_objects((y_true, logits.argmax(1) if len(logits) else y_true))
    y_true = np.concatenate([t for t, _ in parts])
    y_pred = np.concatenate([p for _, p in parts])
    return selection_score(y_true, y_pred, training.selection_metric)
