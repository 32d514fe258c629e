"""The image cache: exact round trips, one file or shards, and identical batches either way."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version
from torch.utils.data import DataLoader

from plankton_kedro.datasets.image_cache import ImageCacheDataset
from plankton_kedro.engine.collection.shards import ShardedImages, shard_layout
from plankton_kedro.engine.collection.spool import NpySpool
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.modelling.data import CachedImages, EpochSampler
from plankton_kedro.engine.modelling.stages import train_stage
from tests.conftest import TINY_MODEL


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (50, 12, 12, 3), dtype=np.uint8)


def test_single_file_cache_round_trips_exactly_and_loads_memory_mapped(tmp_path, images):
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images.npy"))
    dataset.save(images)
    loaded = dataset.load()
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, images)


def test_sharded_cache_round_trips_exactly(tmp_path, images):
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images"), shard_size=7)
    dataset.save(images)
    assert len(list((tmp_path / "images").glob("shard-*.npy"))) == 8  # ceil(50 / 7)
    loaded = dataset.load()
    assert isinstance(loaded, ShardedImages)
    assert loaded.shape == images.shape and len(loaded) == 50 and loaded.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(loaded), images)
    np.testing.assert_array_equal(loaded[17], images[17])
    np.testing.assert_array_equal(loaded[-1], images[-1])
    rows = np.array([3, 49, 0, 3])
    np.testing.assert_array_equal(loaded[rows], images[rows])
    np.testing.assert_array_equal(
        loaded[images[:, 0, 0, 0] > 128], images[images[:, 0, 0, 0] > 128]
    )


def test_sharded_cache_streams_from_a_remote_filesystem(images):
    dataset = ImageCacheDataset(filepath="memory://bench/images", shard_size=16)
    dataset.save(images)
    loaded = dataset.load()
    assert not loaded.local
    np.testing.assert_array_equal(np.asarray(loaded), images)


def test_versioned_sharded_cache_loads_the_latest_version(tmp_path, images):
    first = ImageCacheDataset(
        filepath=str(tmp_path / "images"), shard_size=20, version=Version(None, "1")
    )
    first.save(images)
    second = ImageCacheDataset(
        filepath=str(tmp_path / "images"), shard_size=20, version=Version(None, "2")
    )
    second.save(images[::-1].copy())
    latest = ImageCacheDataset(filepath=str(tmp_path / "images"), version=Version(None, None))
    np.testing.assert_array_equal(np.asarray(latest.load()), images[::-1])
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["1", "2"]


def test_shards_are_random_samples_of_the_collection():
    layout = shard_layout(100, 30)
    assert [len(rows) for rows in layout] == [30, 30, 30, 10]
    assert sorted(np.concatenate(layout).tolist()) == list(range(100))
    assert not np.array_equal(layout[0], np.arange(30))  # not contiguous: class-sorted rows mix


def test_bad_input_names_the_cache(tmp_path):
    with pytest.raises(DatasetError, match="4-d uint8"):
        ImageCacheDataset(filepath=str(tmp_path / "x.npy")).save(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match="4-d uint8"):
        ImageCacheDataset(filepath=str(tmp_path / "x.npy")).save([[1, 2]])
    (tmp_path / "broken").mkdir()
    with pytest.raises(DatasetError, match="broken.*not a readable image cache"):
        ImageCacheDataset(filepath=str(tmp_path / "broken")).load()


def _batches(cache, labels, rows, blocks) -> list[tuple[torch.Tensor, torch.Tensor]]:
    dataset = CachedImages(cache, labels, rows, 10, train=True)
    sampler = EpochSampler(len(rows), 40, seed=5, epoch=2, batch_size=8, blocks=blocks)
    return list(DataLoader(dataset, batch_size=8, sampler=sampler))


def test_sharded_and_unsharded_caches_give_identical_batches(tmp_path, images):
    labels, rows = np.arange(50) % 3, np.arange(0, 50, 2)  # a train split: every other row
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images"), shard_size=10)
    dataset.save(images)
    sharded = dataset.load()
    blocks = CachedImages(sharded, labels, rows, 10, train=True).read_blocks()
    from_shards = _batches(sharded, labels, rows, blocks)
    from_array = _batches(images, labels, rows, blocks)
    assert len(from_shards) == 5
    for (a, la), (b, lb) in zip(from_shards, from_array, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_an_epoch_reads_one_shard_after_another(tmp_path, images):
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images"), shard_size=10)
    dataset.save(images)
    sharded = dataset.load()
    rows = np.arange(50)
    blocks = CachedImages(sharded, np.zeros(50), rows, 10, train=True).read_blocks()
    order = [p for p, _ in EpochSampler(50, 50, seed=1, epoch=1, blocks=blocks)]
    visited = sharded.shard_of_row[rows[order]]
    changes = np.flatnonzero(np.diff(visited)) + 1
    assert len(changes) == 4  # 5 shards, each visited once, in one stretch
    assert sorted(order) == list(range(50))


def test_training_on_a_sharded_cache(tmp_path, tiny_cache):
    images, manifest = tiny_cache
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images"), shard_size=16)
    dataset.save(images)
    checkpoint = train_stage(
        dataset.load(),
        manifest,
        model=ModelParams(name=TINY_MODEL),
        data=DataParams(image_size=16, resize_ratio=0.8),
        training=TrainingParams(
            max_epochs=1, max_updates_per_epoch=2, batch_size=8, state_dir=str(tmp_path / "s")
        ),
        route="test",
        stage="pretraining",
        backbone_init="scratch",
    )
    assert checkpoint.history.epochs[0]["images_per_second"] > 0


def test_a_spooled_scan_is_saved_by_a_link_not_a_copy(tmp_path, images):
    spool = NpySpool(tmp_path, 12)
    spool.write(images.tobytes())
    spooled = spool.mapped(len(images))
    dataset = ImageCacheDataset(filepath=str(tmp_path / "cache" / "images.npy"))
    dataset.save(spooled)
    saved = tmp_path / "cache" / "images.npy"
    assert saved.stat().st_ino == Path(spooled.filename).stat().st_ino
    np.testing.assert_array_equal(dataset.load(), images)
    dataset.save(spooled[::-1])  # a view is copied, never linked
    np.testing.assert_array_equal(dataset.load(), images[::-1])
    del spooled
    gc.collect()
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # the spool's name is gone


def test_shards_that_cannot_all_be_linked_are_copied_and_the_originals_stay_intact(
    tmp_path, images, monkeypatch
):
    """Catches a save that, after a failed link, writes through the links it already made
    (truncating the earlier version's shards) or leaves a half-linked folder."""
    first = ImageCacheDataset(filepath=str(tmp_path / "first"), shard_size=7)
    first.save(images)
    before = {p.name: p.read_bytes() for p in (tmp_path / "first").iterdir()}
    real_link, made = os.link, []

    def link_twice_then_fail(source, target):
        if len(made) == 2:
            raise OSError(18, "Invalid cross-device link")
        made.append(target)
        real_link(source, target)

    monkeypatch.setattr(os, "link", link_twice_then_fail)
    second = ImageCacheDataset(filepath=str(tmp_path / "second"), shard_size=7)
    second.save(first.load())
    assert {p.name: p.read_bytes() for p in (tmp_path / "first").iterdir()} == before
    saved = list((tmp_path / "second").iterdir())
    assert len(saved) == len(before)
    assert all(p.stat().st_nlink == 1 for p in saved)  # copies, not links
    np.testing.assert_array_equal(np.asarray(second.load()), images)


def test_a_sharded_cache_saved_as_one_file_is_copied_shard_by_shard(tmp_path, images, monkeypatch):
    """Catches a sharded cache (a reused ingestion's, once ``shard_size`` is removed) turned
    into one array in memory to be saved: WHOI's would not fit."""
    sharded = ImageCacheDataset(filepath=str(tmp_path / "sharded"), shard_size=7)
    sharded.save(images)
    loaded = sharded.load()

    def whole_in_memory(*args, **kwargs):
        raise AssertionError("the whole sharded cache was read into memory")

    monkeypatch.setattr(ShardedImages, "__array__", whole_in_memory)
    one_file = ImageCacheDataset(filepath=str(tmp_path / "one" / "images.npy"))
    one_file.save(loaded)
    monkeypatch.undo()
    np.testing.assert_array_equal(one_file.load(), images)
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["images.npy"]  # no temporary
