"""The throughput benchmark runs end to end on a tiny configuration (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT, TINY_MODEL

TINY = [
    "--data", str(PROJECT_ROOT / "data" / "01_raw" / "demo_source.zip"),
    "--models", TINY_MODEL,
    "--image-size", "24", "--batch", "8", "--eval-batch", "16", "--steps", "2",
    "--epochs", "2", "--predict-images", "32", "--repeats", "1", "--limit", "120",
    "--threads", "1", "--workers", "2",
]  # fmt: skip


def test_benchmark_prints_every_ratio_and_writes_json(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "throughput.py"),
            *TINY,
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in ("ingestion/PIL", "b/a", "c/a", "e/bare", "peak"):
        assert line in result.stdout, line
    results = json.loads(out.read_text())
    assert results["ingestion"]["files"] == 120
    (model,) = results["models"]
    assert model["model"] == TINY_MODEL
    for key in ("bare", "engine", "kedro", "bare_forward", "predict"):
        assert model[key] > 0, key
    assert {"engine/bare", "kedro/bare", "predict/bare"} <= set(model)
