"""The asyncio router: ``BaseRouter`` runs a scheduler against real processes.

The router owns the processes, the swap tasks and the timers; the scheduler
(sans-IO) owns the decisions. Every state change happens in the router's
run-loop task, one event at a time: callers, swap tasks and timers post
events; the task runs each handler to completion before the next. There are
no locks, and a handler that posts an event (a user callback cancelling a
task, say) only queues it. See ``docs/router.md``.

Layers, each importing only those before it: ``_parts`` (records: leases,
snapshots, tickets, swaps, unloads), ``_state`` (configuration, records and
the run loop), ``_swaps`` (swaps, sleeps, unloads, idle TTL, shutdown),
``_leases`` (acquire's context manager, releases, lease timeouts) and
``_base`` (the public API, requests and grants).
"""

from __future__ import annotations

from swapcore.errors import RouterNotRunning
from swapcore.router._base import BaseRouter
from swapcore.router._parts import Lease, ModelSnapshot, RouterSnapshot

__all__ = ["BaseRouter", "Lease", "ModelSnapshot", "RouterNotRunning", "RouterSnapshot"]

for _public in (BaseRouter, Lease, ModelSnapshot, RouterSnapshot):
    _public.__module__ = __name__  # defined in the layers; documented here
