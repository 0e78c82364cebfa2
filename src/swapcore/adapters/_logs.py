"""The gateway's recent logs, kept in memory and streamed live: ``/logs`` and ``/logs/stream``.

Internal to :mod:`swapcore.adapters.asgi`. Sources, as llama-swap names them:

- ``proxy``: the gateway's own log records (the ``swapcore`` logger and its
  children, except model output), formatted like ``swapcore serve``'s lines;
- ``upstream``: every model server's output, each line prefixed ``[model]``;
- a model id: that model's server output (and its stop command's), as written;
- ``""`` (the default): ``proxy`` and ``upstream`` interleaved.

Each source keeps its last ``lines`` entries (a ring), so memory is bounded
by sources x ``lines`` x the longest entry (16 KiB). Secrets the
configuration names, query strings and URL passwords are redacted before
anything is kept.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Iterable

from swapcore.adapters import _outputlog
from swapcore.adapters._streams import Fanout, Subscriber
from swapcore.adapters.redact import RedactingFilter, redact_text

__all__ = ["COMBINED", "PROXY", "UPSTREAM", "GatewayLogs", "LogRing"]

PROXY = "proxy"
UPSTREAM = "upstream"
COMBINED = ""
_MAX_ENTRY = 16384  # characters; a longer record (a huge traceback) is cut
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OUTPUT_LOGGER = "swapcore.adapters.subprocess.output"  # model output: kept as upstream lines


class LogRing:
    """The last ``size`` entries of one source, and its live subscribers."""

    __slots__ = ("_entries", "fanout")

    def __init__(self, tag: str, size: int) -> None:
        self._entries: collections.deque[str] = collections.deque(maxlen=size)
        self.fanout = Fanout(tag)

    def add(self, entry: str) -> None:
        """Keep ``entry`` (one or more whole lines, ending in a newline) and publish it."""
        self._entries.append(entry)
        if self.fanout:
            self.fanout.publish(entry)

    @property
    def size(self) -> int:
        """How many entries the ring keeps."""
        return self._entries.maxlen or 0

    def history(self) -> str:
        """The kept entries, oldest first, as one text."""
        return "".join(self._entries)


class GatewayLogs:
    """The rings of every source of one gateway, fed by :meth:`attach`'s handler and tap."""

    def __init__(self, models: Iterable[str], *, lines: int, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))
        self._rings = {
            COMBINED: LogRing(COMBINED, lines),
            PROXY: LogRing(PROXY, lines),
            UPSTREAM: LogRing(UPSTREAM, lines),
        }
        self._models = {model: LogRing(model, lines) for model in models}
        self._handler = _RingHandler(self)
        self._redacting = RedactingFilter(self._secrets)
        self._handler.addFilter(self._redacting)
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        self._stop_tap: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def add_models(self, models: Iterable[str], secrets: Iterable[str]) -> None:
        """Keep the output of ``models`` too (a reloaded configuration) and redact ``secrets``.

        Rings already kept stay (a removed model's output remains readable).
        """
        lines = self._rings[COMBINED].size
        for model in models:
            if model not in self._models:
                self._models[model] = LogRing(model, lines)
        merged = {*self._secrets, *(s for s in secrets if len(s) >= 4)}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))
        self._redacting.add(secrets)

    def ring(self, source: str) -> LogRing | None:
        """The ring of ``proxy``, ``upstream``, ``""`` (both) or a model id; None if unknown."""
        return self._rings.get(source) or self._models.get(source)

    def subscribe(self, source: str, subscriber: Subscriber) -> Callable[[], None]:
        """Stream ``source``'s new entries to ``subscriber``; return the unsubscribe function."""
        ring = self.ring(source)
        assert ring is not None
        return ring.fanout.add(subscriber)

    def attach(self) -> None:
        """Start keeping: the ``swapcore`` logger's records and every model's output.

        Call it on the event loop the gateway runs on; records logged from
        other threads are handed to that loop.
        """
        if self._stop_tap is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        logging.getLogger("swapcore").addHandler(self._handler)
        self._stop_tap = _outputlog.listen(self._output)

    def detach(self) -> None:
        """Stop keeping, and end every live subscriber's stream."""
        logging.getLogger("swapcore").removeHandler(self._handler)
        if self._stop_tap is not None:
            self._stop_tap()
            self._stop_tap = None
        for ring in (*self._rings.values(), *self._models.values()):
            ring.fanout.close()

    # ------------------------------------------------------------- feeding

    def _on_loop(self, add: Callable[[str, str], None], source: str, text: str) -> None:
        if threading.get_ident() == self._thread or self._loop is None:
            add(source, text)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(add, source, text)

    def record(self, text: str) -> None:
        """Keep one formatted log record of the gateway."""
        self._on_loop(self._add_proxy, PROXY, text[:_MAX_ENTRY] + "\n")

    def _add_proxy(self, source: str, entry: str) -> None:
        self._rings[PROXY].add(entry)
        self._rings[COMBINED].add(entry)

    def _output(self, model: str, line: str) -> None:
        if model in self._models:
            self._on_loop(self._add_output, model, redact_text(line, self._secrets) + "\n")

    def _add_output(self, model: str, entry: str) -> None:
        self._models[model].add(entry)
        tagged = f"[{model}] {entry}"
        self._rings[UPSTREAM].add(tagged)
        self._rings[COMBINED].add(tagged)


class _RingHandler(logging.Handler):
    """Formats each record of the ``swapcore`` loggers into the gateway's rings."""

    def __init__(self, logs: GatewayLogs) -> None:
        super().__init__()
        self._logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == _OUTPUT_LOGGER:
            return
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._logs.record(text)
