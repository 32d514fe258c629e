"""The project's training recipe against a plain timm loop, on the same images (issue #13).

What it compares, for every seed, on one collection ingested once by the project's own
ingestion (``scan_collection`` + ``split_records``: per-collection preprocessing, by default
``fill: auto``, which pads UVP6 with black; byte-identical files under two labels left out):

  plain    timm ``--model`` (default resnet18) from random weights with its own linear head,
           SGD (momentum 0.9, weight decay 5e-4, no Nesterov) + ``OneCycleLR`` (max lr 0.05,
           torch's defaults otherwise), cross-entropy without label smoothing, random
           horizontal and vertical flips only, batch 32 (last incomplete batch dropped, as
           timm's training loader does), ``--epochs`` passes over train + val (80 %), no
           validation, no model selection: the final model is tested. Input: the whole
           padded image resized to ``--image-size`` (a cache made with ``resize_ratio=1``).
  project  the same network through the project's engine (``modelling.stages.train_stage``,
           what the ``out_of_domain`` route's node calls, ``model.pretrained=none``) with the
           defaults of ``conf/base/parameters.yml`` (bottleneck + weight-normalised head,
           random crops from the ``resize_ratio`` cache + flips, the inverse-decay schedule
           ``lr0 * (1 + gamma * p) ** -power``, label smoothing, Nesterov, selection and early
           stopping on validation), trained on 70 %, validated on 10 %, tested with the
           engine's centre crops. ``max_epochs`` is set so that it sees as many images as the
           plain loop (its epochs are one pass over 70 %, so it gets more of them); only
           ``model.name``, ``data.image_size``, ``training.max_epochs``, ``training.seed``,
           ``training.resume`` and ``training.state_dir`` are changed.

Both are tested on the same test images (20 %) with scikit-learn's accuracy and macro F1.

Seeds: each seed draws its own stratified 70/10/20 split (``ingestion.split.seed``) *and* the
networks' initialisation and sample order (``training.seed``; the plain loop's torch/numpy
seeds). Within a seed both recipes share the split, so per-seed differences are paired;
across seeds the spread includes which images land in the (small) test split.

``--ablate`` also runs variants of the project recipe, one change each (see ``VARIANTS``),
through the same engine; changes that no parameter can express (the linear head, training on
train + val) are made by patching the engine *in this process only*.

    python benchmarks/plain_loop.py --data data/01_raw/uvp6_sample.zip \\
        --seeds 42 1 2 --out /tmp/plain_loop
    python benchmarks/plain_loop.py ... --ablate all   # or --ablate inverse_decay,no_smoothing

Results are appended to ``<out>/runs.jsonl`` (a run already there is not repeated, so
several invocations may share one ``--out``, e.g. baselines and variants in two processes)
and the table (mean ± std over seeds; differences to the plain loop paired by seed) is
printed at the end and written to ``<out>/table.md``. Torch runs on ``--threads`` threads (1
by default: on a busy 2-core machine two threads ran 3-5x slower than one). Measured figures:
docs/results.md ("Our defaults against a plain loop").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import yaml
from sklearn import metrics as skm
from torch import nn

from plankton_kedro.datasets.image_source import ImageSourceDataset
from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    ModelParams,
    PreprocessingParams,
    SplitParams,
    TrainingParams,
)
from plankton_kedro.engine.modelling import schedule as schedule_module
from plankton_kedro.engine.modelling import stages
from plankton_kedro.engine.modelling.data import CachedImages
from plankton_kedro.engine.modelling.inference import predict
from plankton_kedro.engine.modelling.model import PlanktonNet, model_normalisation
from plankton_kedro.engine.modelling.resume import stage_fingerprint
from plankton_kedro.pipelines.ingestion.nodes import scan_collection, split_records

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
PLAIN = {"batch_size": 32, "max_lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}


# --- data ----------------------------------------------------------------------------------


@dataclass
class Collection:
    """One ingestion, cached twice: ``crops`` at ``image_size / resize_ratio`` (the project's),
    ``whole`` at ``image_size`` (``resize_ratio=1``: the plain loop's)."""

    records: Any
    crops: np.ndarray
    whole: np.ndarray
    whole_preprocessing: dict  # the ``whole`` cache's record (cache_size differs)
    summary: dict


def ingest(path: str, image_size: int, resize_ratio: float, spool: str) -> Collection:
    source = ImageSourceDataset(path=path).load()
    ingestion = IngestionParams(workers=min(2, os.cpu_count() or 1), spool_dir=spool)
    preprocessing = PreprocessingParams()  # fill auto, colour auto: the project's defaults
    caches = {}
    for name, ratio in (("crops", resize_ratio), ("whole", 1.0)):
        data = DataParams(image_size=image_size, resize_ratio=ratio)
        records, cache, summary = scan_collection(source, data, preprocessing, ingestion)
        caches[name] = (records, np.array(cache), summary)  # a copy: the spool is removed
    records, crops, summary = caches["crops"]
    if not records["rel_path"].equals(caches["whole"][0]["rel_path"]):
        raise RuntimeError("the two ingestions listed the images in different orders")
    whole_records, whole, _ = caches["whole"]
    return Collection(records, crops, whole, whole_records.attrs["preprocessing"], summary)


@dataclass
class Split:
    manifest: Any
    labels: np.ndarray  # class index per manifest row (-1: left out)
    class_names: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_for(collection: Collection, seed: int) -> Split:
    ingestion = IngestionParams(split=SplitParams(**SPLIT, seed=seed))
    manifest = split_records(collection.records, ingestion)
    splits = manifest["split"].to_numpy()
    used = np.isin(splits, ("train", "val", "test"))
    class_names = sorted(manifest.loc[used, "label"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    labels = manifest["label"].map(index).fillna(-1).astype(np.int64).to_numpy()
    rows = {s: np.flatnonzero(splits == s) for s in ("train", "val", "test")}
    return Split(manifest, labels, class_names, rows["train"], rows["val"], rows["test"])


# --- the plain loop ------------------------------------------------------------------------


def plain_updates_per_epoch(n_images: int) -> int:
    return n_images // PLAIN["batch_size"]


def run_plain(images: np.ndarray, split: Split, args: argparse.Namespace, seed: int) -> dict:
    """timm network, SGD + OneCycleLR, flips only, train+val, final model on test."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = timm.create_model(args.model, pretrained=False, num_classes=len(split.class_names))
    config = timm.data.resolve_model_data_config(net)
    mean = torch.tensor(config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["std"]).view(1, -1, 1, 1)
    train_rows = np.concatenate([split.train, split.val])
    batch = PLAIN["batch_size"]
    steps = plain_updates_per_epoch(len(train_rows))
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=PLAIN["max_lr"],
        momentum=PLAIN["momentum"],
        weight_decay=PLAIN["weight_decay"],
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=PLAIN["max_lr"], total_steps=args.epochs * steps
    )
    criterion = nn.CrossEntropyLoss()

    def tensor(rows: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - mean) / std

    net.train()
    for _ in range(args.epochs):
        order = rng.permutation(train_rows)
        for b in range(steps):
            rows = order[b * batch : (b + 1) * batch]
            x = tensor(rows)
            hflip = torch.from_numpy(rng.random(len(rows)) < 0.5)
            vflip = torch.from_numpy(rng.random(len(rows)) < 0.5)
            x = torch.where(hflip.view(-1, 1, 1, 1), x.flip(-1), x)
            x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(-2), x)
            loss = criterion(net(x), torch.from_numpy(split.labels[rows]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    net.eval()
    with torch.inference_mode():
        logits = torch.cat(
            [net(tensor(split.test[i : i + 128])) for i in range(0, len(split.test), 128)]
        )
    return {
        **scores(split.labels[split.test], logits.argmax(1).numpy()),
        "images_seen": args.epochs * steps * batch,
        "train_images": len(train_rows),
    }


# --- the project's recipe and its variants -------------------------------------------------


@dataclass
class Variant:
    """One change to the project recipe (``settings``: overrides of the training section;
    ``patch``: a context manager changing the engine in this process only)."""

    description: str
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    patch: str | None = None
    train_on: str = "train"  # "train" (70 %) or "train+val" (80 %, final model)
    # Early stopping switched off in variant ``same_unless_stopped``: where that run was not
    # stopped early this one is the same computation (runs are deterministic), so it is reused.
    same_unless_stopped: str | None = None


VARIANTS = {
    "project": Variant(
        "the project's defaults (from random weights: OneCycle, early stopping from 80 % of "
        "max_epochs)"
    ),
    "inverse_decay": Variant(
        "the paper's inverse decay lr0 (1 + 10p)^-0.75 with early stopping after min_epochs "
        "(the default before OneCycle; the 'project' rows of the first measurement)",
        training={"scheduler": {"kind": "inverse_decay"}},
    ),
    "linear_head": Variant(
        "plain linear head on the backbone features (no bottleneck, no weight norm)",
        patch="linear_head",
    ),
    "flips_only": Variant(
        "flips only: data.resize_ratio=1 (the crop is the whole image, tested whole)",
        data={"resize_ratio": 1.0},
    ),
    "no_early_stop": Variant(
        "inverse decay without early stopping (min_epochs = max_epochs), best epoch on val "
        "still selected",
        training={"scheduler": {"kind": "inverse_decay"}, "min_epochs": "max"},
        same_unless_stopped="inverse_decay",
    ),
    "onecycle_no_es": Variant(
        "OneCycle without early stopping, best epoch on val still selected",
        training={"scheduler": {"kind": "one_cycle"}, "min_epochs": "max"},
        same_unless_stopped="project",
    ),
    "final_model": Variant(
        "no early stopping, no selection: the final model (70 % train)",
        training={"min_epochs": "max", "eval_every": "max"},
    ),
    "train_val_final": Variant(
        "train on train+val (80 %), final model, same images seen",
        training={"min_epochs": "max", "eval_every": "max"},
        train_on="train+val",
    ),
    "no_smoothing": Variant("label_smoothing=0", training={"label_smoothing": 0.0}),
    "no_nesterov": Variant("nesterov=false", training={"nesterov": False}),
    "lr_0.1": Variant("every lr x2 (0.1)", training={"lr": "x2"}),
    "lr_0.025": Variant("every lr /2 (0.025)", training={"lr": "/2"}),
    "plainlike": Variant(
        "all of OneCycle + linear_head + flips_only + train_val_final + no_smoothing + "
        "no_nesterov: should land on the plain loop",
        training={
            "scheduler": {"kind": "one_cycle"},
            "min_epochs": "max",
            "eval_every": "max",
            "label_smoothing": 0.0,
            "nesterov": False,
        },
        data={"resize_ratio": 1.0},
        patch="linear_head",
        train_on="train+val",
    ),
}


def project_settings(
    args: argparse.Namespace, seed: int, state_dir: str
) -> tuple[ModelParams, DataParams, dict]:
    """conf/base/parameters.yml's model, data and training sections, with the network, the
    image size, the seed and a throw-away state folder set (max_epochs set per run)."""
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())
    model = ModelParams(**{**base["model"], "name": args.model, "pretrained": "none"})
    data = DataParams(**{**base["data"], "image_size": args.image_size})
    training = {**base["training"], "seed": seed, "resume": False, "state_dir": state_dir}
    return model, data, training


def linear_head_model(name: str, num_classes: int, **kwargs) -> tuple[PlanktonNet, None]:
    """PlanktonNet with the bottleneck removed and a plain linear classifier."""
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    net = PlanktonNet(backbone, num_classes, 8)
    net.bottleneck = nn.Identity()
    net.classifier = nn.Linear(backbone.num_features, num_classes)
    return net, None


@contextlib.contextmanager
def patched(patch: str | None):
    saved = stages.build_model
    try:
        if patch == "linear_head":
            stages.build_model = linear_head_model
        yield
    finally:
        stages.build_model = saved


def run_project(
    collection: Collection, split: Split, args: argparse.Namespace, seed: int, variant: Variant
) -> dict:
    with tempfile.TemporaryDirectory(prefix="plain_loop_state_") as state_dir:
        model, data, training = project_settings(args, seed, state_dir)
        data = DataParams(**{**data.model_dump(), **variant.data})
        images, manifest = collection.crops, split.manifest
        if data.resize_ratio == 1.0:
            images, manifest = collection.whole, split.manifest.copy()
            manifest.attrs = {
                **split.manifest.attrs,
                "preprocessing": collection.whole_preprocessing,
            }
        if images.shape[1] != data.cache_size:
            raise RuntimeError(f"no {data.cache_size} px cache for {variant.description}")
        train_rows = split.train
        if variant.train_on == "train+val":
            train_rows = np.concatenate([split.train, split.val])
        # Equal images seen: the plain loop's updates, in epochs of one pass over train_rows.
        probe = TrainingParams(**training)
        per_epoch = schedule_module.updates_per_epoch(len(train_rows), probe)
        plain_updates = args.epochs * plain_updates_per_epoch(len(split.train) + len(split.val))
        max_epochs = max(1, round(plain_updates / per_epoch))
        overrides = {"max_epochs": max_epochs}
        for key, value in variant.training.items():
            if value == "max":
                overrides[key] = max_epochs
            elif key == "lr":
                factor = 2.0 if value == "x2" else 0.5
                overrides["lr"] = {k: v * factor for k, v in training["lr"].items()}
            else:
                overrides[key] = value
        settings = TrainingParams(**{**training, **overrides})
        started = time.perf_counter()
        with patched(variant.patch):
            if variant.train_on == "train":
                checkpoint = stages.train_stage(
                    images,
                    manifest,
                    model=model,
                    data=data,
                    training=settings,
                    route="out_of_domain",
                    stage="fine_tuning",
                    backbone_init="pretrained",  # model.pretrained=none: random weights
                    preprocessing=None,
                )
                state, history = checkpoint.state_dict, checkpoint.history
                epochs = history.epochs
                best_epoch, stopped = history.best_epoch, history.stopped_early
                epochs_run = len(history.epochs)
            else:  # the engine's own job runner, with train rows that train_stage cannot express
                job = stages.StageJob(
                    images=images,
                    labels=split.labels,
                    train_rows=train_rows,
                    val_rows=split.val,  # evaluated once, after the last epoch; not selected on
                    class_names=split.class_names,
                    model=model,
                    data=data,
                    training=settings,
                    backbone_init="scratch",
                    init_checkpoint=None,
                    log_prefix=f"{variant.description[:20]} ",
                    state_folder=str(Path(state_dir) / "job"),
                    fingerprint=stage_fingerprint(
                        split.manifest,
                        "uvp6",
                        split.class_names,
                        model,
                        data,
                        settings,
                        None,
                        {},
                    ),  # fmt: skip
                )
                result, _, _, _ = stages.run_job(job)
                epochs = result.history
                state, best_epoch, stopped = result.state_dict, result.best_epoch, False
                epochs_run = len(result.history)
            net, _ = stages.build_model(
                model.name, len(split.class_names), bottleneck_dim=model.bottleneck_dim
            )
        net.load_state_dict(state)
        mean, std = model_normalisation(net)
        test_set = CachedImages(images, split.labels, split.test, data.image_size, train=False)
        outputs = predict(net, test_set, 128, mean, std, "cpu")
    return {
        **scores(outputs.labels, outputs.logits.argmax(1)),
        "images_seen": epochs_run * per_epoch * settings.batch_size,
        "train_images": len(train_rows),
        "max_epochs": max_epochs,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "stopped_early": stopped,
        "train_seconds": time.perf_counter() - started,
        "history": [  # per epoch: training loss, validation score where evaluated
            [round(e["train_loss"], 4), e.get(f"val_{settings.selection_metric}")] for e in epochs
        ],
    }


# --- metrics and report --------------------------------------------------------------------


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n_test": len(y_true),
    }


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(runs: list[dict], seeds: list[int], names: list[str]) -> list[str]:
    by = {(r["name"], r["seed"]): r for r in runs}
    lines = [
        "| recipe | accuracy | F1 macro | Δ acc vs plain (paired) | Δ F1 vs plain (paired) "
        "| epochs run (best) | min/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        mine = [by[(name, s)] for s in seeds if (name, s) in by]
        if not mine:
            continue
        paired = [
            (by[(name, s)], by[("plain", s)])
            for s in seeds
            if (name, s) in by and ("plain", s) in by
        ]
        d_acc = [a["accuracy"] - b["accuracy"] for a, b in paired]
        d_f1 = [a["f1_macro"] - b["f1_macro"] for a, b in paired]
        epochs = ", ".join(
            f"{r['epochs_run']}({r['best_epoch']})" for r in mine if "epochs_run" in r
        )
        minutes = statistics.mean(r["seconds"] for r in mine) / 60
        lines.append(
            f"| {name} | {mean_std([r['accuracy'] for r in mine])} "
            f"| {mean_std([r['f1_macro'] for r in mine])} "
            f"| {'—' if name == 'plain' else mean_std(d_acc)} "
            f"| {'—' if name == 'plain' else mean_std(d_f1)} | {epochs or '—'} | {minutes:.1f} |"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="collection: folder or archive")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, default=15, help="plain loop's epochs (80 %%)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--out", required=True, help="folder for runs.jsonl and table.md")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a busy 2-core machine 2 threads ran 3-5x slower than 1)",
    )
    parser.add_argument(
        "--ablate",
        default="",
        help=f"comma-separated variants of the project recipe, or all: {', '.join(VARIANTS)}",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = ["plain", "project"]
    if args.ablate:
        extra = list(VARIANTS)[1:] if args.ablate == "all" else args.ablate.split(",")
        unknown = [n for n in extra if n not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        names += [n for n in extra if n not in names]
    torch.set_num_threads(args.threads)
    log = out / "runs.jsonl"
    key = {"data": str(args.data), "epochs": args.epochs, "image_size": args.image_size,
           "model": args.model}  # fmt: skip

    def finished() -> list[dict]:  # re-read before every run: invocations may share ``--out``
        lines = log.read_text().splitlines() if log.exists() else []
        return [r for r in map(json.loads, lines) if all(r.get(k) == v for k, v in key.items())]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plain_loop_spool_") as spool:
        collection = ingest(args.data, args.image_size, 0.875, spool)
    print(
        f"ingested {len(collection.records)} images; caches {collection.crops.shape[1]} px "
        f"(project) and {collection.whole.shape[1]} px (plain); torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )
    for seed in args.seeds:
        split = split_for(collection, seed)
        print(
            f"seed {seed}: {len(split.class_names)} classes, {len(split.train)} train / "
            f"{len(split.val)} val / {len(split.test)} test",
            flush=True,
        )
        # Variants first: another invocation into the same --out may be running the baselines.
        for name in names[2:] + names[:2]:
            if any(r["name"] == name and r["seed"] == seed for r in finished()):
                continue
            base = VARIANTS[name].same_unless_stopped if name in VARIANTS else None
            reused = [r for r in finished() if r["name"] == base and r["seed"] == seed]
            if reused and not reused[0]["stopped_early"]:
                result = {**reused[0], "name": name, "reused": base}
                with log.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"  {name:16s} seed {seed}: = {base} (it was not stopped early)", flush=True)
                continue
            t0 = time.perf_counter()
            if name == "plain":
                result = run_plain(collection.whole, split, args, seed)
            else:
                result = run_project(collection, split, args, seed, VARIANTS[name])
            result = {**key, "name": name, "seed": seed, **result,
                      "seconds": time.perf_counter() - t0}  # fmt: skip
            with log.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(
                f"  {name:16s} seed {seed}: accuracy {result['accuracy']:.4f} · f1_macro "
                f"{result['f1_macro']:.4f} · {result['images_seen']} images seen · "
                f"{result['seconds']:.0f} s"
                + (
                    f" · epochs {result['epochs_run']} (best {result['best_epoch']})"
                    if "epochs_run" in result
                    else ""
                ),  # fmt: skip
                flush=True,
            )
    lines = table(finished(), args.seeds, names)
    lines += ["", *(f"- {n}: {VARIANTS[n].description}" for n in names if n in VARIANTS)]
    lines.append(f"\nwall time of this invocation: {(time.perf_counter() - started) / 60:.1f} min")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
