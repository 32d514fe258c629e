"""Learning curves drawn from a checkpoint's history."""

from __future__ import annotations

import matplotlib.pyplot as plt

from plankton_kedro.engine.analysis.curves import learning_curves
from plankton_kedro.engine.checkpoint import History
from tests.conftest import small_checkpoint

# evaluated every second epoch (eval_every 2): epochs 1 and 3 have no validation score
EPOCHS = [
    {"epoch": 1, "train_loss": 2.0, "lr_backbone": 0.05},
    {"epoch": 2, "train_loss": 1.6, "lr_backbone": 0.04, "val_f1_macro": 0.4},
    {"epoch": 3, "train_loss": 1.3, "lr_backbone": 0.02},
    {"epoch": 4, "train_loss": 1.1, "lr_backbone": 0.01, "val_f1_macro": 0.55},
]


def test_curves_plot_each_value_at_its_epoch_and_mark_the_selected_one():
    """Catches validation scores drawn at the wrong epochs (or as zeros) when not every epoch
    is evaluated, the wrong selection metric read, and the selected epoch not marked."""
    checkpoint = small_checkpoint(
        history=History(epochs=EPOCHS, selection_metric="f1_macro", best_score=0.55, best_epoch=4)
    )
    figure = learning_curves(checkpoint)
    loss_ax, score_ax, lr_ax = figure.axes
    loss = loss_ax.lines[0]
    assert list(loss.get_xdata()) == [1, 2, 3, 4] and list(loss.get_ydata()) == [2.0, 1.6, 1.3, 1.1]
    score, selected = score_ax.lines
    assert list(score.get_xdata()) == [2, 4] and list(score.get_ydata()) == [0.4, 0.55]
    assert (list(selected.get_xdata()), list(selected.get_ydata())) == ([4], [0.55])
    assert list(lr_ax.lines[0].get_ydata()) == [0.05, 0.04, 0.02, 0.01]
    plt.close(figure)
