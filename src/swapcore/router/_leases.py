"""Leases: ``router.acquire()``'s context manager, releases and lease timeouts.

Internal layer of :class:`swapcore.router.BaseRouter`. A granted lease with a
``lease_timeout`` gets a deadline; when it comes, the run loop takes the model
back (the scheduler hears a serve done, exactly once), emits
:class:`~swapcore.events.RequestExpired`, logs a warning and cancels the
task that entered the ``async with`` block. That task's exit from the block
turns the cancellation into :class:`~swapcore.LeaseExpired`, the way
``asyncio.timeout`` turns its own into ``TimeoutError``: on Python 3.11+ by
counting cancellations (``Task.cancelling``/``uncancel``), on 3.10 by the
cancellation's message.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from swapcore.errors import LeaseExpired
from swapcore.events import RequestExpired, RequestReleased
from swapcore.router import _state as _router_state
from swapcore.router._parts import EXPIRED, GRANTED, RELEASED, Lease, Ticket
from swapcore.router._state import log
from swapcore.router._swaps import _SwapDriver

if TYPE_CHECKING:
    from swapcore.router._base import BaseRouter

__all__: list[str] = []

_EXPIRY = "swapcore: the lease expired"  # the cancellation message on Python 3.10
_SWEEP_AT = 256  # released tickets waiting in the deadline queues before a sweep is considered

if sys.version_info >= (3, 11):
    _COUNTS_CANCELS = True

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

    def _interrupt(task: asyncio.Task[Any]) -> bool:
        return task.cancel()

else:  # pragma: no cover - Python 3.10 counts no cancellations
    _COUNTS_CANCELS = False

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0

    def _interrupt(task: asyncio.Task[Any]) -> bool:
        return task.cancel(_EXPIRY)


class _Acquisition:
    """``router.acquire(...)``: waits for a grant on entry, releases it on exit."""

    __slots__ = ("_lease_timeout", "_model", "_on_position", "_priority", "_router", "_ticket")

    def __init__(
        self,
        router: BaseRouter,
        model: str,
        priority: int | None,
        on_position: Callable[[int], object] | None,
        lease_timeout: float | None,
    ) -> None:
        self._router = router
        self._model = model
        self._priority = priority
        self._on_position = on_position
        self._lease_timeout = lease_timeout
        self._ticket: Ticket | None = None

    async def __aenter__(self) -> Lease:
        if self._ticket is not None:
            raise RuntimeError("an acquire() context can be entered only once")
        router = self._router
        ticket = router._submit(self._model, self._priority, self._on_position, self._lease_timeout)
        self._ticket = ticket
        if ticket.lease_timeout is not None:
            holder = asyncio.current_task()
            ticket.holder = holder
            if holder is not None:
                ticket.baseline = _cancelling(holder)
        try:
            return await ticket
        except asyncio.CancelledError as exc:
            status = ticket.status
            if status == GRANTED:
                # Granted, but cancelled before we resumed: give the grant back.
                router._release(ticket)
            elif status == EXPIRED and _expiry_ends(ticket, exc):
                raise _expired(ticket) from exc
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket = self._ticket
        if ticket is None:
            return
        status = ticket.status
        if status == GRANTED:
            self._router._release(ticket)
        elif status == EXPIRED and _expiry_ends(ticket, exc):
            raise _expired(ticket) from exc


def _expiry_ends(ticket: Ticket, exc: BaseException | None) -> bool:
    """Consume the router's cancellation of the holder; True if ``exc`` is that cancellation.

    False for a block that swallowed it (it ends as it ends) and for a
    cancellation from elsewhere that is still pending: that one propagates.
    """
    if not ticket.interrupted:
        return False
    ticket.interrupted = False
    holder = ticket.holder
    assert holder is not None  # interrupted: the router cancelled it
    remaining = _uncancel(holder)
    if not isinstance(exc, asyncio.CancelledError):
        return False
    if _COUNTS_CANCELS:
        return remaining <= ticket.baseline
    return _ours_on_310(exc)


def _ours_on_310(exc: BaseException) -> bool:
    """Python 3.10: the cancellation carries the router's message and interrupted no other."""
    if exc.args[:1] != (_EXPIRY,):
        return False
    seen = 0
    context = exc.__context__
    while context is not None and seen < 32:  # a cancellation handled when ours came
        if isinstance(context, asyncio.CancelledError) and context.args[:1] != (_EXPIRY,):
            return False
        context = context.__context__
        seen += 1
    return True


def _expired(ticket: Ticket) -> LeaseExpired:
    request = ticket.request
    return LeaseExpired(
        f"the lease of request {request.id} on {ticket.granted!r} expired: held longer "
        f"than its lease_timeout of {ticket.lease_timeout:g}s"
    )


