"""Events a :class:`~swapcore.BaseRouter` reports to its ``on_event`` callback.

Every event is a small frozen attrs class deriving from :class:`RouterEvent`;
``at`` is the ``time.monotonic()`` value when the router emitted it. The
router builds events only when an ``on_event`` callback is set, calls the
callback from its run loop (one event at a time, in order), and logs and
ignores any exception the callback raises.

For one request, exactly one of :class:`RequestGranted`,
:class:`RequestRejected` and :class:`RequestCancelled` is emitted, possibly
after one :class:`RequestQueued`; a granted request then gets one
:class:`RequestReleased` when its lease is released while the router runs,
or one :class:`RequestExpired` when the router takes its lease back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from swapcore.errors import RoutingError
from swapcore.process import ProcessState

__all__ = [
    "CostMeasured",
    "ModelsUnloaded",
    "ProcessStateChanged",
    "RequestCancelled",
    "RequestExpired",
    "RequestGranted",
    "RequestQueued",
    "RequestRejected",
    "RequestReleased",
    "RouterEvent",
    "SwapFinished",
    "SwapRetried",
    "SwapStarted",
    "UnloadReason",
]

UnloadReason = Literal["unload", "ttl", "shutdown"]
"""Why models were unloaded: an explicit ``unload()``, an idle TTL, or shutdown."""


def _as_tuple(models: Sequence[str]) -> tuple[str, ...]:
    return tuple(models)


@attrs.frozen
class RouterEvent:
    """Base class of every router event; ``at`` is the monotonic emission time."""

    at: float


@attrs.frozen
class SwapStarted(RouterEvent):
    """A swap to ``model`` started: ``evict`` leaves first (in parallel), then ``model`` loads.

    ``asleep`` lists the models of ``evict`` put to sleep instead of stopped;
    ``wake`` is True when ``model`` was asleep and wakes rather than starts cold;
    ``reason`` is the planner's one-line account of the choice
    (:meth:`~swapcore.SwapPlanner.swap_reason`; "" when it gives none).
    """

    model: str
    evict: tuple[str, ...] = attrs.field(converter=_as_tuple)
    asleep: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    wake: bool = False
    reason: str = ""


@attrs.frozen
class SwapFinished(RouterEvent):
    """A swap to ``model`` ended after ``duration`` seconds.

    ``error`` is None on success, else a one-line description of the failure
    (the process error, or the unload or shutdown that cancelled the swap).
    """

    model: str
    evict: tuple[str, ...] = attrs.field(converter=_as_tuple)
    duration: float
    error: str | None


@attrs.frozen
class SwapRetried(RouterEvent):
    """The start of ``model`` crashed (``error``, one line) and the swap starts it again.

    ``attempt`` is the number of the start now beginning: 2 for the first
    restart. Emitted once per restart, between the swap's
    :class:`SwapStarted` and :class:`SwapFinished`; the evictions are not
    redone.
    """

    model: str
    attempt: int
    error: str


@attrs.frozen
class RequestQueued(RouterEvent):
    """The scheduler queued request ``request_id`` at 1-based ``position``.

    Emitted once per request, when it first receives a position; later
    position changes go to the request's ``on_position`` callback only.
    """

    model: str
    request_id: int
    position: int


@attrs.frozen
class RequestGranted(RouterEvent):
    """Request ``request_id`` was handed ``model`` after ``waited`` seconds."""

    model: str
    request_id: int
    waited: float


@attrs.frozen
class RequestReleased(RouterEvent):
    """The caller of request ``request_id`` released ``model`` after holding it ``held`` seconds."""

    model: str
    request_id: int
    held: float


@attrs.frozen
class RequestExpired(RouterEvent):
    """The lease of request ``request_id`` on ``model`` expired after ``held`` seconds.

    The router took the model back (its in-flight count dropped) and
    cancelled the task holding the lease; no :class:`RequestReleased`
    follows for this request.
    """

    model: str
    request_id: int
    held: float


@attrs.frozen
class RequestRejected(RouterEvent):
    """Request ``request_id`` failed with ``error`` (the exception its caller receives)."""

    model: str
    request_id: int
    error: RoutingError


@attrs.frozen
class RequestCancelled(RouterEvent):
    """The caller of request ``request_id`` left before it was granted."""

    model: str
    request_id: int


@attrs.frozen
class ProcessStateChanged(RouterEvent):
    """The router observed ``model``'s process move from ``old`` to ``new`` on its own.

    Only changes the router did not cause are reported (a crash, an operator
    stopping the server): the router compares the process state with the
    last state it saw when a request for the model arrives and when a lease
    on it is released, while no swap, unload or TTL of its own touches the
    model.
    """

    model: str
    old: ProcessState
    new: ProcessState


@attrs.frozen
class CostMeasured(RouterEvent):
    """The router measured one transition of ``model``: ``kind`` took ``seconds``.

    ``kind`` is ``"load"`` (a cold start to ready), ``"wake"`` (asleep to
    ready), ``"stop"`` or ``"sleep"`` (ready to asleep); see
    :class:`~swapcore.costs.SwapCosts`.
    """

    model: str
    kind: str
    seconds: float


@attrs.frozen
class ModelsUnloaded(RouterEvent):
    """``models`` were stopped by an ``unload()``, an idle TTL, or shutdown."""

    models: tuple[str, ...] = attrs.field(converter=_as_tuple)
    reason: UnloadReason
