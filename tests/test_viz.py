"""kedro-viz: layers on every dataset, previews of our datasets, and the static site in a
headless browser (Debian's ``chromium``; the browser test is skipped without it)."""

from __future__ import annotations

import base64
import functools
import html
import http.server
import io
import json
import re
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from PIL import Image

from plankton_kedro.datasets import (
    CheckpointDataset,
    ImageCacheDataset,
    ImageSourceDataset,
    ManifestDataset,
)
from plankton_kedro.engine.checkpoint import History, Preprocessing
from tests.conftest import PROJECT_ROOT, small_checkpoint
from tests.demo_run import demo_project, run_kedro

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


# --- previews of the project's datasets ------------------------------------------------------


def test_checkpoint_preview_shows_model_classes_image_size_and_best_score(tmp_path):
    dataset = CheckpointDataset(filepath=str(tmp_path / "model.pt"))
    dataset.save(
        small_checkpoint(
            model_name="resnet18",
            class_names=["copepod", "diatom"],
            preprocessing=Preprocessing(73, 64, 0, (0.5,) * 3, (0.5,) * 3),
            history=History(epochs=[{}, {}, {}, {}], best_score=0.9, best_epoch=3),
        )
    )
    preview = json.loads(dataset.preview())
    assert preview["model_name"] == "resnet18" and preview["route"] == "two_stage"
    assert preview["class_names"] == ["copepod", "diatom"] and preview["n_classes"] == 2
    assert (preview["image_size"], preview["fill"]) == (64, 0)
    assert (preview["best_score"], preview["best_epoch"], preview["epochs_run"]) == (0.9, 3, 4)
    assert "state_dict" not in preview


def test_manifest_preview_counts_images_per_class_and_split(tmp_path):
    manifest = pd.DataFrame(
        {"label": ["a", "a", "a", "b", "b"], "split": ["train", "train", "test", "val", "train"]}
    )
    dataset = ManifestDataset(filepath=str(tmp_path / "manifest.parquet"))
    dataset.save(manifest)
    preview = dataset.preview()
    assert preview["columns"] == ["label", "train", "val", "test", "total"]
    assert preview["data"] == [["a", 2, 0, 1, 3], ["b", 1, 1, 0, 2], ["(all classes)", 3, 1, 1, 5]]


def test_image_source_preview_counts_image_files_per_class_without_decoding(tmp_path):
    archive = tmp_path / "survey.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("top/copepod/1.png", "top/copepod/2.jpg", "top/diatom/1.tif"):
            zf.writestr(name, b"not decoded by the preview")
        zf.writestr("top/diatom/notes.txt", b"not an image")
        zf.writestr("top/detritus/1.png", b"excluded")
    dataset = ImageSourceDataset(path=str(archive), exclude_classes=["detritus"])
    preview = dataset.preview()
    assert preview["columns"] == ["label", "files"]
    assert preview["data"] == [["copepod", 2], ["diatom", 1], ["(all classes)", 3]]

    folders = tmp_path / "official"
    for split, label in (("train", "a"), ("train", "a"), ("test", "b")):
        (folders / split / label).mkdir(parents=True, exist_ok=True)
        (folders / split / label / f"{len(list(folders.rglob('*.png')))}.png").write_bytes(b"x")
    preview = ImageSourceDataset(path=str(folders), layout="split_folders").preview()
    assert preview["columns"] == ["label", "train", "test", "total"]
    assert preview["data"][-1] == ["(all classes)", 2, 1, 3]


@pytest.mark.parametrize("shard_size", [None, 4])
def test_image_cache_preview_is_a_grid_of_cached_images(tmp_path, shard_size):
    images = np.zeros((10, 6, 6, 3), dtype=np.uint8)
    images[:, 1:5, 1:5] = np.arange(10, dtype=np.uint8)[:, None, None, None] * 20 + 30
    dataset = ImageCacheDataset(filepath=str(tmp_path / "images.npy"), shard_size=shard_size)
    dataset.save(images)
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(dataset.preview()))))
    assert grid.shape == (2 * 6, 8 * 6, 3)  # 10 images: two rows of eight
    np.testing.assert_array_equal(grid[:6, :6], images[0])
    np.testing.assert_array_equal(grid[6:, 6:12], images[9])


def test_every_dataset_of_every_pipeline_has_a_kedro_viz_layer():
    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT) as session:
        catalog = session.load_context().catalog
        missing = {
            (name, dataset)
            for name, pipeline in pipelines.items()
            for dataset in pipeline.datasets()
            if not dataset.startswith("params:")
            and dataset != "parameters"
            and not _layer(catalog.config_resolver.resolve_pattern(dataset))
        }
    assert not missing, sorted(missing)


def _layer(config: dict) -> str | None:
    return ((config.get("metadata") or {}).get("kedro-viz") or {}).get("layer")


# --- the static site of a demo run ---------------------------------------------------------


@pytest.fixture(scope="module")
def viz_site(tmp_path_factory) -> Path:
    """``kedro viz build --include-previews`` in a project copy after a demo run."""
    project = demo_project(tmp_path_factory)
    result = run_kedro(project, "viz", "build", "--include-previews")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (project / "viz_build.log").write_text(result.stdout + result.stderr)
    return project / "build"


