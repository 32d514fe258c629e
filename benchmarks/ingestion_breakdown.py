"""Where ingestion's time goes, part by part, against the single-core PIL loop.

Times the parts of the ingestion node on one archive (opening the source, indexing it, the
parallel scan with the parent's and the workers' CPU time, the split, the cache write) and
the PIL baseline of ``throughput.py``, then prints wall and CPU microseconds per file; then,
in one process on ``--images`` evenly spaced images, what one image's preprocessing costs
step by step (what the workers do per file, beyond the baseline's decode, pad and resize).

    python benchmarks/ingestion_breakdown.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from throughput import BASELINE_FILL, NDSB, pil_loop  # noqa: E402

from plankton_kedro.datasets.image_cache import ImageCacheDataset  # noqa: E402
from plankton_kedro.datasets.image_source import ImageSourceDataset  # noqa: E402
from plankton_kedro.engine.collection.imaging import (  # noqa: E402
    border_fill,
    grey_band,
    load_image,
    pad_to_square,
    to_rgb,
)
from plankton_kedro.engine.collection.preprocessing import (  # noqa: E402
    CachePreprocessing,
    prepare,
)
from plankton_kedro.engine.config import (  # noqa: E402
    DataParams,
    IngestionParams,
    PreprocessingParams,
)
from plankton_kedro.pipelines.ingestion.nodes import scan_collection, split_records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=NDSB)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=3000, help="for the per-image steps")
    args = parser.parse_args()
    data = DataParams(image_size=args.image_size)
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            # a new folder each repeat, the last one deleted untimed (see throughput.py)
            shutil.rmtree(Path(scratch) / f"repeat_{repeat - 1}", ignore_errors=True)
            work = Path(scratch) / f"repeat_{repeat}"
            work.mkdir()
            ingestion = IngestionParams(workers=args.workers, spool_dir=str(work))
            marks = [time.perf_counter()]
            source = ImageSourceDataset(path=str(args.data)).load()
            marks.append(time.perf_counter())
            source.list_dirs()
            marks.append(time.perf_counter())
            before = os.times()
            records, cache, _ = scan_collection(source, data, PreprocessingParams(), ingestion)
            after = os.times()
            marks.append(time.perf_counter())
            split_records(records, ingestion)
            marks.append(time.perf_counter())
            ImageCacheDataset(filepath=f"{work}/images.npy").save(cache)
            marks.append(time.perf_counter())
            del cache
            started = time.perf_counter()
            files = pil_loop(args.data, data.cache_size, BASELINE_FILL)
            pil = time.perf_counter() - started
            n = len(records)
            us = [(b - a) / n * 1e6 for a, b in zip(marks, marks[1:], strict=False)]
            scan = marks[3] - marks[2]
            parent = (after.user + after.system - before.user - before.system) / n * 1e6
            workers = (
                after.children_user + after.children_system
                - before.children_user - before.children_system
            ) / n * 1e6  # fmt: skip
            total = (marks[-1] - marks[0]) / n * 1e6
            print(
                f"{n} files, µs per file: open {us[0]:.1f} · index {us[1]:.1f} · scan "
                f"{us[2]:.1f} wall ({n / scan:.0f} files/s; CPU: parent {parent:.1f}, workers "
                f"{workers:.1f}) · split {us[3]:.1f} · cache write {us[4]:.2f} · total "
                f"{total:.1f} ({n / (marks[-1] - marks[0]):.0f} files/s) | PIL loop "
                f"{pil / files * 1e6:.1f} ({files / pil:.0f} files/s) | ratio "
                f"{pil / files / (total / 1e6):.2f}",
                flush=True,
            )
    per_image_steps(args.data, DataParams(image_size=args.image_size).cache_size, args.images)


def per_image_steps(archive: Path, cache_size: int, count: int) -> None:
    """Microseconds per image of each step of ``prepare`` (one process, decoded images)."""
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        blobs = [zf.read(n) for n in names[:: max(1, len(names) // count)][:count]]
    images = []
    started = time.perf_counter()
    for blob in blobs:
        images.append(load_image(blob))
        images[-1].load()
    decode = time.perf_counter() - started
    rgbs = [to_rgb(img) for img in images]
    greys = [grey_band(rgb) or rgb.getchannel(0) for rgb in rgbs]
    padded = [pad_to_square(grey, BASELINE_FILL) for grey in greys]
    resized = [p.resize((cache_size, cache_size), Image.Resampling.LANCZOS) for p in padded]
    steps = {
        "decode": lambda: None,
        "grey check": lambda: [grey_band(rgb) for rgb in rgbs],
        "border median": lambda: [border_fill(grey) for grey in greys],
        "pad": lambda: [pad_to_square(grey, BASELINE_FILL) for grey in greys],
        "Lanczos resize": lambda: [
            p.resize((cache_size, cache_size), Image.Resampling.LANCZOS) for p in padded
        ],
        "one band to RGB array": lambda: [
            np.frombuffer(r.convert("RGB").tobytes(), np.uint8) for r in resized
        ],
        "prepare (all of it)": lambda: [
            prepare(img, CachePreprocessing(cache_size)) for img in images
        ],
    }
    timings = []
    for name, step in steps.items():
        started = time.perf_counter()
        step()
        seconds = decode if name == "decode" else time.perf_counter() - started
        timings.append(f"{name} {seconds / len(images) * 1e6:.1f}")
    print(f"{len(images)} images, one process, µs per image: " + " · ".join(timings), flush=True)


if __name__ == "__main__":
    main()
