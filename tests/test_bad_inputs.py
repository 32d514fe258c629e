"""Every case of the bad-input corpus (tests/bad_inputs.py) through ``kedro run``, in process.

Each case must end either in exactly one ``Error:`` line and exit code 1, or in a finished
run whose report lists each refused file with its reason. Never a traceback, nothing written
outside the project's ``data/`` (nor into the corpus, nor where an archive member points),
no new empty file, no new output version of a failed ``predict``, no code run from a
checkpoint.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path

import pytest
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI

from plankton_kedro.engine.modelling.resume import stage_lock
from tests.bad_inputs import PREDICTION_REPORT, BadInput, write_corpus
from tests.conftest import copy_project

# The corpus is written once, at collection: the cases name its files.
ROOT = Path(tempfile.mkdtemp(prefix="plankton-bad-inputs-"))
atexit.register(shutil.rmtree, ROOT, True)
CORPUS = ROOT / "corpus"
CASES = write_corpus(CORPUS)
OUTSIDE_TARGETS = [Path("/tmp/plankton_corpus_abs.png"), CORPUS / "code_ran"]


@pytest.fixture(scope="module")
def project() -> Path:
    """One project for every case (tracking off: the store is an output outside data/)."""
    root = copy_project(ROOT / "project")
    (root / "conf" / "local" / "parameters_tracking.yml").write_text(
        "tracking:\n  enabled: false\n"
    )
    return root


@pytest.fixture(scope="module")
def cli(project: Path) -> KedroCLI:
    return KedroCLI(project_path=project)


def _files(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file and link under ``root`` but in ``skip`` (links not followed) -> (size,
    mtime)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        if Path(folder) in skip:
            dirs.clear()
            continue
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            info = os.lstat(os.path.join(folder, name))
            path = os.path.relpath(os.path.join(folder, name), root)
            found[path] = (info.st_size, info.st_mtime_ns)
    return found


def _newest(project: Path, report: str) -> dict:
    versions = sorted((project / report).iterdir())
    return json.loads((versions[-1] / Path(report).name).read_text())


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] * c.slow) for c in CASES]
)
def test_a_bad_input_ends_in_one_line_or_a_reported_skip(
    case: BadInput, project: Path, cli: KedroCLI, monkeypatch, caplog
):
    monkeypatch.chdir(project)
    monkeypatch.delenv("PLANKTON_KEDRO_TRACEBACK", raising=False)
    data = project / "data"
    for planted in case.plant:
        (project / planted).parent.mkdir(parents=True, exist_ok=True)
        (project / planted).write_bytes(b"\0" * 64)
    # kedro-viz's run-status hook writes .viz/ (the project's, not an input's doing)
    own_outputs = (data, project / ".viz")
    outside_before = _files(ROOT, skip=own_outputs)
    data_before = _files(data)

    try:
        for path, text in case.conf.items():
            (project / path).write_text(text)
        with stage_lock(project / case.hold_lock) if case.hold_lock else nullcontext():
            result = CliRunner().invoke(cli, case.command(CORPUS))
    finally:
        for path in case.conf:
            (project / path).unlink()

    output = result.output + caplog.text  # the `Error:` line, then the log
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in output, output[-4000:]
    if case.error is not None:
        assert isinstance(result.exception, SystemExit), (result.exception, output[-4000:])
        assert result.exit_code == 1, output[-4000:]
        assert len(errors) == 1, output[-4000:]
        assert case.error in errors[0], errors[0]
    else:
        assert result.exit_code == 0, (result.exception, output[-4000:])
        assert not errors, errors
    assert _files(ROOT, skip=own_outputs) == outside_before
    assert not any(target.exists() for target in OUTSIDE_TARGETS)
    new = {path: size for path, (size, _) in _files(data).items() if path not in data_before}
    assert not [path for path, size in new.items() if size <= 1], new
    if case.error is not None and case.report == PREDICTION_REPORT:
        assert not [path for path in new if "predictions" in path], new
    if case.skipped or case.usable_images is not None:
        report = _newest(project, case.report)
        reasons = {item["path"]: item["reason"] for item in report["skipped"]}
        for path, reason in case.skipped.items():
            assert reason in reasons.get(path, "<not listed>"), (path, reasons)
        if case.usable_images is not None:
            assert report["images"] == case.usable_images, reasons
    for planted, log_text in case.plant.items():
        assert not (project / planted).exists() and log_text in output, output[-4000:]
