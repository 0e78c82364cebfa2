"""The swapcore request routers alive in this process, for the front to read and feed.

Its own module on purpose: Ray Serve pickles the request router's module by
value, so a registry kept there would be a copy in every process that
unpickles it. The router reaches this one through the module object, which
is always imported by name.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Registered", "add", "note_report", "routers", "track", "untrack"]


class Registered(Protocol):
    """What the front needs of a router."""

    def note_report(self, data: Mapping[str, Any]) -> None:
        """Take a report a host sent back with a response."""

    def snapshot(self) -> list[dict[str, Any]]:
        """Every running host's latest report."""

    def track(self, request: str) -> None:
        """Hold the decision for ``request`` until :meth:`untrack`."""

    def untrack(self, request: str) -> None:
        """The answer to ``request`` has begun, or it ended without one."""


_ROUTERS: weakref.WeakSet[Any] = weakref.WeakSet()


def add(router: Registered) -> None:
    """Register a router (it is forgotten when it is garbage)."""
    _ROUTERS.add(router)


def routers() -> list[Registered]:
    """The swapcore request routers in this process (one per host deployment it calls)."""
    return list(_ROUTERS)


def note_report(data: Mapping[str, Any]) -> None:
    """Give every router in this process a report a host sent back with a response."""
    for router in list(_ROUTERS):
        router.note_report(data)


def track(request: str) -> None:
    """Tell every router that the front follows ``request`` (Ray's internal id) to its answer."""
    if request:
        for router in list(_ROUTERS):
            router.track(request)


def untrack(request: str) -> None:
    """Tell every router that the answer to ``request`` has begun, or that it ended without one."""
    if request:
        for router in list(_ROUTERS):
            router.untrack(request)
