"""A corpus of bad inputs, as a careless or hostile user would give them: broken, empty and
flat archives, archive attacks (traversal, links, devices, bombs, lying headers), odd image
modes and names, broken or mismatched checkpoints, bad parameters, a busy stage, leftovers of
killed runs.

Each :class:`BadInput` names the pipeline and the ``--params`` to run it with and what must
happen: one ``Error:`` line containing ``error``, or a finished run whose report lists each
``skipped`` path with its reason. ``tests/test_bad_inputs.py`` runs every case through the
``kedro run`` command; ``python -m tests.bad_inputs <folder>`` writes the corpus there and
prints the commands, to try a case by hand.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import sys
import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_MODEL = "test_efficientnet"
INGESTION_REPORT = "data/08_reporting/source/ingestion_report.json"
PREDICTION_REPORT = "data/08_reporting/predictions/prediction_report.json"
STATE_DIR = "data/06_models/in_progress"
IMAGES = "plankton_kedro.datasets.ImageSourceDataset"
SMALL_TRAINING = (
    f"model.name={TINY_MODEL},model.pretrained=none,data.image_size=24,training.max_epochs=1,"
    "training.max_updates_per_epoch=2,training.batch_size=4"
)


@dataclass(frozen=True)
class BadInput:
    """One bad input and the outcome the project owes the user."""

    name: str
    pipeline: str
    params: str  # the --params value; {corpus} is the corpus folder
    error: str | None = None  # a fragment of the one `Error:` line; None: the run succeeds
    skipped: dict[str, str] = field(default_factory=dict)  # report path -> reason fragment
    report: str = INGESTION_REPORT
    usable_images: int | None = None  # images the report must count as usable
    hold_lock: str | None = None  # a stage state folder another run holds
    plant: dict[str, str] = field(default_factory=dict)  # files of killed runs: path -> log text
    conf: dict[str, str] = field(default_factory=dict)  # configuration files: path -> text
    slow: bool = False  # trains a model

    def command(self, corpus: Path) -> list[str]:
        return ["run", f"--pipelines={self.pipeline}", "--params", self.params_for(corpus)]

    def params_for(self, corpus: Path) -> str:
        return self.params.format(corpus=corpus)


# --- pieces ----------------------------------------------------------------------------------


def png(seed: int, size: tuple[int, int] = (16, 16), mode: str = "L") -> bytes:
    """A small, distinct image (dark blob on light ground) as PNG bytes."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0]), 230, np.uint8)
    y, x = rng.integers(2, max(3, size[1] - 6)), rng.integers(2, max(3, size[0] - 6))
    pixels[y : y + 5, x : x + 5] = rng.integers(10, 90)
    pixels += rng.integers(0, 8, pixels.shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def noise(size: int, seed: int) -> bytes:
    """Random bytes, the same on every run."""
    return np.random.default_rng(seed).bytes(size)


def class_members(classes: tuple[str, ...], per_class: int, seed: int) -> dict[str, bytes]:
    """``{<class>/<nnn>.png: bytes}``: a valid collection of distinct images."""
    return {
        f"{label}/{i:03d}.png": png(seed * 1000 + c * 100 + i)
        for c, label in enumerate(classes)
        for i in range(per_class)
    }


GOOD = class_members(("copepod", "diatom"), 6, seed=1)


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_zip(path: Path, members: dict[str, bytes], extra: list[zipfile.ZipInfo] = ()) -> Path:
    """A zip of ``members``, then of ``extra`` entries (ZipInfo with their data in .comment)."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # a duplicate name is one of the attacks
        for name, data in members.items():
            archive.writestr(name, data)
        for info in extra:
            archive.writestr(info, info.comment)
    return path


def zip_entry(name: str, data: bytes, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.external_attr = mode << 16
    info.comment = data  # carried to write_zip, which writes it as the entry's data
    return info


def image_bomb() -> bytes:
    """A valid PNG header declaring 100,000 x 100,000 pixels, with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def lying_zip(path: Path) -> Path:
    """A zip whose central directory declares one member 100 bytes long while it inflates to
    8 MB: a reader trusting the header must stop at the declared size."""
    members = dict(GOOD)
    members["copepod/liar.png"] = png(99) + b"\0" * 8_000_000
    write_zip(path, members)
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the last member's central directory record
    data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def bad_crc_zip(path: Path) -> Path:
    """A zip with one stored member whose bytes were damaged after it was written."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in GOOD.items():
            archive.writestr(name, data)
        archive.writestr("diatom/damaged.png", png(77))
    data = bytearray(path.read_bytes())
    offset = data.find(png(77)) + 200
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def attack_tar(path: Path) -> Path:
    """A tar.gz of a good collection plus every kind of member a tar can hold that is not a
    plain file inside it: traversal, absolute path, symbolic and hard link, device, FIFO."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in GOOD.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        payload = png(55)
        for name in ("../escaped_tar.png", "/tmp/plankton_corpus_abs.png"):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        for name, kind, target in (
            ("copepod/passwd.png", tarfile.SYMTYPE, "/etc/passwd"),
            ("copepod/hard.png", tarfile.LNKTYPE, "/etc/passwd"),
            ("copepod/tty.png", tarfile.CHRTYPE, ""),
            ("copepod/pipe.png", tarfile.FIFOTYPE, ""),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return path


def odd_images() -> dict[str, bytes]:
    """One image per unusual mode or format, all readable: 16-bit, 1-bit, float, palette with
    transparency, grey + alpha, RGBA, CMYK JPEG, multi-frame GIF, WebP, TIFF, 1 x 1, 1 x 300,
    a PNG named .jpg."""
    base = Image.open(io.BytesIO(png(5, (24, 24)))).convert("L")

    def encode(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    grey16 = Image.fromarray((np.asarray(base, np.uint16) * 257).astype(np.uint16))
    floats = Image.fromarray(np.asarray(base, np.float32) / 255.0)
    palette = base.convert("P")
    palette.info["transparency"] = 0
    frames = [base, base.point(lambda v: 255 - v)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    odd = {
        "grey16.png": encode(grey16, "PNG"),
        "bilevel.png": encode(base.convert("1"), "PNG"),
        "float.tif": encode(floats, "TIFF"),
        "palette_alpha.png": encode(palette, "PNG", transparency=0),
        "grey_alpha.png": encode(base.convert("LA"), "PNG"),
        "rgba.png": encode(base.convert("RGBA"), "PNG"),
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
        "animated.gif": animated.getvalue(),
        "image.webp": encode(base.convert("RGB"), "WEBP"),
        "image.tiff": encode(base, "TIFF"),
        "one_pixel.png": encode(base.resize((1, 1)), "PNG"),
        "streak.png": encode(base.resize((300, 1)), "PNG"),
        "png_named.jpg": encode(base, "PNG"),
    }
    return {f"diatom/{name}": data for name, data in odd.items()}


def checkpoint_payload(**changes) -> dict:
    """The on-disk dict of a valid, untrained 2-class checkpoint of the tiny model, with
    ``changes`` applied (a key set to ``None`` is removed)."""
    from plankton_kedro.engine.checkpoint import Checkpoint, History, Identity, Preprocessing
    from plankton_kedro.engine.modelling.model import build_model

    net, _ = build_model(TINY_MODEL, 2, image_size=24, seed=0)
    payload = Checkpoint(
        model_name=TINY_MODEL,
        class_names=["copepod", "diatom"],
        state_dict=net.state_dict(),
        preprocessing=Preprocessing(27, 24, "auto", (0.5,) * 3, (0.25,) * 3),
        identity=Identity("corpus", "corpus", "fine_tuning", "corpus", None, 0),
        history=History(),
    ).to_dict()
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    return payload


class _RunsCode:
    """A pickle that would create a file if it were ever unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- the corpus ------------------------------------------------------------------------------


def write_corpus(corpus: Path) -> list[BadInput]:  # noqa: PLR0915 - one block per case
    """Write every bad input under ``corpus`` and return the cases."""
    corpus.mkdir(parents=True, exist_ok=True)
    good_source = write_folder(corpus / "good_source", GOOD)
    target = write_folder(corpus / "good_target", class_members(("copepod", "diatom"), 8, seed=2))
    with_target = f"target_images={target}"
    cases: list[BadInput] = []

    def ingest(name: str, source: Path | str, **outcome) -> None:
        params = f"source_images={source},{with_target}"
        cases.append(BadInput(name, "ingestion", params, **outcome))

    # collections that cannot be used at all
    ingest("missing path", corpus / "nowhere.zip", error="nowhere.zip does not exist")
    (corpus / "not_a_zip.zip").write_bytes(noise(2048, seed=1))
    ingest("random bytes named .zip", corpus / "not_a_zip.zip", error="not_a_zip.zip")
    whole = write_zip(corpus / "whole.zip", GOOD).read_bytes()
    (corpus / "truncated.zip").write_bytes(whole[: len(whole) // 2])
    ingest("truncated zip", corpus / "truncated.zip", error="truncated.zip")
    write_zip(corpus / "empty.zip", {})
    ingest("empty zip", corpus / "empty.zip", error="empty.zip")
    write_zip(corpus / "flat.zip", {name.split("/")[1]: data for name, data in GOOD.items()})
    ingest("flat archive (no class folders)", corpus / "flat.zip", error="flat.zip")
    (corpus / "one_image.png").write_bytes(png(3))
    ingest("a single image instead of a folder", corpus / "one_image.png", error="one_image.png")
    write_folder(corpus / "one_class", class_members(("copepod",), 8, seed=3))
    ingest("a single class", corpus / "one_class", error="one_class")
    (corpus / "empty_folder").mkdir()
    ingest("empty folder", corpus / "empty_folder", error="empty_folder")
    write_folder(corpus / "text_only", {"copepod/a.txt": b"x", "diatom/b.csv": b"y"})
    ingest("class folders without images", corpus / "text_only", error="text_only")
    whole_tar = attack_tar(corpus / "whole.tar.gz").read_bytes()
    (corpus / "truncated.tar.gz").write_bytes(whole_tar[: len(whole_tar) // 2])
    ingest("truncated tar.gz", corpus / "truncated.tar.gz", error="truncated.tar.gz")
    (corpus / "images.rar").write_bytes(b"Rar!\x1a\x07\x00" + noise(64, seed=2))
    ingest("unsupported archive kind", corpus / "images.rar", error="images.rar")

    # archive attacks and bombs: the member is refused and reported, the rest is ingested
    outside = corpus / "outside"
    write_folder(outside, {"secret.png": png(42), "deep/more.png": png(43)})
    extra = [
        zip_entry("../../escaped_zip.png", png(50)),
        zip_entry(f"{corpus}/absolute_zip.png", png(51)),
        zip_entry("copepod/passwd.png", b"/etc/passwd", mode=stat.S_IFLNK | 0o777),
        zip_entry("copepod/inner.zip", write_zip(corpus / "inner.zip", GOOD).read_bytes()),
        zip_entry("copepod/000.png", png(52)),  # a second member of the same name
    ]
    write_zip(corpus / "attack.zip", GOOD, extra)
    ingest(
        "zip: traversal, absolute path, link, nested archive, duplicate name",
        corpus / "attack.zip",
        skipped={
            "../../escaped_zip.png": "unsafe path",
            f"{corpus}/absolute_zip.png": "unsafe path",
            "copepod/passwd.png": "not a regular file",
            "copepod/inner.zip": "not an image file",
            "copepod/000.png": "duplicate",
        },
    )
    bomb = png(60) + b"\0" * 70_000_000  # deflates to about 70 KB
    write_zip(corpus / "bomb.zip", {**GOOD, "copepod/bomb.png": bomb})
    ingest(
        "zip bomb: a member far over max_file_mb",
        corpus / "bomb.zip",
        skipped={"copepod/bomb.png": "over the 64 MB limit"},
        usable_images=len(GOOD),
    )
    ingest(
        "zip whose header lies about a member's size",
        lying_zip(corpus / "lying.zip"),
        skipped={"copepod/liar.png": "cannot read from archive"},
    )
    ingest(
        "zip member damaged after writing (bad CRC)",
        bad_crc_zip(corpus / "bad_crc.zip"),
        skipped={"diatom/damaged.png": "cannot read from archive"},
    )
    ingest(
        "tar: traversal, absolute path, links, device, FIFO",
        corpus / "whole.tar.gz",
        skipped={
            "../escaped_tar.png": "unsafe path",
            "/tmp/plankton_corpus_abs.png": "unsafe path",
            "copepod/passwd.png": "not a regular file",
            "copepod/hard.png": "not a regular file",
            "copepod/tty.png": "not a regular file",
            "copepod/pipe.png": "not a regular file",
        },
        usable_images=len(GOOD),
    )
    linked = write_folder(corpus / "links", GOOD)
    (linked / "secrets").symlink_to(outside, target_is_directory=True)
    (linked / "copepod" / "secret.png").symlink_to(outside / "secret.png")
    (linked / "diatom" / "loop").symlink_to(linked / "diatom", target_is_directory=True)
    (linked / "diatom" / "dangling.png").symlink_to(corpus / "gone.png")
    ingest(
        "folder: links to outside, a link loop, a dangling link",
        linked,
        skipped={
            "secrets": "link to outside",
            "copepod/secret.png": "link to outside",
            "diatom/dangling.png": "",
        },
        usable_images=len(GOOD),
    )
    write_folder(
        corpus / "image_bomb",
        {**GOOD, "copepod/bomb.png": image_bomb(), "diatom/bomb.png": image_bomb()},
    )
    ingest(
        "image declaring 10^10 pixels (decompression bomb)",
        corpus / "image_bomb",
        skipped={"copepod/bomb.png": "", "diatom/bomb.png": ""},
        usable_images=len(GOOD),
    )
    messy = {
        "copepod/truncated.png": png(70)[:60],
        "copepod/empty.jpg": b"",
        "copepod/.DS_Store": b"\0\0\0\1Bud1",
        "diatom/page.jpg": b"<!DOCTYPE html><html><body>404</body></html>",
        "diatom/notes.txt": b"field notes",
        "diatom/zeros.png": b"\0" * 4096,
    }
    write_folder(corpus / "messy", {**GOOD, **messy})
    ingest(
        "truncated, empty, HTML, zero-filled and non-image files",
        corpus / "messy",
        skipped={name: "" for name in messy},
        usable_images=len(GOOD),
    )
    odd = odd_images()
    write_folder(corpus / "odd_modes", {**GOOD, **odd})
    ingest("odd image modes and formats", corpus / "odd_modes", usable_images=len(GOOD) + len(odd))
    names = {
        "copepod/with space.png": png(80),
        "copepod/ünïcödé.png": png(81),
        "copepod/-leading-dash.png": png(82),
        "diatom/new\nline.png": png(83),
        "diatom/quote'\"s.png": png(84),
    }
    write_folder(corpus / "odd_names", {**GOOD, **names})
    ingest("odd file names", corpus / "odd_names", usable_images=len(GOOD) + len(names))

    # parameters: refused before any node runs
    def parameter(name: str, params: str, error: str) -> None:
        cases.append(BadInput(name, "two_stage", params, error=error))

    parameter("batch size 0", "training.batch_size=0", "training.batch_size")
    parameter("misspelled section", "trainng.max_epochs=3", "did you mean training")
    parameter("misspelled key", "training.max_epoch=3", "max_epoch")
    parameter("text for a number", "training.max_epochs=many", "training.max_epochs")
    parameter("negative image size", "data.image_size=-5", "data.image_size")
    parameter("fill out of range", "preprocessing.source.fill=300", "fill")
    parameter("split fractions over 1", "ingestion.split.train=1.5", "split")
    parameter("unknown model name", "model.name=resnet_does_not_exist", "resnet_does_not_exist")
    parameter("unknown device", "training.device=tpu", "training.device")

    # configuration files a user edited
    def configured(name: str, files: dict[str, str], error: str) -> None:
        cases.append(BadInput(name, "ingestion", with_target, error=error, conf=files))

    configured(
        "YAML syntax error",
        {"conf/local/parameters.yml": "training:\n  max_epochs: [1\n"},
        "conf/local/parameters.yml",
    )
    configured(
        "duplicate key",
        {"conf/local/parameters.yml": "training:\n  seed: 1\n  seed: 2\n"},
        "conf/local/parameters.yml",
    )
    configured(
        "misspelled catalog option",
        {"conf/local/catalog.yml": f"source_images:\n  type: {IMAGES}\n  path: x\n  layot: a\n"},
        "layot",
    )
    configured(
        "misspelled dataset type",
        {"conf/local/catalog.yml": f"source_images:\n  type: {IMAGES}et\n  path: x\n"},
        "ImageSourceDatasetet",
    )
    cases.append(
        BadInput(
            "unknown model name in a parameters file",
            "in_domain",
            f"source_images={good_source},{with_target}",
            error="model.name: 'resnet_18' is not a timm",
            conf={"conf/local/parameters.yml": "model:\n  name: resnet_18\n"},
        )
    )
    configured(
        "misspelled key in a parameters file",
        {"conf/local/parameters.yml": "training:\n  max_epoch: 3\n"},
        "parameter training.max_epoch: there is no such parameter; did you mean training.max_epo",
    )

    # training on inputs the stage cannot use: refused in the node, before training
    small = f"source_images={good_source},{with_target},{SMALL_TRAINING}"
    cases += [
        BadInput(
            "fp16 on a CPU",
            "in_domain",
            f"{small},training.device=cpu,training.precision=fp16",
            error="fp16",
            slow=True,
        ),
        BadInput(
            "split too small for one update",
            "in_domain",
            small.replace("training.batch_size=4", "training.batch_size=64"),
            error="batch",
            slow=True,
        ),
        BadInput(
            "every learning rate 0",
            "in_domain",
            f"{small},training.lr.backbone_from_scratch=0,training.lr.bottleneck=0,"
            "training.lr.classifier=0",
            error="learning rate",
            slow=True,
        ),
        BadInput(
            "the same stage already running",
            "in_domain",
            small,
            error="is in use by another run of this stage",
            hold_lock=f"{STATE_DIR}/in_domain_pretraining",
            slow=True,
        ),
    ]

    # checkpoints given to predict
    def predict_with(name: str, model: Path | str, error: str) -> None:
        params = f"predict_images={target},predict_model={model}"
        cases.append(BadInput(name, "predict", params, error=error, report=PREDICTION_REPORT))

    from plankton_kedro.engine.modelling.model import build_model

    models = corpus / "models"
    models.mkdir()
    good_model = models / "good.pt"
    torch.save(checkpoint_payload(), good_model)
    whole_model = good_model.read_bytes()
    (models / "empty.pt").write_bytes(b"")
    predict_with("empty checkpoint", models / "empty.pt", "is empty (0 bytes)")
    (models / "truncated.pt").write_bytes(whole_model[: len(whole_model) // 2])
    predict_with("truncated checkpoint", models / "truncated.pt", "truncated or corrupt")
    (models / "random.pt").write_bytes(noise(4096, seed=3))
    predict_with("random bytes as checkpoint", models / "random.pt", "not a PyTorch file")
    torch.save({"model": zipfile.ZipInfo("x")}, models / "foreign.pt")
    predict_with("pickled object", models / "foreign.pt", "holds Python objects")
    with (models / "code.pt").open("wb") as stream:
        pickle.dump({"state_dict": _RunsCode(corpus / "code_ran")}, stream)
    predict_with("pickle that runs code", models / "code.pt", "a plain Python pickle")
    torch.save(checkpoint_payload()["state_dict"], models / "bare_state_dict.pt")
    predict_with("bare state_dict", models / "bare_state_dict.pt", "not a plankton-kedro")
    other, _ = build_model("test_resnet", 2, image_size=24, seed=0)
    torch.save(checkpoint_payload(state_dict=other.state_dict()), models / "other_weights.pt")
    predict_with("weights of another network", models / "other_weights.pt", "do not fit")
    torch.save(checkpoint_payload(class_names=["a", "b", "c"]), models / "three_names.pt")
    predict_with("more class names than outputs", models / "three_names.pt", "do not fit")
    torch.save(checkpoint_payload(model_name="resnet_imaginary"), models / "unknown_model.pt")
    predict_with(
        "unknown model name", models / "unknown_model.pt", "'resnet_imaginary' is not a timm"
    )
    crop_over = checkpoint_payload()
    crop_over["preprocessing"] = {**crop_over["preprocessing"], "image_size": 64}
    torch.save(crop_over, models / "crop_over_cache.pt")
    predict_with("image_size over cache_size", models / "crop_over_cache.pt", "image_size 64")
    torch.save(checkpoint_payload(schema=99), models / "future.pt")
    predict_with("newer checkpoint schema", models / "future.pt", "update plankton-kedro")
    torch.save(checkpoint_payload(class_names=None), models / "no_classes.pt")
    predict_with("checkpoint without class names", models / "no_classes.pt", "class_names")
    predict_with("missing checkpoint", models / "nowhere.pt", "no checkpoint file")
    predict_with("no ensemble trained yet", "ensemble", "no trained model at")

    # images given to predict
    def predict_on(name: str, images: Path | str, error: str | None = None, **outcome) -> None:
        params = f"predict_images={images},predict_model={good_model}"
        cases.append(
            BadInput(name, "predict", params, error=error, report=PREDICTION_REPORT, **outcome)
        )

    predict_on("predict: empty zip", corpus / "empty.zip", "empty.zip holds no files")
    predict_on("predict: no image files", corpus / "text_only", "no usable image among")
    predict_on("predict: missing folder", corpus / "nowhere", "nowhere does not exist")
    predict_on("predict: a single image", corpus / "one_image.png", "neither a folder nor")
    predict_on(
        "predict: bad files among images",
        corpus / "messy",
        skipped={name: "" for name in messy},
        usable_images=len(GOOD),
    )

    # the EcoTaxa taxonomy table: read before any image is classified
    taxonomies = corpus / "taxonomy"
    taxonomies.mkdir()
    (taxonomies / "twice.csv").write_text("label,ecotaxa_name\na,Copepoda\na,Calanoida\n")
    (taxonomies / "three_columns.csv").write_text("a,Copepoda,extra\n")
    for name, table, error in (
        ("predict: taxonomy table missing", "nowhere.csv", "does not exist"),
        ("predict: taxonomy label twice", "twice.csv", "line 3: label 'a' is already mapped"),
        ("predict: taxonomy row of 3 columns", "three_columns.csv", "expected 2 columns"),
    ):
        params = f"predict_images={target},predict_model={good_model}"
        params += f",predict.ecotaxa.taxonomy={taxonomies / table}"
        cases.append(BadInput(name, "predict", params, error=error, report=PREDICTION_REPORT))

    # what killed runs left behind is removed by the next run
    cases.append(
        BadInput(
            "leftovers of killed runs",
            "ingestion",
            f"source_images={good_source},{with_target}",
            plant={
                f"data/05_model_input/.spool-{_dead_tag()}-0a1b2c3d.npy": "spool file(s)",
                f"data/06_models/x/v/x.pt.tmp-{_dead_tag()}-0a1b2c3d": "half-written file(s)",
            },
        )
    )
    return cases


def _dead_tag() -> str:
    """``<host>_<pid>`` of a process that cannot be running (pids stay below 2**22)."""
    import socket

    return f"{socket.gethostname()}_{2**22 + 1}"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs").resolve()
    for case in write_corpus(folder):
        expected = f"Error: ...{case.error}..." if case.error else "runs; report lists the skips"
        print(f"{case.name}:\n  kedro {' '.join(case.command(folder))}\n  -> {expected}")
        for path, text in case.conf.items():
            print(f"  (with {path} holding {text!r})")
        if case.hold_lock:
            print(f"  (while another run trains the stage of {case.hold_lock})")
