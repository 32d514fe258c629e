"""The resumable training state of one stage, kept in an unversioned folder the node owns.

After every epoch the whole state (model, optimiser, scaler, counters, best weights,
history) is written through a temporary file and a rename, so a kill at any moment leaves the
previous epoch's state intact. A finished stage is marked complete: running it again with the
same data and settings reuses its result instead of training again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from plankton_kedro.engine.atomic import atomic_path, remove_orphaned_temporaries
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.errors import ResumeMismatchError, StageBusyError

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"

STATE_FILE = "state.pt"
# Training settings that do not change what is learned: they may differ on resume.
OPERATIONAL_SETTINGS = {
    "device",
    "devices",
    "resume",
    "state_dir",
    "num_workers",
    "eval_batch_size",
    "augment_on_device",
}


@contextmanager
def stage_lock(folder: str | Path) -> Iterator[None]:
    """Hold an advisory lock on a stage's state folder while it trains: a second run of the
    same stage stops at once naming the first, instead of resuming from its live state.
    With the lock held, temporary files that a killed run left in the folder are removed."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform (Windows): no protection
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StageBusyError(
            f"{folder} is in use by another run of this stage ({holder}); wait for it to "
            "finish, or give this run its own --params training.state_dir=..."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        _remove_temporaries(folder)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _remove_temporaries(folder: Path) -> None:
    """A state folder outside ``data/`` is not swept by the run's start: sweep it here."""
    leftovers = remove_orphaned_temporaries(folder)
    if leftovers:
        logger.info(
            "%s: removed %d temporary file(s) left by an interrupted run (%s)",
            folder,
            len(leftovers),
            ", ".join(leftovers[:3]),
        )


class TrainingStateStore:
    """``<folder>/state.pt`` plus the fingerprint of what the state belongs to."""

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE
        self.fingerprint = fingerprint

    def load_resumable(self) -> dict[str, Any] | None:
        """The state to continue from: an interrupted run, or a completed one with the same
        fingerprint (nothing left to train); ``None`` when there is none.

        Raises ``ResumeMismatchError`` naming what differs when an interrupted run belongs to
        other data, classes, model or settings. A completed run with another fingerprint is
        simply replaced.
        """
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        differences = describe_differences(state.get("fingerprint", {}), self.fingerprint)
        if state.get("complete"):
            return None if differences else state
        if differences:
            raise ResumeMismatchError(
                f"{self.path} holds an interrupted run of this stage with different "
                f"{'; '.join(differences)}. Run with --params training.resume=false to start "
                "afresh (the interrupted run is then discarded), or restore the previous "
                "settings to continue it."
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (temporary file + rename)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            torch.save({**state, "fingerprint": self.fingerprint}, temporary)

    def discard(self) -> None:
        """Forget any previous state (``training.resume=false`` or a fresh start)."""
        self.path.unlink(missing_ok=True)


def describe_differences(
    before: dict[str, Any], now: dict[str, Any], prefix: str = ""
) -> list[str]:
    """Human-readable differences between two nested fingerprints."""
    differences = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += describe_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            if isinstance(old, list | tuple) or isinstance(new, list | tuple):
                differences.append(f"{prefix}{key}")
            else:
                differences.append(f"{prefix}{key} ({old!r} then, {new!r} now)")
    return differences


def stage_fingerprint(
    manifest: pd.DataFrame,
    dataset: str,
    class_names: list[str],
    model: ModelParams,
    data: DataParams,
    training: TrainingParams,
    init_weights: dict[str, torch.Tensor] | None,
    preprocessing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What an interrupted run must share with this one to be resumed by it."""
    used = manifest[manifest["split"].isin(["train", "val"])]
    columns = [c for c in ("rel_path", "label", "split", "sha1") if c in used.columns]
    content = pd.util.hash_pandas_object(used[columns], index=False).to_numpy().tobytes()
    return {
        "data": {
            "dataset": dataset,
            "train and val images": hashlib.sha1(content).hexdigest(),
        },
        "classes": class_names,
        "model": model.model_dump(),
        "image settings": data.model_dump(),
        "cache preprocessing": preprocessing,
        "training": training.model_dump(exclude=OPERATIONAL_SETTINGS),
        "initial checkpoint": _weights_digest(init_weights),
    }


def _weights_digest(state_dict: dict[str, torch.Tensor] | None) -> str | None:
    if state_dict is None:
        return None
    digest = hashlib.sha1()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].cpu().numpy().tobytes())
    return digest.hexdigest()
