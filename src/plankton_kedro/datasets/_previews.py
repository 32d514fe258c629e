"""What kedro-viz shows for our datasets: a checkpoint's identity, images per class.

kedro-viz calls a dataset's ``preview()`` and renders the result by the name of its return
annotation (``TablePreview``: a ``DataFrame.to_dict(orient="split")`` table, ``JSONPreview``:
a JSON string), so the dataset methods stay one-liners around these functions.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from kedro_datasets._typing import ImagePreview, JSONPreview, TablePreview
from PIL import Image

from plankton_kedro.engine.checkpoint import AnyCheckpoint, EnsembleCheckpoint
from plankton_kedro.engine.collection.layouts import IMAGE_EXTENSIONS

SPLIT_COLUMNS = ["train", "val", "test"]


def checkpoint_preview(checkpoint: AnyCheckpoint) -> JSONPreview:
    """Model, classes, image size and best validation score of a checkpoint (or an ensemble's
    members and weights), without the weights."""
    if isinstance(checkpoint, EnsembleCheckpoint):
        summary = {
            "kind": "ensemble",
            "members": checkpoint.member_names,
            "models": [member.model_name for member in checkpoint.members],
            "weights": checkpoint.weights,
            "mode": checkpoint.mode,
        }
    else:
        history = checkpoint.history
        summary = {
            "model_name": checkpoint.model_name,
            "route": checkpoint.label,
            "stage": checkpoint.identity.stage,
            "trained_on": checkpoint.identity.dataset,
            "best_score": history.best_score,
            "selection_metric": history.selection_metric,
            "best_epoch": history.best_epoch,
            "epochs_run": len(history.epochs),
            "initial_weights": history.initial_weights,
        }
    summary |= {
        "image_size": checkpoint.preprocessing.image_size,
        "fill": checkpoint.preprocessing.fill,
        "n_classes": len(checkpoint.class_names),
        "class_names": list(checkpoint.class_names),
        "version": checkpoint.version,
    }
    return JSONPreview(json.dumps(summary))


def manifest_preview(manifest: pd.DataFrame) -> TablePreview:
    """Images per class and split of a manifest, with a total row."""
    counts = pd.crosstab(manifest["label"], manifest["split"])
    return _count_table(counts)


def image_source_preview(
    paths: Iterable[str], layout: str, exclude_classes: Sequence[str] = ()
) -> TablePreview:
    """Image files per class folder of a raw collection (by extension, before validation); per
    official split too for the ``split_folders`` layout; one total for ``unlabelled``."""
    rows = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if PurePosixPath(path).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if layout == "split_folders" and len(parts) >= 3:
            rows.append((parts[1], parts[0]))
        elif layout == "imagefolder" and len(parts) >= 2:
            rows.append((parts[0], "files"))
        elif layout == "unlabelled":
            rows.append(("(unlabelled)", "files"))
    frame = pd.DataFrame(rows, columns=["label", "split"])
    frame = frame[~frame["label"].isin(exclude_classes)]
    return _count_table(pd.crosstab(frame["label"], frame["split"]))


def image_grid_preview(images: Any, columns: int = 8, rows: int = 4) -> ImagePreview:
    """A PNG grid of up to ``columns`` x ``rows`` cached images spread evenly over the cache
    (base64): what the model is fed, padding and resizing included."""
    count = len(images)
    chosen = np.unique(np.linspace(0, count - 1, min(count, columns * rows)).astype(int))
    side = images.shape[1]
    grid = np.full((rows * side, columns * side, 3), 255, dtype=np.uint8)
    for slot, row in enumerate(chosen):
        top, left = (slot // columns) * side, (slot % columns) * side
        grid[top : top + side, left : left + side] = images[int(row)]
    grid = grid[: -(-len(chosen) // columns) * side]
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, "PNG")
    return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))


def _count_table(counts: pd.DataFrame) -> TablePreview:
    columns = [c for c in SPLIT_COLUMNS if c in counts.columns]
    columns += [c for c in counts.columns if c not in columns]
    counts = counts[columns]
    if len(columns) > 1:
        counts["total"] = counts.sum(axis=1)
    counts.loc["(all classes)"] = counts.sum(axis=0)
    table = counts.rename_axis(index="label", columns=None).reset_index()
    return TablePreview(table.to_dict(orient="split"))
