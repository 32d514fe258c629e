"""The training loop of the paper's recipe.

SGD (Nesterov) with per-part learning rates, label smoothing, an optional two-step warm-up,
the exponential-step schedule stepped per optimiser update, gradient accumulation, "epochs"
of at most N updates, evaluation every k epochs on a fixed validation subset, best-checkpoint
selection, patience-based early stopping, mixed precision, DDP, and a resumable state
written after every epoch.

Every random choice is derived from (seed, epoch, rank): the order of samples and each
sample's augmentation from :class:`EpochSampler`, and the torch RNG (dropout, drop-path)
is re-seeded at the start of every epoch. A resumed run therefore repeats exactly what the
interrupted one would have done.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import distributed
from .config import TrainingParams, WarmupParams
from .data import CachedImages, EpochSampler, augment_batch, fixed_subset, normalise
from .metrics import selection_score
from .model import PlanktonNet
from .resume import TrainingStateStore

logger = logging.getLogger(__name__)

PHASE_LABELS = {"frozen": "warm-up, backbone frozen", "low_lr": "warm-up, backbone at low lr"}


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available (this rank's GPU), else CPU; otherwise as named."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"training.device is '{spec}' but CUDA is not available here")
    return torch.device(spec)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> fp16 on CUDA; bf16 on CPUs with AMX (where it pays off), else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return "bf16" if amx else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("training.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def lr_multiplier(step: int, num_steps: int, gamma: float, power: float) -> float:
    """Exponential-step decay factor: ``(1 + gamma * step / num_steps) ** -power``."""
    return (1.0 + gamma * step / max(1, num_steps)) ** -power


def build_optimizer(
    model: PlanktonNet, training: TrainingParams, *, backbone_pretrained: bool
) -> torch.optim.SGD:
    """SGD (Nesterov) with one parameter group per part; parts at lr 0 are frozen."""
    rates = training.lr
    backbone_lr = rates.backbone if backbone_pretrained else rates.backbone_from_scratch
    part_lr = {
        "backbone": backbone_lr,
        "bottleneck": rates.bottleneck,
        "classifier": rates.classifier,
    }
    groups = []
    for part, params in model.parameter_groups().items():
        trainable = part_lr[part] > 0
        for p in params:
            p.requires_grad_(trainable)
        if trainable:
            groups.append(
                {"params": params, "lr": part_lr[part], "base_lr": part_lr[part], "name": part}
            )
    if not groups:
        raise ValueError("every learning rate is 0: nothing would be trained")
    return torch.optim.SGD(
        groups,
        lr=groups[0]["lr"],
        momentum=training.momentum,
        nesterov=training.nesterov and training.momentum > 0,
        weight_decay=training.weight_decay,
    )


def updates_per_epoch(n_train: int, training: TrainingParams, world_size: int = 1) -> int:
    """Optimiser updates in one epoch: one pass over the data, at most the configured cap."""
    per_update = training.batch_size * training.accumulation_steps * world_size
    if n_train < per_update:
        raise ValueError(
            f"the train split has {n_train} images, fewer than one optimiser update needs "
            f"(batch_size {training.batch_size} x accumulation_steps "
            f"{training.accumulation_steps} x {world_size} process(es) = {per_update}); "
            "lower training.batch_size or add images"
        )
    return min(training.max_updates_per_epoch, n_train // per_update)


def phase_of(epoch: int, warmup: WarmupParams) -> str:
    """``frozen``, ``low_lr`` (the two warm-up steps) or ``main`` for a 1-based epoch."""
    if epoch <= warmup.frozen_epochs:
        return "frozen"
    if epoch <= warmup.frozen_epochs + warmup.low_lr_epochs:
        return "low_lr"
    return "main"


def set_learning_rates(
    optimizer: torch.optim.Optimizer, phase: str, multiplier: float, warmup: WarmupParams
) -> None:
    """Each group's lr for this update: warm-up steps fix the backbone's, the main phase
    scales every base rate by the schedule's multiplier."""
    for group in optimizer.param_groups:
        if phase == "main":
            group["lr"] = group["base_lr"] * multiplier
        elif group["name"] == "backbone":
            group["lr"] = 0.0 if phase == "frozen" else warmup.backbone_lr
        else:
            group["lr"] = group["base_lr"]


