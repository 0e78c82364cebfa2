"""A bounded tail of a child process's merged stdout and stderr."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

__all__ = ["OutputLog", "listen"]

OutputTap = Callable[[str, str], None]
_taps: list[OutputTap] = []

# A line longer than this is cut: a server that prints megabytes without a newline
# must not grow our memory.
_MAX_LINE = 4096


def listen(tap: OutputTap) -> Callable[[], None]:
    """Call ``tap(model, line)`` with every line any :class:`OutputLog` keeps, from now on.

    Returns a function that stops it. ``model`` is the model whose server
    (or stop command) wrote the line. The gateway's log endpoints listen
    this way; a tap must return quickly (it runs in the reader of the pipe).
    """
    _taps.append(tap)

    def stop() -> None:
        if tap in _taps:
            _taps.remove(tap)

    return stop


class OutputLog:
    """Keeps the last ``max_lines`` lines written to a pipe.

    Bytes are decoded as UTF-8 (invalid bytes replaced); lines longer than
    4096 characters are cut. Each complete line is also logged at DEBUG on
    ``logger`` with the model name, so operators can follow a server's output,
    and given to every :func:`listen` tap with ``model`` (default ``name``).
    """

    def __init__(
        self, max_lines: int, *, name: str, logger: logging.Logger, model: str | None = None
    ) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._partial = b""
        self._name = name
        self._model = name if model is None else model
        self._logger = logger

    def lines(self) -> list[str]:
        """The kept lines, oldest first, including an unterminated last line."""
        tail = list(self._lines)
        if self._partial:
            tail.append(self._decode(self._partial))
            del tail[: max(0, len(tail) - (self._lines.maxlen or 0))]
        return tail

    def append(self, line: str) -> None:
        """Add one line written by swapcore itself (e.g. a stop command's note)."""
        self._add(line[:_MAX_LINE])

    def feed(self, data: bytes) -> None:
        """Add raw bytes read from the pipe."""
        buf = self._partial + data
        *complete, rest = buf.split(b"\n")
        for raw in complete:
            self._add(self._decode(raw.rstrip(b"\r")))
        if len(rest) > _MAX_LINE:
            self._add(self._decode(rest))
            rest = b""
        self._partial = rest

    def close(self) -> None:
        """Flush an unterminated last line (at end of file)."""
        if self._partial:
            self._add(self._decode(self._partial.rstrip(b"\r")))
            self._partial = b""

    def _add(self, line: str) -> None:
        self._lines.append(line)
        for tap in _taps:
            tap(self._model, line)
        if self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("[%s] %s", self._name, line)

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw[:_MAX_LINE].decode("utf-8", errors="replace")
