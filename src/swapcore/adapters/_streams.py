"""Live subscribers with bounded backlogs, for the gateway's streamed endpoints.

Internal to :mod:`swapcore.adapters.asgi`. A :class:`Fanout` hands each piece
of text to its :class:`Subscriber` objects without ever waiting: publishing
is a synchronous append. Each subscriber holds at most ``limit`` characters
not yet written to its client; one that falls further behind (a client that
reads too slowly, or not at all) is *dropped*: its backlog is discarded, it
takes no more text, and its ``on_drop`` callback ends the response. So a slow
client can neither block the gateway nor make it hold more than ``limit``
characters on its behalf.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

__all__ = ["Fanout", "Subscriber"]


class Subscriber:
    """One client's backlog: ``(tag, text)`` items waiting to be written.

    ``tag`` says what the text is (a log source, or ``"event"``) so one
    subscriber may listen to several fanouts. ``on_drop`` is called once,
    synchronously, when the backlog passes ``limit`` characters.
    """

    __slots__ = ("_items", "_size", "_wake", "closed", "dropped", "limit", "on_drop")

    def __init__(self, limit: int, on_drop: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.on_drop = on_drop
        self.dropped = False
        self.closed = False
        self._items: collections.deque[tuple[str, str]] = collections.deque()
        self._size = 0
        self._wake = asyncio.Event()

    def put(self, tag: str, text: str) -> None:
        """Queue ``text``; drop the subscriber if its backlog would pass the limit."""
        if self.closed:
            return
        self._size += len(text)
        if self._size > self.limit:
            self.dropped = True
            self.close()
            if self.on_drop is not None:
                self.on_drop()
            return
        self._items.append((tag, text))
        self._wake.set()

    def close(self) -> None:
        """Take no more text; a waiting :meth:`take` returns what is left, then nothing."""
        if self.closed:
            return
        self.closed = True
        if self.dropped:
            self._items.clear()
            self._size = 0
        self._wake.set()

    async def take(self, timeout: float | None = None) -> list[tuple[str, str]]:
        """Everything queued, oldest first, once there is something (or ``timeout`` passes).

        Returns ``[]`` after ``timeout`` seconds with nothing queued, or once
        the subscriber is closed and drained.
        """
        if not self._items and not self.closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        items = list(self._items)
        self._items.clear()
        self._size = 0
        if not self.closed:
            self._wake.clear()
        return items


class Fanout:
    """Publishes text to every subscriber under one tag."""

    __slots__ = ("_subscribers", "tag")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._subscribers: set[Subscriber] = set()

    def add(self, subscriber: Subscriber) -> Callable[[], None]:
        """Subscribe; return a function that unsubscribes."""
        self._subscribers.add(subscriber)
        return lambda: self._subscribers.discard(subscriber)

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, text: str) -> None:
        """Give ``text`` to every subscriber (never waits); dropped ones are forgotten."""
        for subscriber in list(self._subscribers):
            subscriber.put(self.tag, text)
            if subscriber.closed:
                self._subscribers.discard(subscriber)

    def close(self) -> None:
        """Close every subscriber (at shutdown)."""
        for subscriber in list(self._subscribers):
            subscriber.close()
        self._subscribers.clear()
