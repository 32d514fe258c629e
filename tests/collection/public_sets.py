"""Small synthetic archives shaped like the public plankton sets (file names, nesting, split
files), so each adapter is tested on the real shape without the real data.

Every image is a grey "organism" ellipse whose grey level and size depend on its class and
index, so images are distinct (no accidental duplicates) and classes differ.
"""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

from plankton_kedro.engine.collection.frame_crop import SHIPPED_TEMPLATES

TEMPLATES = Path(__file__).parents[2] / "src" / "plankton_kedro" / "templates"
PER_CLASS = 6


def organism(class_index: int, index: int, *, size=(28, 22), background=255) -> Image.Image:
    """A grey ellipse on a plain background, different for every (class, index)."""
    img = Image.new("L", size, background)
    grey = 40 + 30 * class_index + 3 * index
    ImageDraw.Draw(img).ellipse((2, 2, size[0] - 3 - index % 4, size[1] - 3), fill=grey)
    return img


def encode(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def ndsb(root: Path) -> Path:
    """Kaggle's ``train.zip``: ``train/<class>/<number>.jpg``."""
    classes = ("acantharia_protist", "copepod_cyclopoid_oithona", "detritus_other")
    members = {
        f"train/{label}/{1000 * c + i}.jpg": encode(organism(c, i), "JPEG")
        for c, label in enumerate(classes)
        for i in range(PER_CLASS)
    }
    return write_zip(root / "ndsb" / "train.zip", members)


def zoolake(root: Path) -> Path:
    """Eawag's ZooLake ``data.zip``: ``data/zooplankton_0p5x/<class>/training_data/*.jpeg`` and
    ``data/zoolake_train_test_val_separated/{train,val,test}_filenames.txt`` (one
    ``./data/zooplankton_0p5x/...`` path per line). One image is in no list."""
    members, lists = {}, {"train": [], "val": [], "test": []}
    for c, label in enumerate(("daphnia", "copepod", "rotifers")):
        for i in range(PER_CLASS):
            name = f"SPC-EAWAG-0P5X-{1526805000 + 100 * c + i}-3000000000-0001.jpeg"
            path = f"data/zooplankton_0p5x/{label}/training_data/{name}"
            members[path] = encode(organism(c, i), "JPEG")
            split = "train" if i < 4 else "val" if i == 4 else "test"
            lists[split].append(f"./{path}")
    members["data/zooplankton_0p5x/daphnia/training_data/not_listed.jpeg"] = encode(
        organism(0, 9), "JPEG"
    )
    for split, entries in lists.items():
        members[f"data/zoolake_train_test_val_separated/{split}_filenames.txt"] = (
            "\n".join(entries) + "\n"
        ).encode()
    return write_zip(root / "zoolake" / "data.zip", members)


WHOI_CLASSES = ("Ciliate_mix", "dinoflagellate", "flagellate", "mix", "Thalassiosira")


def whoi_years(root: Path, years=(2006, 2007)) -> Path:
    """WHOI-Plankton's yearly archives ``<year>.zip``: ``<year>/<class>/IFCB1_<year>_*.png``.
    Returns the folder holding them."""
    for year in years:
        members = {
            f"{year}/{label}/IFCB1_{year}_{100 + i:03d}_{c:02d}{i:04d}.png": encode(
                organism(c, i + (year - 2006)), "PNG"
            )
            for c, label in enumerate(WHOI_CLASSES)
            for i in range(PER_CLASS)
        }
        write_zip(root / "whoi" / f"{year}.zip", members)
    return root / "whoi"


def whoi22(root: Path) -> Path:
    """WHOI-22: official halves ``train/<class>/*.png`` and ``test/<class>/*.png``."""
    members = {
        f"{split}/{label}/IFCB1_2007_{s}{c}{i:03d}.png": encode(organism(c, i + 7 * s), "PNG")
        for s, split in enumerate(("train", "test"))
        for c, label in enumerate(("Chaetoceros", "Dactyliosolen", "detritus"))
        for i in range(PER_CLASS)
    }
    return write_zip(root / "whoi22" / "whoi22.zip", members)


def zooscannet(root: Path) -> tuple[Path, Path]:
    """ZooScanNet's ``ZooScanSet.tar``: ``ZooScanSet/imgs/<taxon>/<objid>.jpg`` beside
    ``ZooScanSet/taxa.csv``; plus a split table ``objid,set`` (train/validation/test)."""
    members, rows = {}, []
    for c, taxon in enumerate(("Calanoida", "Chaetognatha", "detritus")):
        for i in range(PER_CLASS):
            objid = str(31000000 + 100 * c + i)
            members[f"ZooScanSet/imgs/{taxon}/{objid}.jpg"] = encode(organism(c, i), "JPEG")
            rows.append((objid, "train" if i < 4 else "validation" if i == 4 else "test"))
    members["ZooScanSet/taxa.csv"] = b"objid,taxon\n" + b"".join(
        f"{objid},x\n".encode() for objid, _ in rows
    )
    archive = write_tar(root / "zooscannet" / "ZooScanSet.tar", members)
    table = root / "zooscannet" / "zooscannet_split.csv"
    with table.open("w", newline="") as handle:
        csv.writer(handle).writerows([("objid", "set"), *rows])
    return archive, table


def scale_bar() -> Image.Image:
    (name,) = SHIPPED_TEMPLATES["zooscan"]
    return Image.open(TEMPLATES / name).convert("L")


def framed(img: Image.Image, *, bar: bool = True) -> Image.Image:
    """A ZooScan vignette: the organism on a larger white frame with the scale bar below."""
    frame = Image.new("L", (img.width + 70, img.height + 60), 255)
    frame.paste(img, (40, 10))
    if bar:
        frame.paste(scale_bar(), (3, frame.height - 26))
    return frame


def zooscan20(root: Path) -> Path:
    """ZooScan-20: ``<class>/<name>.png`` vignettes, each with the "1 mm" scale bar."""
    members = {
        f"{label}/{label}_{i}.png": encode(framed(tight_organism(c, i)), "PNG")
        for c, label in enumerate(("Appendicularia", "Chaetognatha", "Copepoda"))
        for i in range(PER_CLASS)
    }
    return write_zip(root / "zooscan20" / "zooscan20.zip", members)


def tight_organism(class_index: int, index: int) -> Image.Image:
    """An organism whose image is exactly its bounding box plus frame_crop's 2-pixel margin
    (what cropping a framed vignette should give back)."""
    img = Image.new("L", (90, 40), 255)
    ImageDraw.Draw(img).ellipse((2, 2, 87, 37), fill=40 + 30 * class_index + 3 * index)
    return img
