"""Shared plumbing for our versioned single-file datasets: fsspec access and atomic writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import IO, Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from plankton_kedro.engine.atomic import atomic_path


class VersionedFileDataset(AbstractVersionedDataset):
    """A versioned file on any fsspec filesystem, written through a temporary file + rename.

    A crash or a kill during ``save`` leaves at most a ``*.tmp-*`` file beside the target,
    never a half-written artefact that a later ``load`` would pick up.
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(str(filepath), version)
        fs_args = dict(fs_args or {})
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _load_path(self) -> str:
        return get_filepath_str(self._get_load_path(), self._protocol)

    def _save_path(self) -> str:
        return get_filepath_str(self._get_save_path(), self._protocol)

    def _write_atomically(self, write: Callable[[IO[bytes]], None]) -> None:
        with (
            atomic_path(self._save_path(), self._fs) as temporary,
            self._fs.open(temporary, mode="wb") as stream,
        ):
            write(stream)

    def _exists(self) -> bool:
        return self._fs.exists(self._load_path())

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "protocol": self._protocol,
            "version": self._version,
        }
