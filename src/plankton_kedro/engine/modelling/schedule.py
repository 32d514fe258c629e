"""The paper's optimiser and learning-rate schedule, as one object that is saved and restored
with a resumable run (``state_dict`` / ``load_state_dict``, as torch's schedulers).

SGD (Nesterov) with one parameter group per part of the network (backbone, bottleneck,
classifier; a part at lr 0 is frozen), an optional two-step warm-up (backbone frozen, then at a
low rate) and, in the main phase, a multiple of lr0 stepped per optimiser update: the paper's
inverse decay ``(1 + gamma * i / num_steps) ** -power`` or torch's OneCycle shape.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from plankton_kedro.engine.config import SchedulerParams, TrainingParams, WarmupParams
from plankton_kedro.engine.errors import StageInputError

from .model import PlanktonNet

PHASE_LABELS = {"frozen": "warm-up, backbone frozen", "low_lr": "warm-up, backbone at low lr"}


class RecipeSchedule:
    """The optimiser of ``model`` and its position in the schedule."""

    def __init__(
        self,
        model: PlanktonNet,
        training: TrainingParams,
        *,
        backbone_pretrained: bool,
        updates_per_epoch: int,
    ):
        self.optimizer = build_optimizer(model, training, backbone_pretrained=backbone_pretrained)
        self.warmup = training.warmup
        self.scheduler = training.scheduler
        self.kind = scheduler_kind(training.scheduler, backbone_pretrained=backbone_pretrained)
        self.num_steps = training.max_epochs * updates_per_epoch
        self.main_updates = 0
        self.phase = "main"

    def start_epoch(self, epoch: int) -> str:
        """Enter 1-based ``epoch``: its phase (``frozen``, ``low_lr`` or ``main``); a part's
        momentum is dropped when its warm-up step ends (stale, lr-0 gradients)."""
        phase = phase_of(epoch, self.warmup)
        if epoch > 1 and phase != phase_of(epoch - 1, self.warmup):
            for group in self._groups("backbone"):
                for p in group["params"]:
                    self.optimizer.state[p].pop("momentum_buffer", None)
        self.phase = phase
        return phase

    def step(self, scaler: torch.amp.GradScaler) -> None:
        """One optimiser update at this point of the schedule, then clear the gradients."""
        multiplier = schedule_multiplier(
            self.kind, self.scheduler, self.main_updates, self.num_steps
        )
        set_learning_rates(self.optimizer, self.phase, multiplier, self.warmup)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.phase == "main":
            self.main_updates += 1

    def learning_rate(self, part: str) -> float:
        """The current lr of a part (0 when it is frozen or not trained)."""
        return next((g["lr"] for g in self._groups(part)), 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "main_updates": self.main_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.main_updates = state["main_updates"]

    def _groups(self, part: str) -> list[dict[str, Any]]:
        return [g for g in self.optimizer.param_groups if g.get("name") == part]


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
        raise StageInputError("every learning rate is 0 (training.lr): nothing would be trained")
    return torch.optim.SGD(
        groups,
        lr=groups[0]["lr"],
        momentum=training.momentum,
        nesterov=training.nesterov and training.momentum > 0,
        weight_decay=training.weight_decay,
    )


def scheduler_kind(scheduler: SchedulerParams, *, backbone_pretrained: bool) -> str:
    """``one_cycle`` or ``inverse_decay``; ``auto`` picks OneCycle for a backbone trained from
    random weights (measured better, docs/results.md) and the paper's inverse decay for
    fine-tuning pretrained weights."""
    if scheduler.kind != "auto":
        return scheduler.kind
    return "inverse_decay" if backbone_pretrained else "one_cycle"


ONE_CYCLE_EARLY_STOP_FROM = 0.8


def early_stopping_from(training: TrainingParams, kind: str) -> int:
    """The main-phase epoch after which patience counts: ``min_epochs``, and under OneCycle
    not before 80 % of ``max_epochs`` (earlier, its lr is high and validation scores are low
    by design: one run stopped at epoch 11 of 18 lost 37 points, docs/results.md)."""
    if kind == "one_cycle":
        return max(training.min_epochs, math.ceil(ONE_CYCLE_EARLY_STOP_FROM * training.max_epochs))
    return training.min_epochs


def schedule_multiplier(kind: str, scheduler: SchedulerParams, step: int, num_steps: int) -> float:
    """The multiple of lr0 at main-phase update ``step`` of ``num_steps``."""
    if kind == "one_cycle":
        return one_cycle_multiplier(step, num_steps, scheduler.warmup_fraction)
    return lr_multiplier(step, num_steps, scheduler.gamma, scheduler.power)


def one_cycle_multiplier(step: int, num_steps: int, warmup_fraction: float = 0.3) -> float:
    """torch's OneCycleLR shape (cosine, div 25, final div 1e4) as a multiple of lr0."""
    initial, final = 1 / 25, 1 / 25 / 1e4
    warm_end = max(warmup_fraction * num_steps - 1, 1.0)
    if step <= warm_end:
        start, end, progress = initial, 1.0, step / warm_end
    else:
        start, end = 1.0, final
        progress = (step - warm_end) / max(num_steps - 1 - warm_end, 1.0)
    return end + (start - end) / 2 * (math.cos(math.pi * min(progress, 1.0)) + 1)


def lr_multiplier(step: int, num_steps: int, gamma: float, power: float) -> float:
    """Exponential-step decay factor: ``(1 + gamma * step / num_steps) ** -power``."""
    return (1.0 + gamma * step / max(1, num_steps)) ** -power


def updates_per_epoch(n_train: int, training: TrainingParams, world_size: int = 1) -> int:
    """Optimiser updates in one epoch: one pass over the data, at most the configured cap."""
    per_update = training.batch_size * training.accumulation_steps * world_size
    if n_train < per_update:
        raise StageInputError(
            f"the train split has {n_train} images, fewer than one optimiser update needs "
            f"(batch_size {training.batch_size} x accumulation_steps "
            f"{training.accumulation_steps} x {world_size} process(es) = {per_update}); "
            "lower training.batch_size or add images"
        )
    full_pass = n_train // per_update
    cap = training.max_updates_per_epoch
    return full_pass if cap is None else min(cap, full_pass)


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