class _LeaseKeeper(_SwapDriver):
    """Releases, lease timeouts and serve-done: how a granted request ends.

    Lease deadlines are kept per lease timeout in grant order, which is
    deadline order, behind one loop timer for the earliest: a grant costs an
    append, a release a count, and released leases are swept lazily (when
    their turn comes, or when they outnumber the live ones).
    """

    def _arm_expiry(self, ticket: Ticket, timeout: float) -> None:
        """Take the grant back ``timeout`` seconds from now unless it is released first."""
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + timeout
        ticket.deadline = deadline
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = collections.deque()
        elif queue:
            queue.append(ticket)  # behind an earlier deadline: the timer is set already
            return
        queue.append(ticket)
        if deadline < self._lease_timer_at:
            self._set_lease_timer(deadline)

    def _set_lease_timer(self, when: float) -> None:
        assert self._loop is not None
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        self._lease_timer_at = when
        self._lease_timer = self._loop.call_at(when, self._lease_timer_fired)

    def _lease_timer_fired(self) -> None:
        self._lease_timer = None
        self._lease_timer_at = math.inf
        self._post(self._on_leases_due_event, None)

    def _on_leases_due_event(self, _: None) -> None:
        """Expire every lease whose deadline has come, then set the timer for the next."""
        assert self._loop is not None
        now = self._loop.time()
        earliest = math.inf
        for timeout, queue in list(self._deadlines.items()):
            while queue:
                ticket = queue[0]
                if ticket.status != GRANTED:
                    queue.popleft()
                    self._stale_leases -= 1
                elif ticket.deadline <= now:
                    queue.popleft()
                    self._on_expire_event(ticket)  # may grant (and queue) new leases
                else:
                    earliest = min(earliest, ticket.deadline)
                    break
            if not queue:
                del self._deadlines[timeout]
        if earliest < self._lease_timer_at:
            self._set_lease_timer(earliest)

    def _sweep_leases(self) -> None:
        """Drop released tickets from the deadline queues (they outnumber the live ones)."""
        for timeout, queue in list(self._deadlines.items()):
            live = [ticket for ticket in queue if ticket.status == GRANTED]
            if live:
                self._deadlines[timeout] = collections.deque(live)
            else:
                del self._deadlines[timeout]
        self._stale_leases = 0

    def _release(self, ticket: Ticket) -> None:
        ticket.status = RELEASED  # at once: an expiry handled from now on finds it released
        if self._on_event is None and ticket.deadline == math.inf:
            self._post(self._on_serve_done_event, ticket.granted)
        else:
            self._post(self._on_released_event, ticket)

    def _on_released_event(self, ticket: Ticket) -> None:
        if ticket.deadline != math.inf:  # it waits in a deadline queue until swept
            stale = self._stale_leases = self._stale_leases + 1
            if stale >= _SWEEP_AT and 2 * stale >= sum(map(len, self._deadlines.values())):
                self._sweep_leases()
        model = ticket.granted
        if self._on_event is not None:
            now = _router_state.clock()  # looked up here: tests on a virtual clock replace it
            self._emit(RequestReleased(now, model, ticket.request.id, now - ticket.granted_at))
        self._on_serve_done_event(model)

    def _on_expire_event(self, ticket: Ticket) -> None:
        """Take a granted lease back: serve done (once), event, warning, cancel its holder."""
        if ticket.status != GRANTED:
            return  # released in time (the release is already posted)
        ticket.status = EXPIRED
        now = _router_state.clock()
        model = ticket.granted
        request = ticket.request
        held = now - ticket.granted_at
        log.warning(
            "the lease of request %d on %r expired after %.3fs (lease_timeout %gs): "
            "taking the model back and cancelling the task that holds it",
            request.id,
            model,
            held,
            ticket.lease_timeout,
        )
        if self._on_event is not None:
            self._emit(RequestExpired(now, model, request.id, held))
        holder = ticket.holder
        if holder is not None and not holder.done():
            ticket.interrupted = _interrupt(holder)
        self._on_serve_done_event(model)

    def _on_serve_done_event(self, model: str) -> None:
        count = self._in_flight[model] - 1
        if count:
            self._in_flight[model] = count
        else:
            del self._in_flight[model]
        if self._on_event is not None:
            self._observe(model)
        try:
            self._scheduler.on_serve_done(model)
        except Exception as exc:
            self._scheduler_failed(f"on_serve_done({model!r})", exc)
        if not count and self._idle_ttl:
            self._maybe_arm_ttl(model)
