"""Throughput of every stage of plankton-kedro against the bare loop it wraps, in one run.

For each model it measures, interleaved repeat by repeat so that a busy machine slows both
sides of a ratio alike:

  (a) bare:   a plain torch training loop on random tensors of the same shape, same network
  (b) engine: ``modelling.stages.train_stage`` on the real cache (augmentation, data loader, ...)
  (c) kedro:  the ``in_domain.train_on_source`` node run by a ``KedroSession`` on a
              temporary copy of the project (catalog loads the cache and manifest, saves
              the checkpoint)
  (e) predict: ``engine.modelling.inference.predict`` on cached images vs a bare batched forward

and once for the data set:

  (d) ingestion (decode, validate, pad, resize, hash, write the cache; ``ingestion.workers``
      processes) against a single-core PIL loop reading the same archive (decode, pad,
      resize).

Training throughput is images/s as the engine logs it per epoch (training steps only;
validation and session start-up are reported apart), the fastest epoch after the first
(warm-up) of each run: other processes can only slow an epoch down. Ratios are per repeat,
then the median over repeats. All torch work runs on ``--threads`` intra-op threads on both
sides of every ratio; the PIL loop is one process, ingestion ``--workers`` processes.

    python benchmarks/throughput.py        # NDSB from ../shared, resnet18 + efficientnet_b0
    python benchmarks/throughput.py --models test_efficientnet --image-size 24 --batch 8 \\
        --steps 2 --epochs 2 --repeats 1 --limit 200 --data data/01_raw/demo_source.zip
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from PIL import Image

from plankton_kedro.datasets.image_cache import ImageCacheDataset
from plankton_kedro.datasets.image_source import ImageSourceDataset
from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    ModelParams,
    PreprocessingParams,
    RunParams,
    TrainingParams,
)
from plankton_kedro.engine.modelling.data import CachedImages
from plankton_kedro.engine.modelling.inference import predict
from plankton_kedro.engine.modelling.model import build_model, model_normalisation
from plankton_kedro.engine.modelling.runtime import autocast, resolve_device
from plankton_kedro.engine.modelling.stages import train_stage
from plankton_kedro.pipelines.ingestion.nodes import scan_collection, split_records

PROJECT = Path(__file__).resolve().parents[1]
NDSB = PROJECT.parent / "shared" / "data" / "ndsb_train.zip"
DEMO = PROJECT / "data" / "01_raw" / "demo_source.zip"
TARGETS = {"kedro/bare": 0.95, "ingestion/PIL": 1.8, "predict/bare": 0.9}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=NDSB if NDSB.exists() else DEMO,
        help="class-folder zip archive (default: NDSB from ../shared, else the demo)",
    )
    parser.add_argument(
        "--models", nargs="+", default=["resnet18", "efficientnet_b0"], help="timm model names"
    )
    parser.add_argument("--image-size", type=int, default=64, help="crop side fed to the model")
    parser.add_argument("--batch", type=int, default=32, help="training batch size")
    parser.add_argument("--eval-batch", type=int, default=128, help="prediction batch size")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads, the same for every measured path",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="ingestion decoding processes"
    )
    parser.add_argument("--steps", type=int, default=12, help="optimiser updates per epoch")
    parser.add_argument(
        "--epochs", type=int, default=5, help="epochs per measurement (first = warm-up)"
    )
    parser.add_argument(
        "--predict-images", type=int, default=2048, help="images per prediction pass"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians)")
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="ingest an evenly spaced subset of this many files (0: all)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["training", "predict"], help="stages to leave out"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


# --- measuring -----------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory (MiB) of this process during a ``with`` block (Linux: the
    kernel's high-water mark, reset on entry; elsewhere the process's peak so far)."""

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc) -> None:
        self.mib = _peak_rss_mib()


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


def steady_rate(rates: list[float]) -> float:
    """The fastest epoch after the first (warm-up): other processes on the machine can only
    slow an epoch down, so the fastest is the closest to what the code itself allows."""
    return max(rates[1:] or rates)


