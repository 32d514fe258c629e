"""The GPU check script runs end to end (on the CPU with gloo here)."""

import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_gpu_check_runs_on_cpu():
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "gpu_check.py"), "--device", "cpu",
         "--model", "test_resnet", "--size", "32", "--batch", "8", "--steps", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK   bf16 autocast" in result.stdout
    assert "OK   DDP over gloo on 2 process(es)" in result.stdout


def test_background_grid_shows_raw_auto_and_white_padding(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "background_grid.py"),
         "--per-set", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.is_file() and "demo_target.zip" in result.stdout
