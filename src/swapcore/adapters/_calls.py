"""One request in progress: why it may end early, and the timer that bounds its upstream.

Internal to :mod:`swapcore.adapters.asgi`. A request ends early for one of
four reasons: its client disconnected, its upstream sent no headers in time,
its upstream (or its client) went silent for too long mid-response, or the
gateway is shutting down. Whoever notices calls :meth:`Call.end`, which
records the first reason and cancels the request's task; the handler catches
that cancellation, answers as the reason requires (a JSON error, an error
event, or nothing) and returns normally, so the ASGI server never sees an
exception.

Bounds cost almost nothing per request and per chunk: a call records a
deadline (or the time of its last progress, one clock read per chunk), and
one sweep for all calls, a few times a second, ends those past theirs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from typing import Any

from swapcore.adapters._http import Exchange, Receive

__all__ = ["DISCONNECT", "HEADER_TIMEOUT", "READ_TIMEOUT", "SHUTDOWN", "Call", "Calls"]

_IDLE, _HEADERS, _SILENCE = 0, 1, 2

DISCONNECT = "disconnect"
HEADER_TIMEOUT = "header-timeout"
READ_TIMEOUT = "read-timeout"
SHUTDOWN = "shutdown"


class Call:
    """One request: its task, its response, and the reason it is being ended (if any).

    ``reason`` is None until :meth:`end`; ``limit`` is the timeout that
    fired (seconds), for the error message; ``label`` names the model the
    request concerns, once known. Its timers are checked by the
    :class:`Calls` it belongs to.
    """

    __slots__ = (
        "_calls",
        "_deadline",
        "_mode",
        "_receive",
        "_silence",
        "_watcher",
        "exchange",
        "label",
        "last",
        "limit",
        "now",
        "reason",
        "task",
    )

    def __init__(self, calls: Calls, task: asyncio.Task[Any], exchange: Exchange) -> None:
        self._calls = calls
        self.task = task
        self.exchange = exchange
        self.reason: str | None = None
        self.label: str | None = None
        self.limit = 0.0
        self.last = 0.0
        self.now: Callable[[], float] = calls.loop.time
        """The loop's clock, for ``call.last = call.now()``."""
        self._mode = _IDLE
        self._deadline = 0.0
        self._silence = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._receive: Receive | None = None  # to watch for a disconnect, once due

    def end(self, reason: str) -> None:
        """End the request early for ``reason`` (the first reason given wins)."""
        if self.reason is None and not self.task.done():
            self.reason = reason
            self.task.cancel()

    def absorb(self) -> str:
        """Take back the cancellation :meth:`end` caused; return the reason.

        A cancellation nobody here asked for (the server's own, at the end of
        its graceful shutdown) counts as ``shutdown``.
        """
        if sys.version_info >= (3, 11):
            self.task.uncancel()
        if self.reason is None:
            self.reason = SHUTDOWN
        return self.reason

    # ------------------------------------------------------------- timers

    def expect_headers(self, timeout: float | None) -> None:
        """Bound the wait for the upstream's response headers to ``timeout`` seconds."""
        if timeout is None:
            self._mode = _IDLE
            return
        self._mode = _HEADERS
        self._deadline = self.now() + timeout
        self.limit = timeout
        self._calls.watch()

    def expect_progress(self, silence: float | None) -> None:
        """From now on, end the request after ``silence`` seconds without :attr:`last` moving.

        The relay sets ``call.last = call.now()`` whenever data moves.
        """
        self.last = self.now()
        if silence is None:
            self._mode = _IDLE
            return
        self._mode = _SILENCE
        self._silence = silence
        self._calls.watch()

    def stop_timer(self) -> None:
        """Disarm the headers or silence bound."""
        self._mode = _IDLE

    def check(self, now: float) -> bool:
        """End the request if its bound has passed at ``now``; True while a bound is armed."""
        mode = self._mode
        if mode == _IDLE:
            return False
        if mode == _HEADERS:
            if now >= self._deadline:
                self._mode = _IDLE
                self.end(HEADER_TIMEOUT)
                return False
        elif now - self.last >= self._silence:
            self._mode = _IDLE
            self.limit = self._silence
            self.end(READ_TIMEOUT)
            return False
        return True

    # --------------------------------------------------------- disconnects

    def watch_disconnect(self, receive: Receive) -> None:
        """End the request when the client disconnects (call once the body is read).

        Watching costs a task, so it begins only once the request has lasted
        one sweep (a tenth of a second): most requests are over by then, and
        a disconnect is still seen within two sweeps. Servers also report a
        disconnect once the response is complete; that one is ignored.
        """
        self._receive = receive
        self._calls.watch_later(self)

    def start_watching(self) -> None:
        """Begin watching for a disconnect now (the sweep calls it when due)."""
        receive, self._receive = self._receive, None
        if receive is not None and self._watcher is None and not self.task.done():
            self._watcher = self._calls.loop.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:
            return
        if not self.exchange.finished:
            self.end(DISCONNECT)

    def close(self) -> None:
        """Disarm the timer and stop watching for disconnects (the request is over)."""
        self.stop_timer()
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()


class Calls:
    """The requests in progress, and the one timer that enforces their bounds.

    Rather than a timer per request (costly to arm and cancel on every
    request), one sweep every ``resolution`` seconds checks every call with
    a bound armed, and starts the disconnect watchers that came due; it runs
    only while some call needs it. A bound therefore fires up to
    ``resolution`` seconds late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.1) -> None:
        self.loop = loop
        self.resolution = resolution
        self._calls: set[Call] = set()
        self._unwatched: set[Call] = set()  # calls to watch for a disconnect at the next sweep
        self._sweeping: asyncio.TimerHandle | None = None

    def open(self, task: asyncio.Task[Any], exchange: Exchange) -> Call:
        """Register a new request."""
        call = Call(self, task, exchange)
        self._calls.add(call)
        return call

    def close(self, call: Call) -> None:
        """Forget a finished request (its timer and disconnect watcher stop)."""
        call.close()
        self._calls.discard(call)
        self._unwatched.discard(call)

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls))

    def watch(self) -> None:
        """Make sure the sweep runs (a call armed a bound)."""
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(self.resolution, self._sweep)

    def watch_later(self, call: Call) -> None:
        """Start ``call``'s disconnect watcher at the next sweep, if it is still open."""
        self._unwatched.add(call)
        self.watch()

    def _sweep(self) -> None:
        now = self.loop.time()
        unwatched, self._unwatched = self._unwatched, set()
        for call in unwatched:
            call.start_watching()
        armed = False
        for call in list(self._calls):
            armed = call.check(now) or armed
        self._sweeping = self.loop.call_later(self.resolution, self._sweep) if armed else None

    def stop(self) -> None:
        """Stop the sweep (at shutdown)."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
