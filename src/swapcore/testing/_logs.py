"""Recording every ``logging`` record for a while: the ``no logging`` rules of the checks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["describe_record", "recording_logs"]


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def recording_logs() -> Iterator[list[logging.LogRecord]]:
    """Record every log record that reaches the root logger, whatever its level.

    Lowers the root level and lifts ``logging.disable`` for the duration, then
    restores both; records of loggers with ``propagate=False`` or their own
    level set above the record's stay unseen.
    """
    root = logging.getLogger()
    recorder = _Recorder()
    old_level, old_disable = root.level, root.manager.disable
    root.addHandler(recorder)
    root.setLevel(logging.NOTSET)
    logging.disable(logging.NOTSET)
    try:
        yield recorder.records
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)
        logging.disable(old_disable)


def describe_record(record: logging.LogRecord) -> str:
    """``LEVEL logger: message``, for a violation message."""
    return f"{record.levelname} {record.name}: {record.getMessage()}"
