"""A sharded uint8 image cache: a folder of ``.npy`` shards that training reads one by one.

For collections whose cache outgrows one machine's memory or local disk (WHOI at 224 px is
~0.5 TB): shards can live on any fsspec filesystem and be streamed, and training visits
them in sequence (see :class:`~plankton_kedro.engine.modelling.data.EpochSampler`'s ``blocks``) so
every shard is read once per pass, front to back, instead of one image at a time at random.

Row ``i`` is still manifest row ``i``; which rows a shard holds is a seeded permutation cut
into pieces (:func:`shard_layout`), so each shard is a random sample of the collection
(manifests are sorted by class: contiguous shards would make one-class batches).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

import fsspec
import numpy as np

INDEX_FILE = "index.json"
FORMAT = 1
SHARDS_IN_MEMORY = 2  # whole shards kept per process when streaming from a remote filesystem


def shard_layout(count: int, shard_size: int, seed: int = 0) -> list[np.ndarray]:
    """The sorted cache rows of each shard: a permutation of ``range(count)`` seeded by
    (seed, count), cut into pieces of ``shard_size``."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    order = np.random.default_rng([seed, count]).permutation(count)
    return [np.sort(order[start : start + shard_size]) for start in range(0, count, shard_size)]


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.npy"


def write_shards(
    images: np.ndarray,
    shard_size: int,
    open_file: Callable[[str], IO[bytes]],
    *,
    seed: int = 0,
) -> None:
    """Write ``images`` as shards plus ``index.json``; ``open_file(name)`` opens a file of
    the shard folder for binary writing. Reads ``images`` (e.g. a memory map) shard by
    shard, so memory holds one shard at a time."""
    for number, rows in enumerate(shard_layout(len(images), shard_size, seed)):
        with open_file(shard_name(number)) as stream:
            np.save(stream, np.ascontiguousarray(images[rows]), allow_pickle=False)
    index = {
        "format": FORMAT,
        "count": len(images),
        "image_shape": list(images.shape[1:]),
        "shard_size": shard_size,
        "seed": seed,
    }
    with open_file(INDEX_FILE) as stream:
        stream.write(json.dumps(index, indent=2).encode())


class ShardedImages:
    """Read-only, array-like view of a shard folder: ``len``, ``shape``, ``dtype``,
    ``images[i]``, ``images[rows]``, ``np.asarray(images)``.

    Local shards are memory-mapped; shards on other filesystems are read whole (one
    sequential read each), keeping the last ``SHARDS_IN_MEMORY`` per process.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, folder: str, fs: fsspec.AbstractFileSystem | None = None):
        self.folder = str(folder).rstrip("/")
        self.fs = fs or fsspec.filesystem("file")
        self.local = "file" in self.fs.protocol
        try:
            with self.fs.open(f"{self.folder}/{INDEX_FILE}", "rb") as stream:
                index = json.loads(stream.read())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.folder} is not a sharded image cache: {exc}") from exc
        if index.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: unknown sharded cache format {index.get('format')}")
        self.shape = (index["count"], *index["image_shape"])
        self.shard_size, self.seed = index["shard_size"], index["seed"]
        layout = shard_layout(self.shape[0], self.shard_size, self.seed)
        self.shard_of_row = np.empty(self.shape[0], np.int64)
        self.offset_of_row = np.empty(self.shape[0], np.int64)
        for number, rows in enumerate(layout):
            self.shard_of_row[rows] = number
            self.offset_of_row[rows] = np.arange(len(rows))
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            row = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} images")
            return self.shard(int(self.shard_of_row[row]))[self.offset_of_row[row]]
        rows = np.arange(len(self))[key]
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        shards = self.shard_of_row[rows]
        for number in np.unique(shards):  # each shard read once, whatever the row order
            here = shards == number
            out[here] = self.shard(int(number))[self.offset_of_row[rows[here]]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def shard(self, number: int) -> np.ndarray:
        """Shard ``number`` as an array (memory-mapped locally, else read whole)."""
        if number in self._open:
            self._open.move_to_end(number)
            return self._open[number]
        path = f"{self.folder}/{shard_name(number)}"
        if self.local:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with self.fs.open(path, "rb") as stream:
                array = np.load(stream, allow_pickle=False)
            while len(self._open) >= SHARDS_IN_MEMORY:
                self._open.popitem(last=False)
        self._open[number] = array
        return array

    def __getstate__(self) -> dict:
        """Pickled for worker processes without the opened shards."""
        return {**self.__dict__, "_open": OrderedDict()}
