"""One ``on_event`` callback for a router, many listeners behind it.

A :class:`~swapcore.BaseRouter` takes a single ``on_event`` callback at
construction. An :class:`EventHub` is that callback: pass the hub as
``on_event`` and subscribe any number of listeners to it, before or after
the router starts (the gateway's ``/api/events``, a metrics collector, a
trace recorder, the learned-costs saver)::

    hub = EventHub()
    router = build_router(config, on_event=hub)
    unsubscribe = hub.subscribe(print)
    app = GatewayApp(router, config=config, events=hub)

It needs nothing beyond the standard library and :mod:`swapcore.events`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from swapcore.events import RouterEvent

__all__ = ["EventHub", "Listener"]

Listener = Callable[[RouterEvent], None]
"""A function that receives each router event."""

log = logging.getLogger(__name__)


class EventHub:
    """Hands each router event to every subscribed listener, in subscription order.

    Calling the hub with an event calls each listener with it, on the
    caller's thread (the router's run loop). A listener that raises is
    logged and skipped; the others still get the event. Listeners must
    return quickly and never block: they run inside the router's loop.
    Subscribing or unsubscribing from inside a listener is allowed; it
    takes effect from the next event.
    """

    __slots__ = ("_listeners",)

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self._listeners: tuple[Listener, ...] = ()
        for listener in listeners:
            self.subscribe(listener)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; return a function that removes it (calling it twice is harmless)."""
        if not callable(listener):
            raise TypeError(f"EventHub.subscribe: listener must be callable, got {listener!r}")
        # Each subscription gets its own token, so one function subscribed twice
        # is removed once per unsubscribe.
        token = _Subscription(listener)
        self._listeners = (*self._listeners, token)

        def unsubscribe() -> None:
            self._listeners = tuple(entry for entry in self._listeners if entry is not token)

        return unsubscribe

    def __call__(self, event: RouterEvent) -> None:
        """Give ``event`` to every listener (use the hub as a router's ``on_event``)."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r raised for %r", listener, event)

    def __len__(self) -> int:
        """The number of subscribed listeners."""
        return len(self._listeners)

    def __repr__(self) -> str:
        return f"<EventHub with {len(self._listeners)} listener(s)>"


class _Subscription:
    __slots__ = ("listener",)

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def __call__(self, event: RouterEvent) -> None:
        self.listener(event)

    def __repr__(self) -> str:
        return repr(self.listener)
