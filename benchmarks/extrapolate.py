"""Simulate ingestion and one training epoch for large collections from per-image costs.

Measures here, on a slice of an archive at the target size (default 224 px, cache 256 px):
  - decode + validate + pad + resize + hash per file, one core (the ingestion worker's job);
  - the training data path per image, one core (read from the cache, random crop + flips,
    collate): what DataLoader workers do every epoch with the cache;
  - the same with the paper's way, decoding the JPEG every epoch (PIL + pad + resize);
  - what a reused ingestion costs instead: listing the archive and hashing the listing (the
    fingerprint), per member, and the records table written per image;
then simulates a collection of N images on G GPUs, each pass limited by the slowest of
GPU compute (assumed rate: measure yours with ``scripts/gpu_check.py``), the data path on
the CPU cores feeding each GPU, and reading the cache from storage (shared by all GPUs); and
the time and disk each run's ingestion costs with and without reuse, and what ``kedro prune``
keeps.

    python benchmarks/extrapolate.py --data ../shared/data/ndsb_train.zip --files 2000
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from plankton_kedro.engine.collection.fingerprint import ingestion_fingerprint
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing
from plankton_kedro.engine.collection.scan import SkippedFile, decode_files
from plankton_kedro.engine.collection.sources import ImageSource
from plankton_kedro.engine.config import DataParams, SplitParams, TrainingParams
from plankton_kedro.engine.modelling.data import CachedImages, EpochSampler

PROJECT = Path(__file__).resolve().parents[1]
COLLECTIONS = {"ZooScanNet": 1_450_000, "WHOI (2006-2014)": 3_400_000}
# Training images/s of one GPU at 224 px with fp16 autocast: assumptions (an A100-class card,
# order of magnitude); replace with your own from scripts/gpu_check.py.
GPU_RATES = {"resnet18": 3000.0, "efficientnet_b0": 2000.0, "resnet50": 1300.0}
# The paper's in-domain model, trained from scratch on the source set by conf/paper's stage 1.
IN_DOMAIN_MODEL = "resnet50"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared/data/ndsb_train.zip")
    parser.add_argument("--files", type=int, default=2000, help="files measured")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cores-per-gpu", type=int, default=8, help="CPU cores feeding each GPU")
    parser.add_argument("--ingest-cores", type=int, default=32, help="cores decoding at ingestion")
    parser.add_argument(
        "--storage-gb-s",
        type=float,
        default=2.0,
        help="sequential read bandwidth of the cache's storage, all GPUs together",
    )
    parser.add_argument(
        "--gpu-rate",
        nargs=2,
        action="append",
        metavar=("MODEL", "IMG_S"),
        help="training images/s of one GPU for a model (repeatable)",
    )
    return parser.parse_args(argv)  # fmt: skip


def sample_files(path: Path, count: int) -> list[tuple[str, bytes]]:
    """``count`` evenly spaced files of the archive, in memory."""
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        picks = np.linspace(0, len(members) - 1, min(count, len(members))).astype(int)
        return [(members[i].filename, archive.read(members[i])) for i in picks]


def seconds_per_image(work, count: int, repeats: int = 3) -> float:
    """Fastest of ``repeats`` runs of ``work()`` (other processes only slow it down)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / count


