"""Where ingestion's time goes, part by part, against the single-core PIL loop.

Times the parts of the ingestion node on one archive (opening the source, indexing it, the
parallel scan with the parent's and the workers' CPU time, the split, the cache write) and
the PIL baseline of ``throughput.py``, then prints wall and CPU microseconds per file.

    python benchmarks/ingestion_breakdown.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from throughput import BASELINE_FILL, NDSB, pil_loop  # noqa: E402

from plankton_kedro.datasets.image_cache import ImageCacheDataset  # noqa: E402
from plankton_kedro.datasets.image_source import ImageSourceDataset  # noqa: E402
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
    args = parser.parse_args()
    data = DataParams(image_size=args.image_size)
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            ingestion = IngestionParams(workers=args.workers, spool_dir=work)
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


if __name__ == "__main__":
    main()
