"""Reading collections from folders and archives, and scanning them into records + pixels."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError
from PIL import Image

from plankton_kedro.datasets import ImageSourceDataset
from plankton_kedro.engine.collection.layouts import SkippedFile
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing
from plankton_kedro.engine.collection.scan import scan_images
from plankton_kedro.engine.collection.sources import ImageSource
from plankton_kedro.engine.errors import CollectionError

SIZE = 16
WHITE_PADDED = CachePreprocessing(cache_size=SIZE, fill=255)


def png(mode: str = "RGB", size: tuple[int, int] = (12, 8), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((10, 20, 3), seed * 40, dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


GOOD = {
    "copepod/a.png": png(seed=1),
    "copepod/b.jpg": jpeg(),
    "diatom/c.png": png("L", (5, 9), seed=2),
    "diatom/deep/d.png": png("P", seed=3),
}
BAD = {
    "good/ok.png": png(seed=4),
    "good/trunc.png": png(seed=5)[: len(png(seed=5)) // 2],
    "good/empty.jpg": b"",
    "good/.DS_Store": b"\x00\x00\x00\x01Bud1",
    "good/notes.txt": b"a note",
    "good/fake.jpg": b"<html><body>Not found</body></html>",
    "root.png": png(seed=6),
    "__MACOSX/good/._ok.png": b"\x00\x05\x16\x07",
    "broken/only.png": b"\x89PNG\r\n\x1a\n broken",
}
BAD_REASONS = {
    "good/trunc.png": "truncated or corrupt image (image file is truncated)",
    "good/empty.jpg": "empty file (0 bytes)",
    "good/.DS_Store": "not an image file (system file)",
    "good/notes.txt": "not an image file (extension '.txt')",
    "good/fake.jpg": "not an image (looks like HTML/XML text)",
    "root.png": "not inside a class folder",
    "__MACOSX/good/._ok.png": "macOS resource fork",
    "broken/only.png": "truncated or corrupt image (header unreadable)",
}


# --- builders: the same files as a folder, zip or tar ----------------------------------------


def make_folder(root: Path, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    return root


def make_zip(path: Path, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for rel in dirs:
            archive.writestr(zipfile.ZipInfo(f"{rel}/"), b"")
        for rel, data in files.items():
            archive.writestr(zipfile.ZipInfo(rel), data)
    return path


def make_tar(path: Path, files: dict[str, bytes], dirs: tuple[str, ...] = (), mode="w") -> Path:
    with tarfile.open(path, mode) as archive:
        for rel in dirs:
            info = tarfile.TarInfo(rel)
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def build(kind: str, where: Path, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    if kind == "folder":
        return make_folder(where / "coll", files, dirs)
    if kind == "zip":
        return make_zip(where / "coll.zip", files, dirs)
    tar_modes = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz"}
    return make_tar(where / f"coll.{kind}", files, dirs, mode=tar_modes[kind])


def with_top(files: dict[str, bytes], top: str | None) -> dict[str, bytes]:
    return {f"{top}/{rel}" if top else rel: data for rel, data in files.items()}


KINDS = ["folder", "zip", "tar", "tar.gz", "tgz"]


# --- same collection, every container --------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    source = ImageSource(make_folder(tmp_path_factory.mktemp("ref"), GOOD))
    return list(source.iter_files()), scan_images(source, preprocessing=WHITE_PADDED)


@pytest.mark.parametrize("top", [None, "train"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_container_reads_the_same(tmp_path, reference, kind, top):
    source = ImageSource(build(kind, tmp_path, with_top(dict(reversed(GOOD.items())), top)))
    files, result = reference
    assert source.kind == kind.split(".")[0].replace("tgz", "tar")
    assert source.name == "coll"
    assert source.top_folder == top
    assert list(source.iter_files()) == files == sorted(GOOD.items())
    assert source.skipped == []
    scanned = scan_images(source, preprocessing=WHITE_PADDED)
    assert scanned.records.equals(result.records)
    np.testing.assert_array_equal(scanned.images, result.images)
    assert (scanned.skipped, scanned.empty_classes, scanned.n_files) == ([], [], 4)


def test_records_describe_each_image(reference):
    _, result = reference
    records = result.records
    assert list(records.columns) == [
        "rel_path",
        "label",
        "official_split",
        "part",
        "width",
        "height",
        "mode",
        "bytes",
        "sha1",
        "frame_cropped",
        "background",
        "colour",
        "bits",
    ]
    assert records["rel_path"].tolist() == sorted(GOOD)
    assert records["label"].tolist() == ["copepod", "copepod", "diatom", "diatom"]
    assert records["mode"].tolist() == ["RGB", "RGB", "L", "P"]
    assert records[["width", "height"]].values.tolist() == [[12, 8], [20, 10], [5, 9], [12, 8]]
    assert records["bytes"].tolist() == [len(GOOD[p]) for p in sorted(GOOD)]
    assert records["sha1"].tolist() == [hashlib.sha1(GOOD[p]).hexdigest() for p in sorted(GOOD)]
    assert result.images.dtype == np.uint8
    assert result.images.shape == (4, SIZE, SIZE, 3)


def test_threads_and_progress_do_not_change_results(tmp_path, reference):
    seen = []
    source = ImageSource(make_folder(tmp_path, {**GOOD, "copepod/x.txt": b"x"}))
    threaded = scan_images(source, preprocessing=WHITE_PADDED, workers=4, progress=seen.append)
    _, result = reference
    assert threaded.records.equals(result.records)
    np.testing.assert_array_equal(threaded.images, result.images)
    assert seen == [1, 2, 3, 4, 5]


def test_empty_collection_gives_empty_typed_result(tmp_path):
    result = scan_images(ImageSource(make_folder(tmp_path, {})), preprocessing=WHITE_PADDED)
    assert result.images.shape == (0, SIZE, SIZE, 3)
    assert list(result.records.columns)[:2] == ["rel_path", "label"]
    assert result.n_files == 0


# --- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "zip", "tar.gz"])
def test_every_bad_file_is_skipped_with_its_reason(tmp_path, kind):
    source = ImageSource(build(kind, tmp_path, BAD, dirs=("empty",)))
    result = scan_images(source, preprocessing=WHITE_PADDED)
    assert source.top_folder is None
    assert result.records["rel_path"].tolist() == ["good/ok.png"]
    assert {s.path: s.reason for s in result.skipped} == BAD_REASONS
    assert result.empty_classes == ["broken", "empty"]
    assert result.n_files == len(BAD)
    assert "empty" in source.list_dirs()
    assert not any(d.startswith("__MACOSX") for d in source.list_dirs())


def test_skipped_is_rebuilt_not_appended_on_each_iteration(tmp_path):
    source = ImageSource(build("zip", tmp_path, BAD))
    for _ in range(2):
        list(source.iter_files())
        assert source.skipped == [SkippedFile("__MACOSX/good/._ok.png", "macOS resource fork")]


def test_top_folder_is_found_despite_junk_and_forks_at_the_root(tmp_path):
    files = {**with_top(GOOD, "uvp6"), ".DS_Store": b"x", "__MACOSX/uvp6/._a.png": b"x"}
    source = ImageSource(make_zip(tmp_path / "uvp6.zip", files, dirs=("uvp6", "uvp6/empty")))
    assert (source.name, source.top_folder) == ("uvp6", "uvp6")
    assert source.list_dirs() == ["copepod", "diatom", "diatom/deep", "empty"]
    assert [p for p, _ in source.iter_files()] == [".DS_Store", *sorted(GOOD)]


def test_class_folders_without_top_are_not_mistaken_for_one(tmp_path):
    source = ImageSource(make_folder(tmp_path / "data", {"classA/x.png": b"", "classB/y.png": b""}))
    assert source.top_folder is None
    assert source.name == "data"


def test_unreadable_zip_member_is_skipped(tmp_path):
    path = make_zip(tmp_path / "c.zip", {"a/x.png": png(seed=7), "a/y.png": png(seed=8)})
    raw = bytearray(path.read_bytes())
    start = raw.index(png(seed=7)) + 20
    raw[start] ^= 0xFF  # stored member: flipping a byte breaks its CRC
    path.write_bytes(bytes(raw))
    source = ImageSource(path)
    assert [p for p, _ in source.iter_files()] == ["a/y.png"]
    assert source.skipped[0].path == "a/x.png"
    assert source.skipped[0].reason.startswith("cannot read from archive (Bad CRC-32")


def test_duplicate_archive_paths_keep_the_first(tmp_path):
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("a/x.png", b"first")
        archive.writestr("a/x.png", b"second")
    source = ImageSource(path)
    assert list(source.iter_files()) == [("a/x.png", b"first")]
    assert source.skipped == [SkippedFile("a/x.png", "duplicate path, skipped")]


# --- unsafe archives -------------------------------------------------------------------------

UNSAFE = {"../evil.png": png(), "/abs.png": png(), "a/../../up.png": png(), "C:/drive.png": png()}


def snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path, monkeypatch, kind):
    archive = build(kind, tmp_path, {**UNSAFE, "ok/fine.png": png()})
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path.parent)
    result = scan_images(ImageSource(archive), preprocessing=WHITE_PADDED)
    assert result.records["rel_path"].tolist() == ["ok/fine.png"]
    assert {s.path: s.reason for s in result.skipped} == dict.fromkeys(
        UNSAFE, "unsafe path in archive, refused"
    )
    assert snapshot(tmp_path.parent) == before
    assert not Path("/abs.png").exists()


def test_tar_links_and_devices_are_refused(tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as archive:
        for name, kind in [("a/sym.png", tarfile.SYMTYPE), ("a/hard.png", tarfile.LNKTYPE)]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "a/real.png"
            archive.addfile(info)
        device = tarfile.TarInfo("a/dev.png")
        device.type = tarfile.CHRTYPE
        archive.addfile(device)
        real = tarfile.TarInfo("a/real.png")
        real.size = len(GOOD["copepod/a.png"])
        archive.addfile(real, io.BytesIO(GOOD["copepod/a.png"]))
    source = ImageSource(path)
    assert [p for p, _ in source.iter_files()] == ["a/real.png"]
    assert sorted(s.path for s in source.skipped) == ["a/dev.png", "a/hard.png", "a/sym.png"]
    assert {s.reason for s in source.skipped} == {"not a regular file"}


def test_truncated_tar_gz_raises_a_collection_error(tmp_path):
    files = {f"c/{i}.png": png(seed=i, size=(64, 64)) for i in range(4)}
    path = make_tar(tmp_path / "cut.tar.gz", files, mode="w:gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CollectionError, match=r"cut\.tar\.gz is truncated or corrupt"):
        list(ImageSource(path).iter_files())


# --- opening errors and the Kedro dataset ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.zip", None, "does not exist"),
        ("x.zip", b"not a zip", "is not a valid zip archive"),
        ("x.tar.gz", b"not a tar", "is not a valid tar archive"),
        ("x.csv", b"a,b", "is neither a folder nor a .zip/.tar/.tar.gz/.tgz archive"),
    ],
)
def test_bad_locations_raise_dataset_error_naming_the_path(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    dataset = ImageSourceDataset(path=str(path))
    with pytest.raises(DatasetError, match=message) as caught:
        dataset.load()
    assert str(path) in str(caught.value)
    assert dataset.exists() is (content is not None)


def test_dataset_loads_names_and_refuses_to_save(tmp_path, monkeypatch):
    make_zip(tmp_path / "train.tgz.zip", GOOD)
    monkeypatch.setenv("HOME", str(tmp_path))
    dataset = ImageSourceDataset(path="~/train.tgz.zip", name="ndsb")
    source = dataset.load()
    assert (source.location, source.name, source.kind) == ("~/train.tgz.zip", "ndsb", "zip")
    assert ImageSourceDataset(path="~/train.tgz.zip").load().name == "train.tgz"
    assert dataset._describe() == {
        "path": "~/train.tgz.zip",
        "name": "ndsb",
        "layout": "imagefolder",
    }
    assert dataset.exists()
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(source)


def test_relative_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    make_folder(tmp_path / "data" / "raw", GOOD)
    monkeypatch.chdir(tmp_path)
    source = ImageSource(Path("data/raw"))
    assert (source.location, source.name, source.kind) == ("data/raw", "raw", "folder")
    assert len(list(source.iter_files())) == len(GOOD)


def test_folder_links_are_followed_only_inside_the_collection(tmp_path):
    """Catches a class folder linked to /etc (or a file linked anywhere) read and listed as
    images, while archives refuse links; ``follow_links: true`` is the explicit way out."""
    root, outside = tmp_path / "coll", tmp_path / "elsewhere"
    for folder in (root / "a", root / "b", outside / "c"):
        folder.mkdir(parents=True)
        (folder / "1.png").write_bytes(b"\x89PNG not decoded here")
    (root / "c").symlink_to(outside / "c")  # a class folder outside
    (root / "b" / "2.png").symlink_to(outside / "c" / "1.png")  # a file outside
    (root / "a_link").symlink_to(root / "a")  # inside: followed (each real folder once)
    source = ImageSourceDataset(path=str(root)).load()
    files = source.list_files()
    assert "b/1.png" in files and not any(f.startswith("c/") for f in files)
    assert "b/2.png" not in files
    list(source.iter_files())
    refused = {s.path: s.reason for s in source.skipped}
    assert set(refused) == {"c", "b/2.png"}
    assert all("link to outside the collection" in reason for reason in refused.values())
    trusting = ImageSourceDataset(path=str(root), follow_links=True).load()
    assert {"c/1.png", "b/2.png"} <= set(trusting.list_files())


def test_a_member_over_the_size_limit_is_skipped_before_it_is_read(tmp_path):
    """Catches a small zip whose member inflates to 100 MB (a PNG followed by zeros) being
    read whole into memory: refused from its header, reported, the other images kept."""
    path = tmp_path / "bomb.zip"
    png = io.BytesIO()
    Image.new("L", (8, 8), 9).save(png, "PNG")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/ok.png", png.getvalue())
        with archive.open("a/bomb.png", "w") as member:
            member.write(png.getvalue())
            for _ in range(100):
                member.write(bytes(1_000_000))
    assert path.stat().st_size < 1_000_000
    source = ImageSourceDataset(path=str(path)).load()  # the default limit, 64 MB
    assert [name for name, _ in source.iter_files()] == ["a/ok.png"]
    (skipped,) = source.skipped
    assert (
        skipped.path == "a/bomb.png" and "100.0 MB uncompressed, over the 64 MB" in skipped.reason
    )
    lifted = ImageSourceDataset(path=str(path), max_file_mb=None).load()
    assert lifted.list_files() == ["a/bomb.png", "a/ok.png"]


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_the_size_limit_applies_to_folders_and_tars_too(tmp_path, kind):
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    (root / "a" / "small.png").write_bytes(b"x" * 1000)
    (root / "a" / "large.png").write_bytes(b"x" * 3_000_000)
    path = root
    if kind == "tar":
        path = tmp_path / "set.tar"
        with tarfile.open(path, "w") as archive:
            archive.add(root, arcname="set")
    source = ImageSourceDataset(path=str(path), max_file_mb=2).load()
    assert source.list_files() == ["a/small.png"]
    list(source.iter_files())
    top = "set/" if kind == "tar" else ""  # refused entries keep the archive's own path
    assert [s.path for s in source.skipped] == [f"{top}a/large.png"]
