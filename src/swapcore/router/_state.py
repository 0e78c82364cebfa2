"""The router's state and run loop: the run-loop task, timers' plumbing, helpers.

Internal layer of :class:`swapcore.router.BaseRouter` (see ``_base.py`` for
the public API and ``_swaps.py`` for swaps, sleeps, unloads, TTL and
shutdown). Every field below is changed only by event handlers, which the
run-loop task runs one at a time, in the order :meth:`_RouterState._post`
delivered them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any, TypeVar

import attrs

from swapcore.costs import CostKind, SwapCosts
from swapcore.errors import (
    ConfigError,
    PolicyError,
    RouterNotRunning,
    RouterShutdown,
    RoutingError,
)
from swapcore.events import (
    CostMeasured,
    ProcessStateChanged,
    RequestCancelled,
    RequestRejected,
    RouterEvent,
    SwapStarted,
)
from swapcore.planners.base import SwapPlanner
from swapcore.process import Process, ProcessState
from swapcore.router._parts import FAILED, GONE, Change, Swap, Ticket, Unload
from swapcore.scheduling.effects import Scheduler
from swapcore.scheduling.requests import Request
from swapcore.scheduling.swaps import describe, policy_error

__all__ = [
    "CLOSED",
    "CLOSING",
    "NEW",
    "RUNNING",
    "RUNNING_STATES",
    "Timings",
    "check_timings",
    "clock",
    "log",
    "positive",
    "positive_finite",
]

log = logging.getLogger("swapcore.router")
clock = time.monotonic
_T = TypeVar("_T")

_READY = ProcessState.READY
_STARTING = ProcessState.STARTING
_STOPPING = ProcessState.STOPPING
_SLEEPING = ProcessState.SLEEPING
RUNNING_STATES = frozenset({_STARTING, _READY, _STOPPING})
NEW, RUNNING, CLOSING, CLOSED = range(4)


class _RouterState:
    """Configuration, records and the one-writer run loop shared by the router layers."""

    def __init__(
        self,
        processes: Mapping[str, Process],
        *,
        swap_timeout: float,
        unload_timeout: float | Mapping[str, float],
        idle_ttl: Mapping[str, float] | None,
        on_event: Callable[[RouterEvent], None] | None,
        lease_timeout: float | None,
        start_retries: int,
        costs: SwapCosts | None = None,
    ) -> None:
        self._processes: dict[str, Process] = dict(processes)
        if costs is not None and not isinstance(costs, SwapCosts):
            raise ConfigError(f"costs: must be a SwapCosts, got {type(costs).__name__}")
        self._costs = SwapCosts() if costs is None else costs
        self._apply(
            check_timings(
                self._processes,
                swap_timeout=swap_timeout,
                unload_timeout=unload_timeout,
                idle_ttl=idle_ttl,
                lease_timeout=lease_timeout,
                start_retries=start_retries,
            )
        )
        # What the run loop calls: the constructor's callback, fanned out to the
        # listeners added later (None when there are none: no event is built).
        self._on_event = on_event
        self._given_on_event = on_event
        self._listeners: list[Callable[[RouterEvent], None]] = []

        self._loop: asyncio.AbstractEventLoop | None = None
        self._status = NEW
        # The run loop: one task handles the posted events one at a time. Before
        # it starts and after it ends, events are handled inline, still one at a time.
        self._dispatching = False
        self._backlog: collections.deque[tuple[Callable[[Any], None], Any]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        # What the router knows, maintained by the handlers only.
        self._pending: dict[Request, Ticket] = {}  # submitted, not yet resolved
        self._waiting: dict[str, int] = {}  # model -> pending tickets
        self._in_flight: dict[str, int] = {}  # model -> granted leases not released
        self._swaps: dict[str, Swap] = {}  # target -> the swap in flight
        self._unloads: set[Unload] = set()
        self._stopping: dict[str, int] = {}  # model -> committed stops not finished
        self._falling_asleep: set[str] = set()  # evicted to sleep, not asleep yet
        self._recent_swaps: collections.deque[SwapStarted] = collections.deque(maxlen=32)
        # Reconfiguration: models whose process is to be replaced (or removed, None)
        # once idle, and the removed ones still present (not routable any more).
        self._changes: dict[str, Change] = {}
        self._retired: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ttl_handles: dict[str, asyncio.TimerHandle] = {}
        self._activity: dict[str, int] = {}  # model -> arrivals (TTL generation)
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_at: float | None = None
        self._tick_fired_for = -math.inf
        self._seen: dict[str, ProcessState] = {}  # last observed states (on_event only)
        # Lease deadlines: per lease timeout, the granted tickets in grant order
        # (so in deadline order); one loop timer for the earliest. Released
        # tickets stay until swept (`_stale_leases` counts them).
        self._deadlines: dict[float, collections.deque[Ticket]] = {}
        self._lease_timer: asyncio.TimerHandle | None = None
        self._lease_timer_at = math.inf
        self._stale_leases = 0
        # Set by the subclass once it has built the planner and the scheduler.
        self._planner: SwapPlanner
        self._scheduler: Scheduler
        self._next_deadline: Callable[[], float | None] | None = None
        self._on_tick: Callable[[], None] | None = None

    def _apply(self, timings: Timings) -> None:
        """Take checked timing settings (construction, reconfiguration)."""
        self._swap_timeout = timings.swap_timeout
        self._lease_timeout = timings.lease_timeout
        self._start_retries = timings.start_retries
        self._default_unload_timeout = timings.default_unload_timeout
        self._unload_timeouts = timings.unload_timeouts
        self._idle_ttl = timings.idle_ttl

    def model_state(self, model: str) -> ProcessState | None:
        """``model``'s process state as the router reports it, or None for an unknown model.

        ``STOPPING`` as soon as the router has committed to stopping it (an
        unload or idle TTL that has not begun the stop yet); otherwise the
        process' own state. Advisory only: the process decides for itself.
        """
        process = self._processes.get(model)
        if process is None:
            return None
        state = process.state
        if model in self._stopping and (
            state is _READY or state is _STARTING or state is _SLEEPING
        ):
            return _STOPPING
        return state

    def _measured(self, model: str, kind: CostKind, seconds: float) -> None:
        """Learn one transition's duration, on the run loop (which reports it to ``on_event``)."""
        self._post(self._on_measured_event, (model, kind, seconds))

    def _on_measured_event(self, measured: tuple[str, CostKind, float]) -> None:
        model, kind, seconds = measured
        self._costs.record(model, kind, seconds)
        if self._on_event is not None:
            self._emit(CostMeasured(clock(), model, kind, seconds))

    def recent_swaps(self) -> list[SwapStarted]:
        """The last 32 swaps started, oldest first: target, evictions and the planner's reason."""
        return list(self._recent_swaps)

    def running_models(self) -> dict[str, ProcessState]:
        """Every model whose process is starting, ready or stopping (a fresh dict)."""
        stopping = self._stopping
        running = {}
        for model, process in self._processes.items():
            state = process.state
            if state in RUNNING_STATES:
                running[model] = _STOPPING if stopping and model in stopping else state
        return running

    def _post(self, handler: Callable[[_T], None], arg: _T, *, first: bool = False) -> None:
        """Deliver one event to the run loop, which handles events in posting order.

        ``first`` puts it ahead of the events already waiting (a caller's
        withdrawal must beat the drains those events would run).
        """
        if first:
            self._backlog.appendleft((handler, arg))
        else:
            self._backlog.append((handler, arg))
        if self._runner is None:
            if not self._dispatching:
                self._dispatch()
            return
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _dispatch(self) -> None:
        """Handle every posted event, oldest first; events posted meanwhile join the backlog."""
        self._dispatching = True
        try:
            backlog = self._backlog
            while True:
                while backlog:
                    handler, arg = backlog.popleft()
                    self._handle(handler, arg)
                if self._changes and self._status == RUNNING:
                    self._handle(self._advance_changes, None)
                if not backlog:
                    break
            if self._next_deadline is not None and self._status == RUNNING:
                self._rearm_tick()
        finally:
            self._dispatching = False

    async def _run(self) -> None:
        """The run-loop task: wait for events, handle them one at a time; ends when cancelled."""
        assert self._loop is not None
        loop = self._loop
        backlog = self._backlog
        while True:
            if not backlog:
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
            self._dispatch()

    def _start_run_loop(self) -> None:
        assert self._loop is not None
        self._runner = self._loop.create_task(self._run(), name="swapcore-router-run-loop")

    async def _stop_run_loop(self) -> None:
        """End the run-loop task; events posted later are handled inline."""
        runner = self._runner
        if runner is None:
            return
        # Let the loop handle what is already posted before it goes.
        while self._backlog or self._dispatching:
            await asyncio.sleep(0)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        self._runner = None
        if self._backlog and not self._dispatching:
            self._dispatch()

    def _check_usable(self) -> None:
        if self._status == NEW:
            raise RouterNotRunning("the router is not started: use `async with BaseRouter(...)`")
        if self._status != RUNNING:
            raise RouterShutdown("the router is shut down")

    def _advance_changes(self, _: None) -> None:
        """Replace or remove the idle models of a reconfiguration (see ``_reload.py``)."""

    def _handle(self, handler: Callable[[_T], None], arg: _T) -> None:
        try:
            handler(arg)
        except Exception:
            # A scheduler or handler bug: keep the router alive for everyone else.
            log.exception("swapcore router: event handler %s failed", handler.__name__)

    def _forget(self, ticket: Ticket) -> str:
        """Drop a resolved ticket from the pending records; return its model."""
        request = ticket.request
        del self._pending[request]
        model = request.model
        count = self._waiting[model] - 1
        if count:
            self._waiting[model] = count
        else:
            del self._waiting[model]
        return model

    def _fail_ticket(self, ticket: Ticket, error: BaseException) -> None:
        """Resolve a ticket no longer pending with ``error`` (or as gone if its caller left)."""
        request = ticket.request
        if ticket.done():
            ticket.status = GONE
            if self._on_event is not None:
                self._emit(RequestCancelled(clock(), request.model, request.id))
            return
        ticket.status = FAILED
        ticket.set_exception(error)
        if self._on_event is not None and isinstance(error, RoutingError):
            self._emit(RequestRejected(clock(), request.model, request.id, error))

    def _rearm_tick(self) -> None:
        assert self._next_deadline is not None and self._loop is not None
        try:
            deadline = self._next_deadline()
        except Exception as exc:
            # Asked after every batch of events: give up on it rather than log each time.
            self._scheduler_failed("next_deadline()", exc, "the router stops asking for deadlines")
            self._next_deadline = None
            deadline = None
        if deadline == self._tick_at:
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._tick_at = deadline
        # A deadline no later than one already ticked would spin: wait for an event.
        if deadline is not None and deadline > self._tick_fired_for:
            delay = max(deadline - clock(), 0.0)
            self._tick_handle = self._loop.call_later(delay, self._tick_fired, deadline)

    def _tick_fired(self, deadline: float) -> None:
        self._tick_handle = None
        self._tick_at = None
        self._tick_fired_for = deadline
        self._post(self._on_tick_event, None)

    def _on_tick_event(self, _: None) -> None:
        if self._status == RUNNING and self._on_tick is not None:
            try:
                self._on_tick()
            except Exception as exc:
                self._scheduler_failed("on_tick()", exc)

    # -- a scheduler hook that raises ------------------------------------------------

    def _scheduler_failed(
        self, call: str, exc: Exception, consequence: str = "the router carries on"
    ) -> PolicyError:
        """Log a scheduler hook's exception naming the hook; the error for its requests.

        ``call`` is the method and its arguments, e.g. ``on_request(request
        7 for 'a')``. The log line (ERROR, logger ``swapcore.router``, with
        the traceback) names the scheduler's class.
        """
        message = f"scheduler {type(self._scheduler).__name__}.{call} raised {describe(exc)}"
        log.error("%s; %s", message, consequence, exc_info=exc)
        return policy_error(message, exc)

    def _withdraw(self, request: Request) -> None:
        """Tell the scheduler a request it failed to resolve is gone (``on_cancel``)."""
        try:
            self._scheduler.on_cancel(request)
        except Exception as exc:
            self._scheduler_failed(f"on_cancel(request {request.id} for {request.model!r})", exc)

    def _fail_left(self, models: tuple[str, ...], error: PolicyError) -> None:
        """Fail the requests for ``models`` a raising scheduler hook left unresolved.

        Each gets its own :class:`~swapcore.PolicyError` (same message and
        cause), and the scheduler is told they are gone, so a scheduler that
        recovers does not serve them later.
        """
        left = [t for t in self._pending.values() if t.request.model in models]
        for ticket in left:
            self._forget(ticket)
            self._fail_ticket(ticket, policy_error(str(error), error.__cause__))
            self._withdraw(ticket.request)

    def _spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _unload_timeout_of(self, model: str) -> float:
        return self._unload_timeouts.get(model, self._default_unload_timeout)

    def _rebuild_on_event(self) -> None:
        given, listeners = self._given_on_event, tuple(self._listeners)
        if not listeners:
            self._on_event = given
            return
        callbacks = (given, *listeners) if given is not None else listeners

        def each(event: RouterEvent) -> None:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.exception("on_event listener %r raised for %r", callback, event)

        self._on_event = each

    def _emit(self, event: RouterEvent) -> None:
        callback = self._on_event
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            log.exception("on_event callback raised for %r", event)

    def _observe(self, model: str) -> None:
        """Report a state change the router did not cause (a crash, an operator's stop)."""
        state = self._processes[model].state
        seen = self._seen.get(model)
        if seen is state:
            return
        if seen is not None and (
            model in self._swaps
            or model in self._stopping
            or any(model in swap.evict for swap in self._swaps.values())
            or any(model in unload.models for unload in self._unloads)
        ):
            return  # the router's own doing; recorded when it completes
        self._seen[model] = state
        if seen is not None:
            self._emit(ProcessStateChanged(clock(), model, seen, state))


