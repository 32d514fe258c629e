"""The fingerprint of an ingestion: what its cache, records and report depend on.

Two ingestions with the same fingerprint produce the same outputs, so the second can reuse
the first's instead of decoding every image again. The fingerprint hashes the collection's
listing as the folder or archive header gives it, without reading a byte of the images:
each file's path and size plus a zip member's CRC-32 or a tar member's or folder file's
modification time; the refused entries and folders; the collection's name, layout, root,
excluded classes, official split lists and scale-bar settings; the cache size and this
collection's preprocessing; and :data:`CACHE_FORMAT_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Raise when a change of the code changes what ingestion writes for the same input (decoding,
# padding, resizing, the records' columns): every earlier ingestion then stops matching.
CACHE_FORMAT_VERSION = 1


def ingestion_fingerprint(images: Any, settings: dict[str, Any]) -> str:
    """A 16-hex-digit digest of ``images`` (an ImageSource or MergedImageSource) as listed
    and of the ``settings`` that shape its cache (cache size, preprocessing)."""
    digest = hashlib.sha256()
    described = {
        "cache_format": CACHE_FORMAT_VERSION,
        "name": images.name,
        "layout": images.layout,
        "root": [part.root for part in getattr(images, "parts", [images])],
        "exclude_classes": sorted(images.exclude_classes),
        "split_lists": images.split_lists,
        "frame_crop": str(images.frame_crop),
        "part_column": images.part_column,
        "settings": settings,
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for line in images.signature():
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:16]
