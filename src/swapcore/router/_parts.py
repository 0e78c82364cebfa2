"""The router's records: lease, snapshots, the caller's ticket, swaps and unloads.

Internal to :mod:`swapcore.router`, which re-exports the public names
(:class:`Lease`, :class:`RouterSnapshot`, :class:`ModelSnapshot`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from swapcore.costs import CostKind
from swapcore.events import UnloadReason
from swapcore.process import Process, ProcessState, SleepingProcess
from swapcore.scheduling.requests import Request
from swapcore.scheduling.swaps import describe

if TYPE_CHECKING:
    from swapcore.router._base import BaseRouter

__all__ = ["Lease", "ModelSnapshot", "RouterSnapshot"]

log = logging.getLogger("swapcore.router")


@attrs.frozen
class Lease:
    """A granted request: ``model`` is yours to use through ``process`` until the block exits.

    While the lease is held the model counts as in flight, and no swap
    stops it (an explicit ``unload`` or a crash still can). With a
    ``lease_timeout`` the router takes the model back once the lease has
    been held that long (see ``BaseRouter.acquire``).
    """

    model: str
    process: Process


@attrs.frozen
class ModelSnapshot:
    """One model in a :class:`RouterSnapshot`.

    ``state``: the process state as the router reports it (``STOPPING`` as
    soon as the router has committed to stopping it); ``queued``: requests
    waiting with no swap to the model in flight; ``waiting``: requests
    waiting on the swap to the model in flight; ``in_flight``: granted
    leases not yet released; ``swapping``: a swap to the model is in flight.
    """

    state: ProcessState
    queued: int
    waiting: int
    in_flight: int
    swapping: bool


@attrs.frozen
class RouterSnapshot:
    """What the router knows at one instant, computed from its own records.

    ``models`` maps every handled model to its :class:`ModelSnapshot` (a
    fresh dict); ``queue`` lists the ``(request id, model)`` of queued
    requests in queue order (last reported positions, then arrival order).
    The router derives it from the requests it submitted and has not seen
    resolved, its grants and its swap tasks, so it works with any scheduler.
    """

    models: Mapping[str, ModelSnapshot]
    queue: tuple[tuple[int, str], ...]


class RouterEffects:
    """The router's ``Effects``, as bound methods: the scheduler calls them directly."""

    __slots__ = (
        "grant_error",
        "grant_serve",
        "model_state",
        "report_position",
        "running_models",
        "start_swap",
    )

    def __init__(self, router: BaseRouter) -> None:
        """Bind the router's effect methods."""
        self.model_state = router.model_state
        self.running_models = router.running_models
        self.start_swap = router._start_swap
        self.grant_serve = router._grant_serve
        self.grant_error = router._grant_error
        self.report_position = router._report_position


# Ticket status: submitted and unresolved; granted (counted in flight);
# released; gone (cancelled, or the grant found the caller gone); failed;
# expired (granted, then taken back by the router at its lease timeout).
PENDING, GRANTED, RELEASED, GONE, FAILED, EXPIRED = range(6)


