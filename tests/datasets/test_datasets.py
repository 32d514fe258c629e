"""Checkpoint, image-cache and manifest datasets: round trips, versions, atomic writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DatasetError, Version

from plankton_kedro.datasets import CheckpointDataset, ImageCacheDataset, ManifestDataset
from tests.conftest import small_checkpoint


def test_checkpoint_round_trip_with_version_and_weights_only(tmp_path):
    path = tmp_path / "model.pt"
    CheckpointDataset(filepath=str(path), version=Version(None, "v1")).save(small_checkpoint())
    loaded = CheckpointDataset(filepath=str(path), version=Version(None, None)).load()
    assert loaded.version == "v1"
    assert torch.equal(loaded.state_dict["w"], torch.ones(2, 2))
    assert loaded.class_names == ["a", "b"]
    assert loaded.preprocessing == small_checkpoint().preprocessing
    # the file itself loads with weights_only=True (no pickled code), without the version
    raw = torch.load(path / "v1" / "model.pt", weights_only=True)
    assert "version" not in raw and raw["history"]["epochs"][0]["epoch"] == 1


def test_checkpoint_versions_latest_and_pinned(tmp_path):
    path = str(tmp_path / "model.pt")
    CheckpointDataset(filepath=path, version=Version(None, "2026-01-01")).save(small_checkpoint(1))
    CheckpointDataset(filepath=path, version=Version(None, "2026-01-02")).save(small_checkpoint(2))
    latest = CheckpointDataset(filepath=path, version=Version(None, None))
    assert latest.load().state_dict["w"][0, 0] == 2
    assert latest.list_versions(full_path=False) == ["2026-01-02", "2026-01-01"]
    pinned = CheckpointDataset(filepath=path, version=Version("2026-01-01", None)).load()
    assert pinned.state_dict["w"][0, 0] == 1
    with pytest.raises(DatasetError, match="must not exist"):
        CheckpointDataset(filepath=path, version=Version(None, "2026-01-02")).save(
            small_checkpoint()
        )


def test_failed_save_leaves_no_artefact(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"

    def crash(obj, stream):
        stream.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    dataset = CheckpointDataset(filepath=str(path), version=Version(None, "v1"))
    with pytest.raises(KeyboardInterrupt):
        dataset.save(small_checkpoint())
    assert not dataset.exists()
    assert [p for p in (path / "v1").iterdir()] == []


def test_only_checkpoints_are_saved_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="must be a Checkpoint or EnsembleCheckpoint"):
        CheckpointDataset(filepath=str(tmp_path / "m.pt")).save(small_checkpoint().to_dict())
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(DatasetError, match="other.pt is not a plankton-kedro checkpoint"):
        CheckpointDataset(filepath=str(tmp_path / "other.pt")).load()


def test_image_cache_round_trips_exactly_and_loads_memory_mapped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images.npy"), version=Version(None, "v"))
    dataset.save(images)
    loaded = ImageCacheDataset(filepath=str(tmp_path / "images.npy"), version=Version(None, None))
    array = loaded.load()
    assert isinstance(array, np.memmap)
    assert np.array_equal(array, images)
    with pytest.raises(DatasetError, match="4-d uint8"):
        dataset.save(images.astype(np.float32))


def test_manifest_carries_its_version_and_dataset_name(tmp_path):
    frame = pd.DataFrame({"rel_path": ["a/1.png"], "label": ["a"], "split": ["train"]})
    frame.attrs["dataset"] = "demo_target"
    path = str(tmp_path / "manifest.parquet")
    ManifestDataset(filepath=path, version=Version(None, "2026-05-05")).save(frame)
    loaded = ManifestDataset(filepath=path, version=Version(None, None)).load()
    assert loaded.attrs == {"dataset": "demo_target", "version": "2026-05-05"}
    assert loaded.equals(frame)
