"""Nothing left behind by a killed run, and no two runs in one stage's state folder."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from plankton_kedro.engine.atomic import atomic_path, process_tag, remove_orphaned_temporaries
from plankton_kedro.engine.collection.spool import SPOOL_PREFIX, NpySpool
from plankton_kedro.engine.errors import StageBusyError
from plankton_kedro.engine.modelling.resume import stage_lock


def test_a_second_run_of_a_stage_is_refused_while_the_first_trains(tmp_path):
    """Catches two identical training runs sharing one live resume folder (the second
    "resuming" from the first's state file as it is being written)."""
    folder = tmp_path / "two_stage_pretraining"
    busy = pytest.raises(StageBusyError, match=rf"in use by another run .*pid {os.getpid()}")
    with stage_lock(folder), busy, stage_lock(folder):
        pass
    with stage_lock(folder):  # released when the first run ends
        pass


def test_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    """Catches ``state.pt.tmp-*`` files left by a SIGKILL during a state write staying forever."""
    folder = tmp_path / "in_domain_fine_tuning"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"kept")
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    host = process_tag().rsplit("_", 1)[0]
    name = f"state.pt.tmp-{host}_{killed.stdout.strip()}-1234abcd"  # as atomic_path names it
    (folder / name).write_bytes(b"half written")
    with stage_lock(folder):
        assert sorted(p.name for p in folder.iterdir()) == [".lock", "state.pt"]


def test_spools_of_killed_ingestions_are_removed_and_live_ones_kept(tmp_path):
    """Catches a killed ingestion's hidden spool (it grows with its progress: hundreds of GB
    on WHOI) never removed, and a live ingestion's spool removed by another process."""
    host = process_tag().rsplit("_", 1)[0]
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"{SPOOL_PREFIX}{host}_{finished.stdout.strip()}-abc.npy"
    live = tmp_path / f"{SPOOL_PREFIX}{host}_{os.getppid()}-def.npy"
    other_host = tmp_path / f"{SPOOL_PREFIX}elsewhere_1-ghi.npy"
    for path in (dead, live, other_host):
        path.write_bytes(b"pixels")
    spool = NpySpool(tmp_path, 4)
    spool.mapped(0)
    assert not dead.exists() and live.exists() and other_host.exists()


def test_half_written_outputs_of_killed_runs_are_found_and_removed(tmp_path):
    """Catches a checkpoint or cache version killed while being written leaving its
    ``*.tmp-*`` file (or folder) in data/ forever, and a live run's temporary removed."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    version = tmp_path / "06_models" / "two_stage" / "target_model.pt" / "2026-12-01T00.00.00.000Z"
    version.mkdir(parents=True)
    host = process_tag().rsplit("_", 1)[0]
    dead_file = version / f"target_model.pt.tmp-{host}_{finished.stdout.strip()}-ab12cd34"
    dead_file.write_bytes(b"half a checkpoint")
    dead_folder = tmp_path / "05_model_input" / f"images.tmp-{host}_{finished.stdout.strip()}-x"
    (dead_folder / "shards").mkdir(parents=True)
    with atomic_path(version / "calibration.json") as live:  # this process: alive
        pathlib.Path(live).write_text("{}")
        removed = remove_orphaned_temporaries(tmp_path)
        assert pathlib.Path(live).exists()
    assert sorted(removed) == sorted(
        [dead_file.relative_to(tmp_path).as_posix(), dead_folder.relative_to(tmp_path).as_posix()]
    )
    assert not dead_file.exists() and not dead_folder.exists()
    assert (version / "calibration.json").exists()
