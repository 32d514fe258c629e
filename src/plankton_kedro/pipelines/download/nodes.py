"""Fetch every configured data set file (resuming partial downloads, verifying SHA-256)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plankton_kedro.engine.collection.download import download, sha256_of
from plankton_kedro.engine.config import DownloadParams

logger = logging.getLogger(__name__)


def fetch_datasets(downloads: DownloadParams) -> dict[str, Any]:
    """Download each file of ``downloads.datasets`` that is not already there and verified;
    report where each one is and its SHA-256."""
    if not downloads.datasets:
        logger.warning(
            "nothing to download: add entries under downloads.datasets "
            "(conf/base/parameters_download.yml, see docs/quickstart.md)"
        )
    report = {}
    for name, spec in downloads.datasets.items():
        logger.info("%s: %s -> %s", name, spec.url, spec.destination)
        path = download(
            spec.url,
            Path(spec.destination),
            sha256=spec.sha256,
            timeout=downloads.timeout_seconds,
        )
        report[name] = {
            "url": spec.url,
            "path": str(path),
            "bytes": path.stat().st_size,
            "sha256": sha256_of(path),
            "verified": spec.sha256 is not None,
        }
    return report