class Ticket(asyncio.Future[Lease]):
    """The future one caller awaits; cancelling it withdraws the request at once.

    ``asyncio.Task.cancel()`` cancels the future its task awaits, so a caller
    cancelled while waiting reaches :meth:`cancel` synchronously: the router
    learns of it before any later event, and the scheduler can never start a
    swap for a request whose caller is gone.
    """

    __slots__ = (
        "baseline",
        "deadline",
        "granted",
        "granted_at",
        "holder",
        "interrupted",
        "lease_timeout",
        "on_position",
        "position",
        "request",
        "router",
        "status",
    )

    def __init__(
        self,
        router: BaseRouter,
        request: Request,
        on_position: Callable[[int], object] | None,
        lease_timeout: float | None,
    ) -> None:
        super().__init__(loop=router._loop)
        self.router = router
        self.request = request
        self.on_position = on_position
        self.position: int | None = None
        self.status = PENDING
        self.granted = (
            ""  # the model granted (the request's model unless a scheduler says otherwise)
        )
        self.granted_at = 0.0  # when it was granted, kept for on_event and lease timeouts
        # Lease timeout: the seconds a grant may be held, the loop time it is
        # taken back at (inf: never), the task that holds it (its cancellation
        # count on entry, 3.11+), and whether the router's expiry cancelled
        # that task (not yet consumed).
        self.lease_timeout = lease_timeout
        self.deadline = math.inf
        self.holder: asyncio.Task[Any] | None = None
        self.baseline = 0
        self.interrupted = False

    def cancel(self, msg: object = None) -> bool:
        """Cancel the wait; a request still pending is withdrawn from the scheduler."""
        if not super().cancel(msg):
            return False
        if self.status == PENDING:
            # Ahead of events already posted: a serve-done waiting in the backlog
            # would drain the queue and could start a swap for this caller.
            self.router._post(self.router._on_cancel_event, self, first=True)
        return True


@attrs.define(eq=False, slots=True)
class Swap:
    """One swap the router runs: ``evict`` leaves in parallel, then ``model`` gets ready.

    ``asleep`` are the models of ``evict`` put to sleep (the rest stop);
    ``wake`` is True when ``model`` was asleep as the swap began.
    """

    model: str
    evict: tuple[str, ...]
    started: float
    after: list[asyncio.Future[None]]  # committed stops of `model` that must begin first
    asleep: tuple[str, ...] = ()
    wake: bool = False
    task: asyncio.Task[None] | None = None
    reported: bool = False  # swap-done already given to the scheduler


@attrs.define(eq=False, slots=True)
class Change:
    """A model a reconfiguration changed: once idle, its process is stopped and replaced.

    ``process`` takes the old one's place (None: the model was removed);
    ``held`` and ``unloaded`` record the scheduler calls made for it
    (``on_hold``, ``on_unload``), each lifted when the change is done;
    ``stopping`` is True once the old process' stop has begun.
    """

    process: Process | None
    held: bool = False
    unloaded: bool = False
    stopping: bool = False


@attrs.define(eq=False, slots=True)
class Unload:
    """One unload (explicit, idle TTL): stops ``models`` in timeout groups, shorter first."""

    models: tuple[str, ...]
    groups: list[tuple[float, tuple[str, ...]]]
    reason: UnloadReason
    begun: dict[str, asyncio.Future[None]]  # per model: resolved when its stop begins
    done: asyncio.Future[BaseException | None]  # resolved when stopped, with the first error
    task: asyncio.Task[None] | None = None


def group_timeouts(
    models: tuple[str, ...], timeout: float | None, timeout_of: Callable[[str], float]
) -> list[tuple[float, tuple[str, ...]]]:
    """Group ``models`` by stop timeout, shorter first; an explicit timeout makes one group."""
    if timeout is not None:
        return [(timeout, models)] if models else []
    groups: dict[float, list[str]] = {}
    for model in models:
        groups.setdefault(timeout_of(model), []).append(model)
    return [(t, tuple(groups[t])) for t in sorted(groups)]


async def stop_quietly(process: Process, timeout: float) -> BaseException | None:
    """Stop ``process``; return its error instead of raising (no unretrieved task errors)."""
    try:
        await process.stop(timeout)
    except Exception as exc:
        return exc
    return None


async def sleep_or_stop(
    process: Process, model: str, timeout: float
) -> tuple[CostKind, BaseException | None]:
    """Put ``process`` to sleep, or stop it when it cannot sleep now (logged).

    Returns what happened (``"sleep"`` or ``"stop"``) and the stop's error.
    """
    if isinstance(process, SleepingProcess):
        try:
            await process.sleep(timeout)
        except Exception as exc:
            log.warning("model %r could not sleep (%s); stopping it instead", model, describe(exc))
        else:
            return "sleep", None
    return "stop", await stop_quietly(process, timeout)
