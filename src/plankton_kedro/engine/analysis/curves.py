"""Learning curves of a trained stage, drawn from the per-epoch history in its checkpoint."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from plankton_kedro.engine.checkpoint import Checkpoint  # noqa: E402


def learning_curves(checkpoint: Checkpoint) -> plt.Figure:
    """Train loss, validation score (selected epoch marked) and backbone learning rate per
    epoch, with where and how the stage was trained in the title."""
    history, identity = checkpoint.history, checkpoint.identity
    epochs = history.epochs
    score_key = f"val_{history.selection_metric or 'accuracy'}"
    fig, (loss_ax, score_ax, lr_ax) = plt.subplots(3, 1, figsize=(6.5, 7), sharex=True)
    loss_ax.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], "o-", ms=3)
    loss_ax.set_ylabel("train loss")
    scored = [e for e in epochs if e.get(score_key) is not None]
    score_ax.plot([e["epoch"] for e in scored], [e[score_key] for e in scored], "o-", ms=3)
    if history.best_epoch is not None and history.best_score is not None:
        score_ax.plot(
            [history.best_epoch], [history.best_score], "r*", ms=12,
            label=f"selected: epoch {history.best_epoch}, {history.best_score:.4f}",
        )  # fmt: skip
        score_ax.legend(loc="lower right")
    score_ax.set_ylabel(score_key.replace("_", " "))
    lr_ax.plot(
        [e["epoch"] for e in epochs], [e.get("lr_backbone", 0.0) for e in epochs], "o-", ms=3
    )
    lr_ax.set_ylabel("backbone lr (end of epoch)")
    lr_ax.set_xlabel("epoch")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, score_ax, lr_ax):
        ax.grid(alpha=0.3)
    runtime = history.runtime
    where = ", ".join(
        str(runtime[key]) for key in ("device", "precision", "lr_schedule") if key in runtime
    )
    fig.suptitle(
        f"{identity.run or identity.route}/{identity.stage}: {checkpoint.model_name} on "
        f"{identity.dataset}" + (f"\n{where}" if where else ""),
        fontsize=10,
    )
    fig.tight_layout()
    return fig