def _api_node(site: Path, pipeline: str, name: str) -> tuple[dict, dict]:
    graph = json.loads((site / "api" / "pipelines" / pipeline).read_text())
    node = next(n for n in graph["nodes"] if n["name"] == name)
    return node, json.loads((site / "api" / "nodes" / node["id"]).read_text())


@pytest.mark.slow
def test_static_site_has_layers_and_previews_of_metrics_plots_and_our_datasets(viz_site):
    bootstrap_project(PROJECT_ROOT)
    rendered = {path.name for path in (viz_site / "api" / "pipelines").iterdir()}
    assert rendered == set(pipelines)  # every registered pipeline, __default__ included
    graph = json.loads((viz_site / "api" / "pipelines" / "two_stage").read_text())
    assert (
        graph["layers"][:2] == ["01_raw", "02_intermediate"] and "08_reporting" in graph["layers"]
    )
    assert {"source", "target", "two_stage"} <= set(graph["modular_pipelines"])
    expected = {
        "two_stage.metrics": "JSONPreview",
        "two_stage.confusion_matrix": "ImagePreview",
        "two_stage.target_learning_curves": "ImagePreview",
        "two_stage.target_model": "JSONPreview",
        "two_stage.model_card": "HTMLPreview",
        "target_manifest": "TablePreview",
        "target_images": "TablePreview",
    }
    for name, preview_type in expected.items():
        _, details = _api_node(viz_site, "two_stage", name)
        assert details["preview_type"] == preview_type and details["preview"], name
    _, model = _api_node(viz_site, "two_stage", "two_stage.target_model")
    assert {"model_name", "class_names", "image_size", "best_score"} <= set(
        json.loads(model["preview"])
    )
    _, card = _api_node(viz_site, "two_stage", "two_stage.model_card")
    assert "<h2>Known limits</h2>" in card["preview"] and "<table>" in card["preview"]
    # Scripts and styles are local files: only an optional web font points elsewhere.
    page = (viz_site / "index.html").read_text()
    assert not re.search(r'<script[^>]+src="https?://', page)


@pytest.mark.slow
def test_viz_build_says_once_what_was_never_saved_and_orders_layers_as_the_folders(viz_site):
    """Catches one warning with a full exception per output of a pipeline not run yet (over
    a hundred after a demo run), and layers out of the order of the data folders."""
    output = (viz_site.parent / "viz_build.log").read_text()
    assert "could not be previewed" not in output
    assert output.count("kedro-viz: no preview for datasets that were never saved") == 1
    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT) as session:
        catalog = session.load_context().catalog
        folders = {}  # layer -> data folder number, from every catalog entry with a file
        for pipeline in pipelines.values():
            for dataset in pipeline.datasets():
                config = catalog.config_resolver.resolve_pattern(dataset) or {}
                found = re.search(r"data/(\d\d)_", str(config.get("filepath", "")))
                if found and _layer(config):
                    folders.setdefault(_layer(config), set()).add(int(found.group(1)))
    assert all(len(numbers) == 1 for numbers in folders.values()), folders
    for pipeline in ("two_stage", "compare", "predict", "export"):
        layers = json.loads((viz_site / "api" / "pipelines" / pipeline).read_text())["layers"]
        numbers = [min(folders[layer]) for layer in layers if layer in folders]
        assert numbers == sorted(numbers), (pipeline, layers)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_two_stage_flowchart_and_metrics_preview_render_offline_in_chromium(viz_site, tmp_path):
    metrics_node, metrics = _api_node(viz_site, "two_stage", "two_stage.metrics")
    accuracy = json.loads(metrics["preview"])["accuracy"]
    handler = functools.partial(_QuietHandler, directory=str(viz_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/no-hints?pid=two_stage&sid={metrics_node['id']}"
    screenshot = tmp_path / "kedro-viz-two_stage.png"
    try:
        dom = _chromium(tmp_path, "--dump-dom", url).stdout
        _chromium(tmp_path, f"--screenshot={screenshot}", url)
    finally:
        server.shutdown()
        server.server_close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / screenshot.name)

    assert 'class="pipeline-flowchart' in dom
    flowchart = set(re.findall(r'data-node-fullname="([^"]+)"', dom))
    # Namespaces start collapsed: the route and the two ingested sets are one node each.
    assert {"source", "target", "two_stage", "target_images", "target_manifest"} <= flowchart
    assert 'class="pipeline-json' in dom, "the metrics preview panel did not open"
    panel = dom[dom.index('class="pipeline-json') :]
    text = re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", panel)))
    assert f'"accuracy":{accuracy}' in text and '"f1_macro":' in text
    assert screenshot.stat().st_size > 10_000


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the static site, plus ``/no-hints?<query>``: a page that switches kedro-viz's
    feature-hint tour off (a browser-storage setting) and opens ``/?<query>``, so that the
    screenshot shows the pipeline rather than the tour."""

    def do_GET(self) -> None:
        if not self.path.startswith("/no-hints?"):
            return super().do_GET()
        target = json.dumps("/?" + self.path.split("?", 1)[1])
        page = (
            '<script>localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false}));'
            f"location.replace({target});</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
        return None

    def log_message(self, *args) -> None:
        pass


def _chromium(tmp_path: Path, action: str, url: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile that cannot reach any host but 127.0.0.1."""
    profile = tmp_path / f"profile-{action.split('=')[0].strip('-')}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1600,1000",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
        action,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result
