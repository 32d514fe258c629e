"""Which saved versions may go: the newest few of each large output, and every version that
the kept models and predictions refer to, stay.

Kedro keeps every version of a versioned output (``<filepath>/<version>/<file name>``) for
ever; image caches and checkpoints are large (WHOI's cache at 224 px: 0.67 TB a version).
:func:`prune_plan` lists the versions of the large kinds (caches, tables, checkpoints, ONNX
models) beyond the newest ``keep`` of each output that nothing kept refers to; metrics,
reports and figures are small and always kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

VERSION_IN_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")
VERSION = re.compile(rf"^{VERSION_IN_TEXT.pattern}$")
LARGE_SUFFIXES = (".npy", ".parquet", ".pt", ".onnx")


@dataclass(frozen=True)
class SavedVersion:
    """One version of one versioned output: ``<output>/<version>/<output name>``."""

    output: Path
    version: str

    @property
    def path(self) -> Path:
        return self.output / self.version / self.output.name

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def files(self) -> list[Path]:
        """The version's files: one, or a sharded cache's shards and index."""
        path = self.path
        if path.is_dir():
            return sorted(f for f in path.rglob("*") if f.is_file())
        return [path] if path.exists() else []


def bytes_freed(plan: list[SavedVersion]) -> list[int]:
    """What deleting each version of ``plan`` frees on disk. A hard-linked file (a reused
    ingestion's cache or shards) frees nothing while a link outside the plan keeps it, and
    counts once, for the first of its versions in the plan, when all its links go."""
    links_in_plan: Counter[tuple[int, int]] = Counter()
    for saved in plan:
        links_in_plan.update((f.stat().st_dev, f.stat().st_ino) for f in saved.files())
    counted: set[tuple[int, int]] = set()
    freed = []
    for saved in plan:
        total = 0
        for file in saved.files():
            status = file.stat()
            key = (status.st_dev, status.st_ino)
            if status.st_nlink <= links_in_plan[key] and key not in counted:
                counted.add(key)
                total += status.st_size
        freed.append(total)
    return freed


def versioned_outputs(data: Path) -> dict[Path, list[str]]:
    """Every versioned output under ``data`` -> its versions, oldest first."""
    outputs: dict[Path, list[str]] = {}
    for folder in sorted(p for p in data.rglob("*") if p.is_dir()):
        versions = sorted(
            child.name
            for child in folder.iterdir()
            if child.is_dir() and VERSION.match(child.name) and (child / folder.name).exists()
        )
        if versions:
            outputs[folder] = versions
    return outputs


def prune_plan(
    data: Path,
    keep: int,
    referenced: Callable[[SavedVersion], Iterable[str]],
) -> list[SavedVersion]:
    """The versions of large outputs under ``data`` that may be deleted: not among the newest
    ``keep`` of their output, and not referred to by a kept version (``referenced`` gives
    the version names a kept checkpoint, ensemble or prediction report names)."""
    outputs = versioned_outputs(data)
    kept = [
        SavedVersion(output, version)
        for output, versions in outputs.items()
        for version in versions[-keep:]
        if keep > 0
    ]
    protected = {version for saved in kept for version in referenced(saved)}
    return [
        SavedVersion(output, version)
        for output, versions in outputs.items()
        if output.name.endswith(LARGE_SUFFIXES)
        for version in versions[: max(len(versions) - keep, 0)]
        if version not in protected
    ]


def references_in_file(saved: SavedVersion) -> set[str]:
    """The versions a kept JSON report names (a prediction report's model, metrics'
    checkpoint and manifest): every string in it shaped like a version."""
    if not saved.output.name.endswith(".json"):
        return set()
    try:
        text = saved.path.read_text()
        json.loads(text)
    except (OSError, ValueError):
        return set()
    return set(VERSION_IN_TEXT.findall(text))


def references_in_checkpoint(saved: SavedVersion) -> set[str]:
    """The versions a kept checkpoint names: the manifest it was trained on, an ensemble's
    members, the stage-1 model it started from (its tensors are memory-mapped, not read)."""
    import torch

    try:
        data = torch.load(saved.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file names nothing
        return set()
    found: set[str] = set()
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += [v for k, v in value.items() if k != "state_dict"]
        elif isinstance(value, list | tuple):
            stack += list(value)
        elif isinstance(value, str):
            found.update(VERSION_IN_TEXT.findall(value))
    return found


def references(saved: SavedVersion) -> set[str]:
    """The versions a kept checkpoint or JSON report refers to."""
    if saved.output.name.endswith(".pt"):
        return references_in_checkpoint(saved)
    return references_in_file(saved)
