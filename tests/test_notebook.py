"""notebooks/explore_results.ipynb runs top to bottom on the outputs of a demo run."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT
from tests.demo_run import ROUTES, demo_project

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_results.ipynb"

pytestmark = pytest.mark.slow


def test_notebook_shows_route_metrics_confusion_matrix_and_misclassified_images(
    tmp_path_factory, monkeypatch
):
    project = demo_project(tmp_path_factory)
    folder = project / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, folder)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    tables = [out["data"]["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    assert any(all(f">{route}<" in table for route in ROUTES) for table in tables)
    text = "".join(out.get("text", "") for out in outputs)
    assert "test images misclassified" in text and "(metrics.json: " in text
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == 2  # confusion matrix, grid of misclassified images
