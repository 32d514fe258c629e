"""Shared fixtures: telemetry off, tiny synthetic collections, the project root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import MemoryDataset

from plankton_kedro.engine.checkpoint import Checkpoint, History, Identity, Preprocessing

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# Tiny models gain nothing from intra-op threads, and spinning OpenMP threads make them
# orders of magnitude slower whenever another process holds a core.
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
TINY_MODEL = "test_efficientnet"


def copy_project(root: Path) -> Path:
    """A throw-away project at ``root``: conf/, pyproject.toml and the demo archives (src/ is
    empty: the package is installed), so ``kedro run`` there writes only there."""
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()
    (root / "data" / "01_raw").mkdir(parents=True)
    for archive in ("demo_source.zip", "demo_target.zip"):
        shutil.copy(PROJECT_ROOT / "data" / "01_raw" / archive, root / "data" / "01_raw")
    return root


@pytest.fixture
def tiny_cache() -> tuple[np.ndarray, pd.DataFrame]:
    """A learnable 3-class cache (dark square, bright bar, gradient) with a manifest."""
    rng = np.random.default_rng(0)
    size, per_class = 20, 24
    images, rows = [], []
    for label in ("bar", "gradient", "square"):
        for i in range(per_class):
            image = np.full((size, size, 3), 255, np.uint8)
            if label == "square":
                image[5:15, 5:15] = 40
            elif label == "bar":
                image[:, 8:12] = 80
            else:
                image[:] = np.linspace(0, 255, size, dtype=np.uint8)[None, :, None]
            noise = rng.integers(-20, 20, image.shape)
            images.append(np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8))
            split = "train" if i < 16 else "val" if i < 20 else "test"
            rows.append({"rel_path": f"{label}/{i:03d}.png", "label": label, "split": split})
    manifest = pd.DataFrame(rows)
    manifest.attrs.update(dataset="tiny", version="2026-01-01T00.00.00.000Z")
    return np.stack(images), manifest


def small_checkpoint(value: float = 1.0, **fields) -> Checkpoint:
    """A checkpoint of a 2x2 "network" (weights all ``value``) with every field filled."""
    values = {
        "model_name": "test_resnet",
        "class_names": ["a", "b"],
        "state_dict": {"w": torch.full((2, 2), value)},
        "preprocessing": Preprocessing(37, 32, 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        "identity": Identity("two_stage", "two_stage", "fine_tuning", "tiny", "m1", 42),
        "history": History(
            epochs=[{"epoch": 1, "val_accuracy": 0.5}],
            selection_metric="accuracy",
            best_score=0.5,
            best_epoch=1,
            settings={"training": {"lr": {"backbone": 0.001}}},
        ),
    }
    return Checkpoint(**{**values, **fields})


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so a test can inspect it afterwards."""

    def _release(self) -> None:
        pass