# --- (d) ingestion --------------------------------------------------------------------------


def subset_archive(source: Path, limit: int, folder: Path) -> Path:
    """``source`` itself, or a stored zip of ``limit`` evenly spaced files of it."""
    if not limit:
        return source
    with zipfile.ZipFile(source) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        chosen = [
            members[int(i)] for i in np.linspace(0, len(members) - 1, min(limit, len(members)))
        ]
        target = folder / f"subset_{limit}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            for member in chosen:
                out.writestr(member.filename, archive.read(member))
    return target


BASELINE_FILL = 255  # a bare script pads with one fixed value


def pil_loop(archive_path: Path, size: int, fill: int) -> int:
    """The naive single-core way: read, decode, pad to square, resize, one file at a time."""
    images = []
    with zipfile.ZipFile(archive_path) as archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            image = Image.open(io.BytesIO(archive.read(member))).convert("RGB")
            side = max(image.size)
            canvas = Image.new("RGB", (side, side), (fill,) * 3)
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            images.append(np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS)))
    return len(np.stack(images))


def ingest(archive_path: Path, image_size: int, workers: int, out: Path):
    """The ingestion pipeline's work for one collection: scan + validate + cache (spooled),
    split, and the cache written by its catalog dataset. Returns (files seen, manifest,
    cache path)."""

    ingestion = IngestionParams(workers=workers, spool_dir=str(out / "spool"))
    records, cache, summary = scan_collection(
        ImageSourceDataset(path=str(archive_path)).load(),
        DataParams(image_size=image_size),
        PreprocessingParams(),  # the project's defaults: each image padded with its background
        ingestion,
    )
    manifest = split_records(records, ingestion)
    cache_path = out / "images.npy"
    ImageCacheDataset(filepath=str(cache_path)).save(cache)
    return summary["files_seen"], manifest, cache_path


def measure_ingestion(args: argparse.Namespace, work: Path) -> dict:

    archive_path = subset_archive(args.data, args.limit, work)
    data = DataParams(image_size=args.image_size)
    rows = []
    for repeat in range(args.repeats):
        with PeakMemory() as pil_memory:
            started = time.perf_counter()
            files = pil_loop(archive_path, data.cache_size, BASELINE_FILL)
            pil_seconds = time.perf_counter() - started
        # each repeat writes a new cache, as a versioned run does (overwriting the previous
        # repeat's would time deleting it); the previous one is deleted outside the timing
        out = work / f"ingestion_{repeat}"
        out.mkdir()
        with PeakMemory() as ingest_memory:
            started = time.perf_counter()
            seen, manifest, cache_path = ingest(archive_path, args.image_size, args.workers, out)
            ingest_seconds = time.perf_counter() - started
        shutil.rmtree(work / f"ingestion_{repeat - 1}", ignore_errors=True)
        rows.append(
            {
                "pil": files / pil_seconds,
                "ingestion": seen / ingest_seconds,
                "ratio": (seen / ingest_seconds) / (files / pil_seconds),
                "pil_peak_mib": pil_memory.mib,
                "ingestion_peak_mib": ingest_memory.mib,
            }
        )
        print(
            f"  ingestion repeat {repeat + 1}: PIL {rows[-1]['pil']:.0f} files/s, "
            f"ingestion {rows[-1]['ingestion']:.0f} files/s, ratio {rows[-1]['ratio']:.2f}",
            flush=True,
        )
    return {
        "files": seen,
        "images": len(manifest),
        "cache_size": data.cache_size,
        "workers": args.workers,
        **{key: median([row[key] for row in rows]) for key in rows[0]},
        "repeats": rows,
        "manifest": manifest,
        "cache_path": cache_path,
    }


# --- (a) bare, (b) engine, (c) kedro: training --------------------------------------------


