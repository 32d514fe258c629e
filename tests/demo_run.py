"""One small demo run of the three routes, shared by the kedro-viz and notebook tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import copy_project
from .test_kedro_run import SMALLEST

ROUTES = ("in_domain", "out_of_domain", "two_stage")
_project: Path | None = None


def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy in which ``kedro run --pipelines=<the three routes>`` has run (once per
    test session, tiny settings); its output is in ``run.log``."""
    global _project
    if _project is None:
        root = copy_project(tmp_path_factory.mktemp("demo_outputs"))
        result = run_kedro(root, "run", f"--pipelines={','.join(ROUTES)}", "--params", SMALLEST)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        (root / "run.log").write_text(result.stdout + result.stderr)
        _project = root
    return _project


def run_kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    kedro_cli = Path(sys.executable).with_name("kedro")
    return subprocess.run(
        [str(kedro_cli), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
