"""Torch datasets over the uint8 image cache, with per-sample augmentation.

The cache holds images already padded to a square and resized to ``cache_size``; training
takes a random ``crop_size`` crop with random horizontal and vertical flips *per image*,
evaluation takes the centre crop. Normalisation (timm's mean/std for the model) happens on
the device, on whole batches, in :func:`normalise`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from plankton_kedro.engine.collection.preprocessing import centre_crop
from plankton_kedro.engine.errors import StageInputError


class CachedImages(Dataset):
    """Images ``images[indices]`` with labels; ``train=True`` augments each sample.

    Training items are addressed by ``(index, sample_seed)`` pairs from :class:`EpochSampler`
    so the augmentation of every sample depends only on the run seed, the epoch and the
    position, never on worker scheduling: runs are reproducible and resumable.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: Sequence[int] | np.ndarray,
        crop_size: int,
        *,
        train: bool,
        augment_on_device: bool = False,
    ):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 images (n, h, w, 3), got {images.dtype} {images.shape}"
            )
        if crop_size > images.shape[1]:
            raise StageInputError(
                f"crop size {crop_size} (data.image_size) exceeds the cached images' "
                f"{images.shape[1]} px; ingest again at this image size"
            )
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.crop_size = crop_size
        self.train = train
        self.augment_on_device = augment_on_device

    def __len__(self) -> int:
        return len(self.indices)

    def read_blocks(self) -> np.ndarray | None:
        """The shard of every item when the cache is sharded (so an epoch can read shard by
        shard), else None."""
        shard_of_row = getattr(self.images, "shard_of_row", None)
        return None if shard_of_row is None else shard_of_row[self.indices]

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int]:
        """``(image, label)``; with ``augment_on_device`` a training image comes whole, as
        ``((image, crop_and_flips), label)`` for :func:`augment_batch` to apply on the GPU."""
        position, sample_seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.indices[position])
        image = self.images[row]
        label = int(self.labels[row])
        side, crop = image.shape[0], self.crop_size
        if self.train and sample_seed is not None:
            rng = np.random.default_rng(sample_seed)
            top, left = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
            hflip, vflip = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
            if self.augment_on_device:
                plan = torch.tensor([top, left, hflip, vflip])
                return (_to_tensor(image), plan), label
            image = image[top : top + crop, left : left + crop]
            if hflip:
                image = image[:, ::-1]
            if vflip:
                image = image[::-1, :]
        else:
            image = centre_crop(image, crop)
        return _to_tensor(image), label


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def augment_batch(images: torch.Tensor, plans: torch.Tensor, crop: int) -> torch.Tensor:
    """Per-sample crops and flips of a whole uint8 NCHW batch, on the batch's device.

    ``plans`` rows are ``(top, left, hflip, vflip)`` as drawn by :class:`CachedImages`, so
    the result equals the CPU path image for image.
    """
    plans = plans.to(images.device)
    steps = torch.arange(crop, device=images.device)
    rows = (plans[:, 0:1] + steps)[:, None, :, None]
    cols = (plans[:, 1:2] + steps)[:, None, None, :]
    batch = torch.arange(len(images), device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    cropped = images[batch, channels, rows, cols]
    cropped = torch.where(plans[:, 2].bool()[:, None, None, None], cropped.flip(-1), cropped)
    return torch.where(plans[:, 3].bool()[:, None, None, None], cropped.flip(-2), cropped)


class EpochSampler(Sampler):
    """One epoch of ``(position, sample_seed)`` pairs, seeded by (seed, epoch).

    ``num_samples`` pairs are drawn for the whole job as successive shuffles of the data set
    (every image is seen before any repeats), so an "epoch" of at most N updates walks
    through the data like the paper's. With several ranks, each global batch of
    ``batch_size * world_size`` pairs is cut into one ``batch_size`` slice per rank, so the
    job sees the same global batches as one process with ``batch_size * world_size``.

    With ``blocks`` (a block id per position, e.g. the shard holding it), each shuffle
    visits the blocks in random order and shuffles within one block at a time, so a sharded
    cache is read shard after shard; the order depends only on (seed, epoch, blocks), never
    on where the pixels are stored.
    """

    def __init__(
        self,
        dataset_size: int,
        num_samples: int,
        *,
        seed: int,
        epoch: int,
        batch_size: int = 1,
        rank: int = 0,
        world_size: int = 1,
        blocks: np.ndarray | None = None,
    ):
        self.dataset_size = dataset_size
        self.groups = None if blocks is None else _positions_by_block(np.asarray(blocks))
        self.num_samples = num_samples
        self.seed, self.epoch = seed, epoch
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        rounds = -(-self.num_samples // self.dataset_size)
        order = np.concatenate([self._shuffle(rng) for _ in range(rounds)])
        sample_seeds = rng.integers(0, 2**63 - 1, size=self.num_samples)
        pairs = list(zip(order[: self.num_samples].tolist(), sample_seeds.tolist(), strict=True))
        step = self.batch_size * self.world_size
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for start in range(0, self.num_samples, step):
            yield from pairs[start : start + step][mine]

    def _shuffle(self, rng: np.random.Generator) -> np.ndarray:
        if self.groups is None:
            return rng.permutation(self.dataset_size)
        blocks = rng.permutation(len(self.groups))
        return np.concatenate([rng.permutation(self.groups[b]) for b in blocks])


def _positions_by_block(blocks: np.ndarray) -> list[np.ndarray]:
    """Positions grouped by block id (ascending ids, positions in order within each)."""
    order = np.argsort(blocks, kind="stable")
    _, starts = np.unique(blocks[order], return_index=True)
    return np.split(order, starts[1:])


def normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW batch -> float, scaled to [0, 1] and normalised with the model's mean/std."""
    return (batch.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def fixed_subset(indices: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, the same ones for a given seed (sorted)."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) <= limit:
        return indices
    rng = np.random.default_rng([seed, 7919])
    return np.sort(rng.choice(indices, size=limit, replace=False))
