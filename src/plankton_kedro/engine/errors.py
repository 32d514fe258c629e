"""Errors a user can cause and fix: bad input, settings that do not fit together, no network.

Every such error derives from :class:`PlanktonUserError`, so the Kedro hook can end a run with
its one-line message instead of a traceback, and a script using the engine can catch them all
at once. Programming errors stay ordinary exceptions (``ValueError``, ``RuntimeError``…).
The second base class of each keeps ``except ValueError`` / ``except RuntimeError`` callers
working.
"""

from __future__ import annotations


class PlanktonUserError(Exception):
    """Base of every user-facing error; ``str()`` is the message to show, fix included."""


class CollectionError(PlanktonUserError, ValueError):
    """A raw collection (folder, archive, split list or table) cannot be read as asked."""


class StageInputError(PlanktonUserError, ValueError):
    """The inputs of a stage do not fit together (cache vs manifest, model vs checkpoint)."""


class CheckpointError(PlanktonUserError, ValueError):
    """A checkpoint is unreadable, foreign, or of a schema this version does not know."""


class StageBusyError(PlanktonUserError, RuntimeError):
    """Another run is training the same stage into the same state folder right now."""


class ResumeMismatchError(PlanktonUserError, RuntimeError):
    """An interrupted run exists but was started with other data, classes or settings."""


class ModelConfigError(PlanktonUserError, ValueError):
    """The timm model cannot be built as asked: an unknown name, or an image size it rejects."""


class WeightsUnavailableError(PlanktonUserError, RuntimeError):
    """Pretrained weights could not be obtained or do not fit the requested model."""


class DownloadError(PlanktonUserError, RuntimeError):
    """Clear, user-facing reason a download failed (offline, HTTP error, checksum mismatch)."""


def one_line(message: object) -> str:
    """A message (or an exception's text) on one line, for an ``Error:`` line."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return text or type(message).__name__