@attrs.frozen
class Timings:
    """The router's timing settings, checked (see :func:`check_timings`)."""

    swap_timeout: float
    lease_timeout: float | None
    start_retries: int
    default_unload_timeout: float
    unload_timeouts: dict[str, float]
    idle_ttl: dict[str, float]


def check_timings(
    models: Collection[str],
    *,
    swap_timeout: float,
    unload_timeout: float | Mapping[str, float],
    idle_ttl: Mapping[str, float] | None,
    lease_timeout: float | None,
    start_retries: int,
) -> Timings:
    """Check ``BaseRouter``'s timing arguments for ``models``; ConfigError naming the key."""

    def known(key: str, model: str) -> str:
        if model not in models:
            raise ConfigError(f"{key}: {model!r} is not a handled model")
        return model

    swap = positive("swap_timeout", swap_timeout)
    lease = None if lease_timeout is None else positive_finite("lease_timeout", lease_timeout)
    if not isinstance(start_retries, int) or isinstance(start_retries, bool) or start_retries < 0:
        raise ConfigError(f"start_retries: must be an int >= 0, got {start_retries!r}")
    if isinstance(unload_timeout, Mapping):
        default_unload = 10.0
        unload_timeouts = {
            known("unload_timeout", model): positive(f"unload_timeout[{model!r}]", t)
            for model, t in unload_timeout.items()
        }
    else:
        default_unload = positive("unload_timeout", unload_timeout)
        unload_timeouts = {}
    ttls: dict[str, float] = {}
    for model, ttl in (idle_ttl or {}).items():
        if _non_negative(f"idle_ttl[{model!r}]", ttl) > 0:
            ttls[known("idle_ttl", model)] = ttl
    return Timings(
        swap_timeout=swap,
        lease_timeout=lease,
        start_retries=start_retries,
        default_unload_timeout=default_unload,
        unload_timeouts=unload_timeouts,
        idle_ttl=ttls,
    )


def positive(key: str, value: float) -> float:
    """``value`` as a float if it is a positive number, else ConfigError naming ``key``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{key}: must be a positive number of seconds, got {value!r}")
    return float(value)


def positive_finite(key: str, value: float) -> float:
    """``value`` as a float if it is a finite positive number, else ConfigError naming ``key``."""
    if positive(key, value) == math.inf:
        raise ConfigError(f"{key}: must be a finite number of seconds, got {value!r}")
    return float(value)


def _non_negative(key: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"{key}: must be a number of seconds >= 0, got {value!r}")
    return float(value)