@dataclass
class _Progress:
    """Counters that, with the weights and optimiser, make up the resumable state."""

    epoch: int = 0
    main_updates: int = 0
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
    runner = _wrap_for_training(model, training, layout, device)
    steps_per_epoch = updates_per_epoch(len(train_set), training, layout.world_size)
    num_steps = training.max_epochs * steps_per_epoch
    total_epochs = training.warmup_epochs + training.max_epochs
    optimizer = build_optimizer(model, training, backbone_pretrained=backbone_pretrained)
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
    resumed_from, finished = _resume(
        store, training, model, optimizer, scaler, progress, log_prefix
    )
    samples_per_epoch = (
        steps_per_epoch * training.batch_size * training.accumulation_steps * layout.world_size
    )
    started, first_epoch = time.perf_counter(), progress.epoch + 1
    for epoch in range(first_epoch, 0 if finished else total_epochs + 1):
        epoch_start = time.perf_counter()
        phase = phase_of(epoch, training.warmup)
        if epoch > 1 and phase != phase_of(epoch - 1, training.warmup):
            _reset_momentum(optimizer, "backbone")
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
        loss = _train_one_epoch(
            runner, loader, optimizer, scaler, criterion, training, phase, progress,
            num_steps, prepare, autocast(device, precision), layout,
        )  # fmt: skip
        seconds = time.perf_counter() - epoch_start
        entry = {
            "epoch": epoch,
            "phase": phase,
            "train_loss": loss,
            "lr_backbone": _group_lr(optimizer, "backbone"),
            "images_per_second": samples_per_epoch / seconds,
            "seconds": seconds,
        }
        main_epoch = epoch - training.warmup_epochs
        evaluate = phase == "main" and (
            main_epoch % training.eval_every == 0 or epoch == total_epochs
        )
        if evaluate:
            score = _validation_score(
                model, val_set, val_positions, training, mean, std, device, precision, layout
            )
            entry[f"val_{training.selection_metric}"] = score
            if score > progress.best_score:
                progress.best_score, progress.best_epoch = score, epoch
                progress.best_state = {
                    k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                }
                progress.evaluations_without_improvement = 0
            elif main_epoch > training.min_epochs:
                progress.evaluations_without_improvement += 1
        progress.history.append(entry)
        progress.epoch = epoch
        if layout.is_main:
            _log_epoch(log_prefix, entry, training, progress, total_epochs, started, first_epoch)
        stop = (
            evaluate
            and main_epoch >= training.min_epochs
            and progress.evaluations_without_improvement >= training.patience
        )
        complete = stop or epoch == total_epochs
        if store is not None:
            _save_state(store, model, optimizer, scaler, progress, complete, layout)
        if stop:
            logger.info(
                "%sstopping early: %d evaluations without improvement after epoch %d",
                log_prefix,
                progress.evaluations_without_improvement,
                training.min_epochs,
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
    )


def _wrap_for_training(
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


def _train_one_epoch(
    runner: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    criterion: nn.Module,
    training: TrainingParams,
    phase: str,
    progress: _Progress,
    num_steps: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    precision_context: contextlib.AbstractContextManager,
    layout: distributed.Distributed,
) -> float:
    runner.train()
    accumulation = training.accumulation_steps
    schedule = training.scheduler
    total, batches = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (images, labels) in enumerate(loader, start=1):
        updating = i % accumulation == 0
        sync = contextlib.nullcontext() if updating or not layout.enabled else runner.no_sync()
        with sync:
            with precision_context:
                logits = runner(prepare(images))[2]
            loss = criterion(logits.float(), labels.to(logits.device, non_blocking=True))
            scaler.scale(loss / accumulation).backward()
        if updating:
            multiplier = lr_multiplier(
                progress.main_updates, num_steps, schedule.gamma, schedule.power
            )
            set_learning_rates(optimizer, phase, multiplier, training.warmup)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if phase == "main":
                progress.main_updates += 1
        total += loss.item()
        batches += 1
    return distributed.mean_over_ranks(total / max(1, batches))


def _validation_score(
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


def _resume(
    store: TrainingStateStore | None,
    training: TrainingParams,
    model: PlanktonNet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    progress: _Progress,
    log_prefix: str,
) -> tuple[int | None, bool]:
    """Restore a previous run into ``model``/``optimizer``/``progress``: the epoch it
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
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    for name in ("epoch", "main_updates", "best_score", "best_epoch", "history", "best_state"):
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
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    progress: _Progress,
    complete: bool,
    layout: distributed.Distributed,
) -> None:
    if layout.is_main:
        store.save(
            {
                "complete": complete,
                "epoch": progress.epoch,
                "main_updates": progress.main_updates,
                "best_score": progress.best_score,
                "best_epoch": progress.best_epoch,
                "evaluations_without_improvement": progress.evaluations_without_improvement,
                "history": progress.history,
                "best_state": progress.best_state,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
            }
        )
    distributed.barrier()


def _reset_momentum(optimizer: torch.optim.Optimizer, part: str) -> None:
    """Drop a part's momentum when its warm-up step ends (stale, lr-0 gradients)."""
    for group in optimizer.param_groups:
        if group["name"] == part:
            for p in group["params"]:
                optimizer.state[p].pop("momentum_buffer", None)


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


def _group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    return next((g["lr"] for g in optimizer.param_groups if g.get("name") == name), 0.0)


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
