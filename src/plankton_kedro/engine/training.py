"""The training loop of the paper's recipe: SGD with per-part learning rates, label
smoothing, an exponential-step schedule stepped per update, gradient accumulation,
"epochs" of at most N updates, validation on a fixed subset, best-checkpoint selection and
patience-based early stopping.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .config import TrainingParams
from .data import CachedImages, EpochSampler, fixed_subset, normalise
from .metrics import selection_score
from .model import PlanktonNet

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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the device named."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"training.device is '{spec}' but CUDA is not available here")
    return torch.device(spec)


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
            groups.append({"params": params, "lr": part_lr[part], "name": part})
    if not groups:
        raise ValueError("every learning rate is 0: nothing would be trained")
    return torch.optim.SGD(
        groups,
        lr=groups[0]["lr"],
        momentum=training.momentum,
        nesterov=training.nesterov and training.momentum > 0,
        weight_decay=training.weight_decay,
    )


def updates_per_epoch(n_train: int, training: TrainingParams) -> int:
    """Optimiser updates in one epoch: one pass over the data, at most the configured cap."""
    per_update = training.batch_size * training.accumulation_steps
    if n_train < per_update:
        raise ValueError(
            f"the train split has {n_train} images, fewer than one optimiser update needs "
            f"(batch_size {training.batch_size} x accumulation_steps "
            f"{training.accumulation_steps} = {per_update}); lower training.batch_size or "
            "add images"
        )
    return min(training.max_updates_per_epoch, n_train // per_update)


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
) -> TrainResult:
    """Train ``model`` in place and return the best weights (by validation score)."""
    device = resolve_device(training.device)
    model.to(device)
    mean_t = torch.tensor(mean, device=device)
    std_t = torch.tensor(std, device=device)
    steps_per_epoch = updates_per_epoch(len(train_set), training)
    num_steps = training.max_epochs * steps_per_epoch
    optimizer = build_optimizer(model, training, backbone_pretrained=backbone_pretrained)
    schedule = training.scheduler
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, num_steps, schedule.gamma, schedule.power)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    val_positions = fixed_subset(np.arange(len(val_set)), training.max_val_images, training.seed)
    val_subset = torch.utils.data.Subset(val_set, val_positions.tolist())
    samples_per_epoch = steps_per_epoch * training.batch_size * training.accumulation_steps

    result = TrainResult({}, best_epoch=-1, best_score=-1.0, updates_per_epoch=steps_per_epoch)
    epochs_without_improvement = 0
    started = time.perf_counter()
    for epoch in range(1, training.max_epochs + 1):
        epoch_start = time.perf_counter()
        loss = _train_one_epoch(
            model,
            DataLoader(
                train_set,
                batch_size=training.batch_size,
                sampler=EpochSampler(
                    len(train_set), samples_per_epoch, seed=training.seed, epoch=epoch
                ),
                num_workers=training.num_workers,
                pin_memory=device.type == "cuda",
            ),
            optimizer,
            scheduler,
            criterion,
            training.accumulation_steps,
            lambda batch: normalise(batch.to(device, non_blocking=True), mean_t, std_t),
            device,
        )
        train_seconds = time.perf_counter() - epoch_start
        y_true, logits = predict_logits(
            model, val_subset, training.eval_batch_size, mean, std, device, training.num_workers
        )
        score = selection_score(y_true, logits.argmax(1), training.selection_metric)
        improved = score > result.best_score
        if improved:
            result.best_score, result.best_epoch = score, epoch
            result.state_dict = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            epochs_without_improvement = 0
        elif epoch > training.min_epochs:
            epochs_without_improvement += 1
        images_per_second = samples_per_epoch / train_seconds
        result.history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                f"val_{training.selection_metric}": score,
                "lr_backbone": _group_lr(optimizer, "backbone"),
                "images_per_second": images_per_second,
                "seconds": time.perf_counter() - epoch_start,
            }
        )
        elapsed = time.perf_counter() - started
        eta = elapsed / epoch * (training.max_epochs - epoch)
        logger.info(
            "%sepoch %d/%d · loss %.4f · val %s %.4f (best %.4f @%d) · %.0f img/s · ETA %s",
            log_prefix,
            epoch,
            training.max_epochs,
            loss,
            training.selection_metric,
            score,
            result.best_score,
            result.best_epoch,
            images_per_second,
            _format_seconds(eta),
        )
        if epoch >= training.min_epochs and epochs_without_improvement >= training.patience:
            result.stopped_early = epoch < training.max_epochs
            logger.info(
                "%sstopping early: no improvement for %d evaluations after epoch %d",
                log_prefix,
                epochs_without_improvement,
                training.min_epochs,
            )
            break
    return result


def _train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    accumulation_steps: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> float:
    model.train()
    total, batches = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (images, labels) in enumerate(loader, start=1):
        logits = model(prepare(images))[2]
        loss = criterion(logits, labels.to(device, non_blocking=True))
        (loss / accumulation_steps).backward()
        if i % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        total += loss.item()
        batches += 1
    return total / max(1, batches)


@torch.inference_mode()
def predict_logits(
    model: PlanktonNet,
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits for every item of ``dataset`` (evaluation mode, centre crops)."""
    device = torch.device(device)
    model.to(device).eval()
    mean_t = torch.tensor(mean, device=device)
    std_t = torch.tensor(std, device=device)
    labels, logits = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        logits.append(model(normalise(images.to(device), mean_t, std_t))[2].float().cpu())
        labels.append(targets)
    if not logits:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return torch.cat(labels).numpy(), torch.cat(logits).numpy()


def _group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    return next((g["lr"] for g in optimizer.param_groups if g.get("name") == name), 0.0)


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