def measure(args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(1)
    data = DataParams(image_size=args.image_size)
    files = sample_files(args.data, args.files)
    outcomes = decode_files(files, preprocessing=CachePreprocessing(data.cache_size), workers=1)
    decoded = [item for item in outcomes if not isinstance(item, SkippedFile)]
    cache = np.stack([pixels for _, pixels in decoded])
    labels = np.zeros(len(cache), np.int64)
    dataset = CachedImages(cache, labels, np.arange(len(cache)), args.image_size, train=True)
    sampler = EpochSampler(len(cache), len(cache), seed=0, epoch=1, batch_size=64)

    def data_path() -> None:
        for _ in DataLoader(dataset, batch_size=64, sampler=sampler):
            pass

    def decode_every_epoch() -> None:
        from PIL import Image

        for _, blob in files:
            image = Image.open(io.BytesIO(blob)).convert("RGB")
            side = max(image.size)
            canvas = Image.new("RGB", (side, side), (255, 255, 255))
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            np.asarray(canvas.resize((data.cache_size,) * 2, Image.Resampling.LANCZOS))

    def fingerprint() -> None:
        ingestion_fingerprint(ImageSource(args.data), {"cache_size": data.cache_size})

    records = pd.DataFrame([record for record, _ in decoded])
    return {
        "listing_s": seconds_per_image(fingerprint, len(ImageSource(args.data).list_files())),
        "table_bytes": len(records.to_parquet()) / len(records),
        "cache_bytes": data.cache_size**2 * 3,
        "file_bytes": float(np.mean([len(blob) for _, blob in files])),
        "ingest_s": seconds_per_image(
            lambda: list(
                decode_files(files, preprocessing=CachePreprocessing(data.cache_size), workers=1)
            ),
            len(files),
        ),
        "data_path_s": seconds_per_image(data_path, len(cache)),
        "pil_s": seconds_per_image(decode_every_epoch, len(files)),
    }


def simulate(costs: dict[str, float], images: int, gpus: int, gpu_rate: float, args) -> dict:
    """Seconds for ingestion and for one pass over the collection from the cache (and what
    limits it), and for one pass decoding every file again (the paper's way)."""
    limits = {
        "GPU compute": images / (gpus * gpu_rate),
        "CPU data path": images * costs["data_path_s"] / (gpus * args.cores_per_gpu),
        "storage read": images * costs["cache_bytes"] / (args.storage_gb_s * 1e9),
    }
    paper = max(
        images * costs["pil_s"] / (gpus * args.cores_per_gpu),
        images * costs["file_bytes"] / (args.storage_gb_s * 1e9),
    )
    return {
        "ingestion": images * costs["ingest_s"] / args.ingest_cores,
        "epoch": max(limits.values()),
        "limit": max(limits, key=limits.get),
        "epoch_decoding_jpegs": max(limits["GPU compute"], paper),
        "cache_tb": images * costs["cache_bytes"] / 1e12,
    }


def paper_stage1_recipe() -> tuple[TrainingParams, SplitParams]:
    """conf/paper's stage-1 (in-domain pre-training) settings and its split fractions."""
    import yaml

    paper = yaml.safe_load((PROJECT / "conf/paper/parameters.yml").read_text())
    training = TrainingParams(**paper["training"]).overridden(paper["pretraining"]["training"])
    return training, SplitParams(**paper["ingestion"]["split"])


def print_stage1_budget(costs: dict[str, float], rate: float, args) -> None:
    """GPU-hours of conf/paper's in-domain pre-training (full passes over the source train
    split, evaluation of at most ``max_val_images`` per pass) on each large collection."""
    training, split = paper_stage1_recipe()
    if training.max_updates_per_epoch is not None:
        raise SystemExit("conf/paper's stage 1 is not a full-pass recipe (max_updates_per_epoch)")
    print(
        f"\nIn-domain stage 1 as conf/paper sets it: {IN_DOMAIN_MODEL} from scratch, "
        f"{training.min_epochs}-{training.max_epochs} full passes over the "
        f"{split.train:.0%} train split (early stopping after {training.min_epochs})"
    )
    print("| data set | train images | GPUs | one pass | GPU-hours, min-max passes |")
    print("|---|---|---|---|---|")
    for name, images in COLLECTIONS.items():
        train = int(images * split.train)
        for gpus in (1, 8):
            one_pass = simulate(costs, train, gpus, rate, args)["epoch"]
            evaluation = simulate(costs, training.max_val_images, gpus, 3 * rate, args)["epoch"]
            per_pass_gpu_hours = (one_pass + evaluation) * gpus / 3600
            print(
                f"| {name} | {train / 1e6:.2f} M | {gpus} | {_duration(one_pass)} | "
                f"{per_pass_gpu_hours * training.min_epochs:.0f}-"
                f"{per_pass_gpu_hours * training.max_epochs:.0f} |"
            )


def print_reuse_and_retention(costs: dict[str, float], args) -> None:
    """Each run's ingestion without reuse (decode everything, write a new cache: the slower of
    the two) and with it (list and hash, hard-link the cache, write the small tables), and the
    disk ``kedro prune`` leaves with ``retention.keep_versions`` (3) when every run changed a
    setting."""
    print(
        "\nEach run's ingestion, without and with reuse (same files and settings), and the "
        "disk `kedro prune` keeps (3 versions)"
    )
    print(
        "| data set | without reuse: time, new disk | with reuse: time, new disk "
        "| after 10 runs without / with reuse | kept by prune (3 caches) |"
    )
    print("|---|---|---|---|---|")
    for name, images in COLLECTIONS.items():
        cache = images * costs["cache_bytes"]
        tables = 2 * images * costs["table_bytes"]  # records + manifest
        # decoding on the ingestion cores while the cache is written at the storage's speed
        fresh = max(
            images * costs["ingest_s"] / args.ingest_cores, cache / (args.storage_gb_s * 1e9)
        )
        reused = images * costs["listing_s"]  # one process lists and hashes
        print(
            f"| {name} | {_duration(fresh)}, {_bytes(cache + tables)} | "
            f"{_duration(reused)}, {_bytes(tables)} | {_bytes(10 * (cache + tables))} / "
            f"{_bytes(cache + 10 * tables)} | {_bytes(3 * (cache + tables))} |"
        )


def _bytes(size: float) -> str:
    return f"{size / 1e12:.2f} TB" if size >= 1e11 else f"{size / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rates = {**GPU_RATES, **{m: float(r) for m, r in (args.gpu_rate or [])}}
    costs = measure(args)
    print(
        f"measured on {args.files} files of {args.data.name} at {args.image_size} px, one core: "
        f"ingestion {costs['ingest_s'] * 1e3:.2f} ms/file, data path "
        f"{costs['data_path_s'] * 1e3:.3f} ms/image, PIL decode+pad+resize "
        f"{costs['pil_s'] * 1e3:.2f} ms/image, listing + fingerprint "
        f"{costs['listing_s'] * 1e6:.1f} µs/file; files {costs['file_bytes'] / 1e3:.1f} kB, cache "
        f"{costs['cache_bytes'] / 1e3:.0f} kB, records table {costs['table_bytes']:.0f} B per image"
    )
    print(
        f"assumed: {args.cores_per_gpu} cores per GPU, {args.ingest_cores} cores ingesting, "
        f"storage {args.storage_gb_s} GB/s, GPU images/s "
        + ", ".join(f"{m} {r:.0f}" for m, r in rates.items())
    )
    print("| data set | images | cache | ingestion | model | GPUs | one pass | limited by "
          "| one pass decoding every file |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, images in COLLECTIONS.items():
        for model, rate in rates.items():
            for gpus in (1, 8):
                r = simulate(costs, images, gpus, rate, args)
                print(
                    f"| {name} | {images / 1e6:.2f} M | {r['cache_tb']:.2f} TB | "
                    f"{_duration(r['ingestion'])} | {model} | {gpus} | {_duration(r['epoch'])} "
                    f"| {r['limit']} | {_duration(r['epoch_decoding_jpegs'])} |"
                )
    print_stage1_budget(costs, rates[IN_DOMAIN_MODEL], args)
    print_reuse_and_retention(costs, args)


if __name__ == "__main__":
    main()