def training_settings(args: argparse.Namespace, state_dir: Path) -> dict:
    """The training section used by (b) and (c): fixed epochs of ``--steps`` updates,
    evaluation only after the last epoch on one batch of validation images."""
    return {
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "batch_size": args.batch,
        "accumulation_steps": 1,
        "max_epochs": args.epochs,
        "min_epochs": args.epochs,
        "max_updates_per_epoch": args.steps,
        "eval_every": args.epochs,
        "max_val_images": args.batch,
        "eval_batch_size": args.eval_batch,
        "num_workers": 0,
        "resume": False,
        "state_dir": str(state_dir),
        "warmup": {"frozen_epochs": 0, "low_lr_epochs": 0},
    }


def bare_training(
    net: torch.nn.Module, args: argparse.Namespace, n_classes: int, training: TrainingParams
) -> list[float]:
    """images/s per epoch of a plain loop: random normalised tensors, one SGD step per batch
    (the stage's learning rate, momentum and weight decay), no data path."""
    device = resolve_device(args.device)
    net.to(device).train()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    net.to(memory_format=memory_format)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, n_classes, (args.batch,), device=device)
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=training.lr.backbone_from_scratch,
        momentum=training.momentum,
        nesterov=training.nesterov,
        weight_decay=training.weight_decay,
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    rates = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for _ in range(args.steps):
            with autocast(device, args.precision):
                logits = net(images)[2]
            criterion(logits.float(), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _synchronise(device)
        rates.append(args.steps * args.batch / (time.perf_counter() - started))
    return rates


def engine_training(settings: tuple, cache: np.ndarray, manifest) -> list[float]:
    """images/s per epoch of ``train_stage`` (what the training node calls) with the node's
    own ``(model, data, training)`` settings."""
    model, data, training = settings
    checkpoint = train_stage(
        cache,
        manifest,
        model=model,
        data=data,
        training=training,
        route="benchmark",
        stage="pretraining",
        backbone_init="scratch",
    )
    return [entry["images_per_second"] for entry in checkpoint.history.epochs]


class KedroProject:
    """A throw-away copy of the project (conf/ + pyproject.toml) whose catalog holds the
    benchmark's cache and manifest as the latest ``source`` ingestion."""

    def __init__(self, folder: Path, manifest, cache: np.ndarray, args: argparse.Namespace):

        self.folder, self.args = folder, args
        shutil.copytree(PROJECT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
        (folder / "conf" / "local").mkdir()
        shutil.copy(PROJECT / "pyproject.toml", folder / "pyproject.toml")
        (folder / "src").mkdir()  # the package itself is imported from the environment
        bootstrap_project(folder)
        with self.session(args.models[0]) as session:
            catalog = session.load_context().catalog
            catalog.save("source_manifest", manifest)
            catalog.save("source_image_cache", cache)

    def session(self, model: str):

        params = {
            "model": {"name": model, "pretrained": "none"},
            "data": {"image_size": self.args.image_size},
            "training": training_settings(self.args, self.folder / "state"),
        }
        return KedroSession.create(project_path=self.folder, runtime_params=params)

    def settings(self, model: str) -> tuple[ModelParams, DataParams, TrainingParams]:
        """The model, data and training settings the node trains with (project parameters,
        the benchmark's overrides, the stage's own section), for (a) and (b) to use too."""
        with self.session(model) as session:
            params = session.load_context().params
        run = RunParams(name="in_domain", route="in_domain")
        training = run.training_params(params["training"], params["pretraining"])
        return params["model"], params["data"], training

    def train(self, model: str) -> tuple[list[float], float]:
        """Run the training node through the session; its images/s per epoch (from the
        checkpoint the catalog saved) and the whole session's wall time."""
        started = time.perf_counter()
        with self.session(model) as session:
            session.run(pipeline_names=["pretraining"], node_names=["in_domain.train_on_source"])
        seconds = time.perf_counter() - started
        with self.session(model) as session:
            checkpoint = session.load_context().catalog.load("in_domain.source_model")
        return [entry["images_per_second"] for entry in checkpoint.history.epochs], seconds


# --- (e) prediction ---------------------------------------------------------------------------


def bare_forward(net: torch.nn.Module, args: argparse.Namespace, count: int) -> float:
    """images/s of batched forward passes on random tensors (eval mode, inference mode)."""

    device = resolve_device(args.device)
    net.to(device).eval()
    batch = torch.randn(args.eval_batch, 3, args.image_size, args.image_size, device=device)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, count, args.eval_batch):
            with autocast(device, args.precision):
                net(batch[: min(args.eval_batch, count - start)])
    _synchronise(device)
    return count / (time.perf_counter() - started)


def engine_predict(
    net: torch.nn.Module, args: argparse.Namespace, cache: np.ndarray, rows: np.ndarray
) -> float:
    """images/s of evaluation's batched prediction (``inference.predict``) on the cache."""

    mean, std = model_normalisation(net)
    dataset = CachedImages(
        cache, np.zeros(len(cache), np.int64), rows, args.image_size, train=False
    )
    started = time.perf_counter()
    predict(
        net,
        dataset,
        args.eval_batch,
        mean,
        std,
        resolve_device(args.device),
        precision=args.precision,
    )
    return len(rows) / (time.perf_counter() - started)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the run ----------------------------------------------------------------------------------


def measure_model(
    model: str,
    args: argparse.Namespace,
    cache: np.ndarray,
    manifest,
    project: KedroProject | None,
) -> dict:
    """(a), (b), (c) and (e) for one model, repeat by repeat; medians over the repeats."""
    result: dict = {"model": model, "repeats": []}
    for repeat in range(args.repeats):
        row: dict = {}
        if "training" not in args.skip:
            row |= measure_training(model, repeat, args, cache, manifest, project)
        if "predict" not in args.skip:
            row |= measure_prediction(model, repeat, args, cache, manifest)
        result["repeats"].append(row)
        print(
            f"  {model} repeat {repeat + 1}: "
            + ", ".join(
                f"{k} {v:.2f}" if "/" in k else f"{k} {v:.0f}"
                for k, v in row.items()
                if "peak" not in k and "seconds" not in k
            ),
            flush=True,
        )
    for key in result["repeats"][0]:
        result[key] = median([row[key] for row in result["repeats"]])
    return result


def measure_training(
    model: str, repeat: int, args: argparse.Namespace, cache, manifest, project: KedroProject
) -> dict:
    """(a), (b) and (c) back to back, in an order rotated by ``repeat`` (none always runs
    first or last), all with the settings the Kedro node gets."""
    n_classes = manifest["label"].nunique()
    settings = project.settings(model)
    paths = {
        "bare": lambda: (
            bare_training(build_model(model, n_classes)[0], args, n_classes, settings[2]),
            None,
        ),
        "engine": lambda: (engine_training(settings, cache, manifest), None),
        "kedro": lambda: project.train(model),
    }
    row: dict = {}
    for name in rotated(list(paths), repeat):
        with PeakMemory() as memory:
            rates, seconds = paths[name]()
        row[name], row[f"{name}_peak_mib"] = steady_rate(rates), memory.mib
        if seconds is not None:
            row[f"{name}_session_seconds"] = seconds
    row["engine/bare"] = row["engine"] / row["bare"]
    row["kedro/bare"] = row["kedro"] / row["bare"]
    return row


def measure_prediction(model: str, repeat: int, args: argparse.Namespace, cache, manifest) -> dict:
    """(e): two passes each of the bare forward and ``predict``, alternated (order rotated
    by ``repeat``); the fastest of each."""
    net = build_model(model, manifest["label"].nunique())[0]
    count = min(args.predict_images, len(cache))
    bare_forward(net, args, min(count, args.eval_batch))  # warm-up
    passes = {
        "bare_forward": lambda: bare_forward(net, args, count),
        "predict": lambda: engine_predict(net, args, cache, np.arange(count)),
    }
    measured: dict[str, list[float]] = {name: [] for name in passes}
    row: dict = {}
    for _ in range(2):
        for name in rotated(list(passes), repeat):
            with PeakMemory() as memory:
                measured[name].append(passes[name]())
            row[f"{name}_peak_mib"] = memory.mib
    row["bare_forward"] = max(measured["bare_forward"])
    row["predict"] = max(measured["predict"])
    row["predict/bare"] = row["predict"] / row["bare_forward"]
    return row


def report(ingestion: dict, models: list[dict], args: argparse.Namespace) -> list[str]:
    """The summary table, one ratio per line with its target."""
    lines = [
        f"plankton-kedro throughput · {args.data.name} · {args.image_size} px · batch "
        f"{args.batch} · device {args.device} · {args.precision} · {args.threads} torch "
        f"threads · median of {args.repeats} repeats",
        f"(d) ingestion: {ingestion['files']} files ({ingestion['images']} images, cache "
        f"{ingestion['cache_size']} px), {ingestion['workers']} worker processes",
        _row("single-core PIL", ingestion["pil"], "files/s", ingestion["pil_peak_mib"]),
        _row("ingestion", ingestion["ingestion"], "files/s", ingestion["ingestion_peak_mib"])
        + " (main process)",
        "    " + _ratio("ingestion/PIL", ingestion["ratio"]),
    ]
    for m in models:
        lines.append(f"{m['model']}:")
        if "bare" in m:
            lines += [
                _row("(a) bare loop", m["bare"], "img/s", m["bare_peak_mib"]),
                _row("(b) engine", m["engine"], "img/s", m["engine_peak_mib"])
                + f"   b/a {m['engine/bare']:.3f}",
                _row("(c) kedro node", m["kedro"], "img/s", m["kedro_peak_mib"])
                + "   "
                + _ratio("c/a", m["kedro/bare"], "kedro/bare")
                + f"   [whole session {m['kedro_session_seconds']:.1f} s]",
            ]
        if "predict" in m:
            lines += [
                _row("bare forward", m["bare_forward"], "img/s", m["bare_forward_peak_mib"]),
                _row("(e) predict", m["predict"], "img/s", m["predict_peak_mib"])
                + "   "
                + _ratio("e/bare", m["predict/bare"], "predict/bare"),
            ]
    return lines


def _row(label: str, rate: float, unit: str, peak_mib: float) -> str:
    return f"    {label:<18} {rate:8.1f} {unit}   peak {peak_mib:.0f} MiB"


def _ratio(label: str, value: float, target_name: str | None = None) -> str:
    target = TARGETS[target_name or label]
    verdict = "OK" if value >= target else "BELOW TARGET"
    return f"{label} {value:.3f}  (target >= {target})  {verdict}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    logging.getLogger("plankton_kedro").setLevel(logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plankton-bench-") as tmp:
        work = Path(tmp)
        print(f"ingesting {args.data} ...", flush=True)
        ingestion = measure_ingestion(args, work)

        cache = ImageCacheDataset(filepath=str(ingestion["cache_path"])).load()
        manifest = ingestion["manifest"]
        needs_kedro = "training" not in args.skip
        project = KedroProject(work / "project", manifest, cache, args) if needs_kedro else None
        _quiet_kedro()
        models = []
        measured = {"training", "predict"} - set(args.skip)
        for model in args.models if measured else []:  # ingestion only: no model lines
            print(f"measuring {model} ...", flush=True)
            models.append(measure_model(model, args, cache, manifest, project))
        lines = report(ingestion, models, args)
        del cache
    print("\n".join(lines))
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")
    if args.json:
        ingestion = {k: v for k, v in ingestion.items() if k not in ("manifest", "cache_path")}
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "ingestion": ingestion,
                    "models": models,
                },
                indent=2,
            )
        )
    return 0


def _quiet_kedro() -> None:
    """Kedro's own INFO lines would drown the figures; warnings still show."""
    for name in ("kedro", "plankton_kedro"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
