"""Training one stage to its best validation score: the epochs, evaluation every k epochs on
a fixed validation subset, best-checkpoint selection, patience-based early stopping, mixed
precision, DDP, and a resumable state written after every epoch.

Every random choice is derived from (seed, epoch, rank): the order of samples and each
sample's augmentation from :class:`~.data.EpochSampler`, and the torch RNG (dropout,
drop-path) is re-seeded at the start of every epoch. A resumed run therefore repeats exactly
what the interrupted one would have done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plankton_kedro.engine.config import TrainingParams

from . import distributed
from .data import CachedImages, EpochSampler, augment_batch, fixed_subset, normalise
from .loop import evaluate, train_one_epoch, wrap_for_training
from .model import PlanktonNet
from .resume import TrainingStateStore
from .runtime import autocast, resolve_device, resolve_precision
from .schedule import PHASE_LABELS, RecipeSchedule, early_stopping_from, updates_per_epoch

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training stage produced: the best weights and how it got there."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    updates_per_epoch: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Progress:
    """Counters that, with the weights and the schedule, make up the resumable state."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    evaluations_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


def fit(
    model: PlanktonNet,
    train_set: CachedImages,
    val_set: CachedImages,
    training: TrainingParams,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    backbone_pretrained: bool,
    log_prefix: str = "",
    store: TrainingStateStore | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the best weights (by validation score).

    Runs as one process, or as one rank of a DDP job when a process group is initialised.
    With ``store``, the state is saved after every epoch and an interrupted run resumed.
    """
    layout = distributed.current()
    device = resolve_device(training.device, layout.local_rank)
    precision = resolve_precision(training.precision, device)
    model.to(device)
    if training.channels_last:
        model.to(memory_format=torch.channels_last)
    runner = wrap_for_training(model, training, layout, device)
    steps_per_epoch = updates_per_epoch(len(train_set), training, layout.world_size)
    total_epochs = training.warmup_epochs + training.max_epochs
    schedule = RecipeSchedule(
        model,
        training,
        backbone_pretrained=backbone_pretrained,
        updates_per_epoch=steps_per_epoch,
    )
    patience_from = early_stopping_from(training, schedule.kind)
    runtime = {
        "device": str(device),
        "precision": precision,
        "world_size": layout.world_size,
        "torch_threads": torch.get_num_threads(),
        "lr_schedule": schedule.kind,
        "early_stopping_from_epoch": patience_from,
    }
    if layout.is_main:
        logger.info(
            "%straining on %s, %s, %d process(es), %d torch thread(s) each; lr schedule %s, "
            "early stopping after epoch %d",
            log_prefix,
            runtime["device"],
            runtime["precision"],
            runtime["world_size"],
            runtime["torch_threads"],
            runtime["lr_schedule"],
            runtime["early_stopping_from_epoch"],
        )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    criterion = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)

    def prepare(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(batch, list):  # whole images + crop/flip plans: augment on the device
            whole, plans = batch
            batch = augment_batch(whole.to(device, non_blocking=True), plans, train_set.crop_size)
        images = normalise(batch.to(device, non_blocking=True), mean_t, std_t)
        return (
            images.contiguous(memory_format=torch.channels_last)
            if training.channels_last
            else images
        )

    val_positions = fixed_subset(np.arange(len(val_set)), training.max_val_images, training.seed)
    progress = _Progress()
    resumed_from, finished = _resume(store, training, model, schedule, scaler, progress, log_prefix)
    samples_per_epoch = (
        steps_per_epoch * training.batch_size * training.accumulation_steps * layout.world_size
    )
    started, first_epoch = time.perf_counter(), progress.epoch + 1
    for epoch in range(first_epoch, 0 if finished else total_epochs + 1):
        epoch_start = time.perf_counter()
        phase = schedule.start_epoch(epoch)
        torch.manual_seed(hash((training.seed, epoch, layout.rank)) % 2**63)
        sampler = EpochSampler(
            len(train_set),
            samples_per_epoch,
            seed=training.seed,
            epoch=epoch,
            batch_size=training.batch_size,
            rank=layout.rank,
            world_size=layout.world_size,
            blocks=train_set.read_blocks(),
        )
        loader = DataLoader(
            train_set,
            batch_size=training.batch_size,
            sampler=sampler,
            num_workers=training.num_workers,
            pin_memory=device.type == "cuda",
        )
        loss = train_one_epoch(
            runner,
            loader,
            schedule,
            scaler,
            criterion,
            accumulation_steps=training.accumulation_steps,
            prepare=prepare,
            precision_context=autocast(device, precision),
            layout=layout,
        )
        seconds = time.perf_counter() - epoch_start
        entry = {
            "epoch": epoch,
            "phase": phase,
            "train_loss": loss,
            "lr_backbone": schedule.learning_rate("backbone"),
            "images_per_second": samples_per_epoch / seconds,
            "seconds": seconds,
        }
        main_epoch = epoch - training.warmup_epochs
        evaluating = phase == "main" and (
            main_epoch % training.eval_every == 0 or epoch == total_epochs
        )
        if evaluating:
            score = evaluate(
                model, val_set, val_positions, training, mean, std, device, precision, layout
            )
            entry[f"val_{training.selection_metric}"] = score
            if score > progress.best_score:
                progress.best_score, progress.best_epoch = score, epoch
                progress.best_state = {
                    k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                }
                progress.evaluations_without_improvement = 0
            elif main_epoch > patience_from:
                progress.evaluations_without_improvement += 1
        progress.history.append(entry)
        progress.epoch = epoch
        if layout.is_main:
            _log_epoch(log_prefix, entry, training, progress, total_epochs, started, first_epoch)
        stop = (
            evaluating
            and main_epoch >= patience_from
            and progress.evaluations_without_improvement >= training.patience
        )
        complete = stop or epoch == total_epochs
        if store is not None:
            _save_state(store, model, schedule, scaler, progress, complete, layout)
        if stop:
            logger.info(
                "%sstopping early: %d evaluations without improvement after epoch %d",
                log_prefix,
                progress.evaluations_without_improvement,
                patience_from,
            )
            break
    return TrainResult(
        state_dict=progress.best_state,
        best_epoch=progress.best_epoch,
        best_score=progress.best_score,
        history=progress.history,
        updates_per_epoch=steps_per_epoch,
        stopped_early=progress.epoch < total_epochs,
        resumed_from_epoch=resumed_from,
        runtime=runtime,
    )


def _resume(
    store: TrainingStateStore | None,
    training: TrainingParams,
    model: PlanktonNet,
    schedule: RecipeSchedule,
    scaler: torch.amp.GradScaler,
    progress: _Progress,
    log_prefix: str,
) -> tuple[int | None, bool]:
    """Restore a previous run into ``model``/``schedule``/``progress``: the epoch it
    resumes from, and whether that run had already finished (nothing left to train)."""
    if store is None:
        return None, False
    if not training.resume:
        if distributed.current().is_main:
            store.discard()
        distributed.barrier()
        return None, False
    state = store.load_resumable()
    if state is None:
        return None, False
    for name in ("epoch", "best_score", "best_epoch", "history", "best_state"):
        setattr(progress, name, state[name])
    progress.evaluations_without_improvement = state["evaluations_without_improvement"]
    if state["complete"]:
        logger.info(
            "%salready trained with the same data and settings: reusing %s (best %.4f @%d); "
            "--params training.resume=false trains again",
            log_prefix,
            store.path,
            progress.best_score,
            progress.best_epoch,
        )
        return None, True
    model.load_state_dict(state["model"])
    schedule.load_state_dict(state)
    scaler.load_state_dict(state["scaler"])
    logger.info(
        "%sresuming the interrupted run from %s after epoch %d (best %.4f @%d)",
        log_prefix,
        store.path,
        progress.epoch,
        progress.best_score,
        progress.best_epoch,
    )
    return progress.epoch, False


def _save_state(
    store: TrainingStateStore,
    model: PlanktonNet,
    schedule: RecipeSchedule,
    scaler: torch.amp.GradScaler,
    progress: _Progress,
    complete: bool,
    layout: distributed.Distributed,
) -> None:
    """Save what resuming needs; a finished stage keeps only what reusing it needs (its best
    weights and history), not the last weights and optimiser state to continue from: a third
    of the disk, or less with momentum or Adam-like optimisers."""
    if layout.is_main:
        state = {
            "complete": complete,
            "epoch": progress.epoch,
            "best_score": progress.best_score,
            "best_epoch": progress.best_epoch,
            "evaluations_without_improvement": progress.evaluations_without_improvement,
            "history": progress.history,
            "best_state": progress.best_state,
        }
        if not complete:
            state |= {
                "model": model.state_dict(),
                "scaler": scaler.state_dict(),
                **schedule.state_dict(),  # "optimizer", "main_updates"
            }
        store.save(state)
    distributed.barrier()


def _log_epoch(
    prefix: str,
    entry: dict[str, Any],
    training: TrainingParams,
    progress: _Progress,
    total_epochs: int,
    started: float,
    first_epoch: int,
) -> None:
    epoch = entry["epoch"]
    elapsed = time.perf_counter() - started
    eta = elapsed / (epoch - first_epoch + 1) * (total_epochs - epoch)
    metric = f"val_{training.selection_metric}"
    if metric in entry:
        detail = (
            f"val {training.selection_metric} {entry[metric]:.4f} "
            f"(best {progress.best_score:.4f} @{progress.best_epoch})"
        )
    else:
        detail = PHASE_LABELS.get(entry["phase"], "not evaluated this epoch")
    logger.info(
        "%sepoch %d/%d · loss %.4f · %s · %.0f img/s · ETA %s",
        prefix,
        epoch,
        total_epochs,
        entry["train_loss"],
        detail,
        entry["images_per_second"],
        _format_seconds(eta),
    )


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
