"""One line, not a full exception each, for datasets kedro-viz cannot preview because they
were never saved (outputs of pipelines not run yet, a default input folder not created).

Attached to kedro-viz's preview logger by ``settings.py``; other preview failures pass through
unchanged. ``kedro viz build`` loads the previews in a worker process that it terminates when
done, so the line is written at the first such dataset (nothing runs at the end).
"""

from __future__ import annotations

import logging

PREVIEW_LOGGER = "kedro_viz.models.flowchart.node_metadata"
MISSING = ("VersionNotFoundError",)


class UnsavedPreviewSummary(logging.Filter):
    """Turns kedro-viz's first "could not be previewed" warning for data that does not exist
    yet into one explanatory line and drops the others of that kind."""

    def __init__(self) -> None:
        super().__init__()
        self.reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("'%s' could not be previewed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) != 3 or not (args[1] in MISSING or "does not exist" in str(args[2])):
            return True
        if self.reported:
            return False
        self.reported = True
        record.msg = (
            "kedro-viz: no preview for datasets that were never saved ('%s' and the outputs of "
            "any other pipeline not run yet); run those pipelines to see them"
        )
        record.args = (args[0],)
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True
