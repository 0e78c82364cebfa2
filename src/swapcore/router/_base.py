"""``BaseRouter``: the public API, requests and grants (the top layer of :mod:`swapcore.router`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from typing_extensions import Self

from swapcore.costs import SwapCosts
from swapcore.errors import (
    ConfigError,
    ModelNotFound,
    RouterNotRunning,
    RouterShutdown,
    RoutingError,
)
from swapcore.events import (
    RequestCancelled,
    RequestGranted,
    RequestQueued,
    RequestRejected,
    RouterEvent,
)
from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import SleepRules
from swapcore.process import Process, SleepingProcess
from swapcore.router._leases import _Acquisition
from swapcore.router._parts import (
    GONE,
    GRANTED,
    PENDING,
    Lease,
    ModelSnapshot,
    RouterEffects,
    RouterSnapshot,
    Ticket,
)
from swapcore.router._reload import _Reconfigurer
from swapcore.router._state import CLOSED, NEW, RUNNING, clock, log, positive, positive_finite
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.scheduling.requests import Request

__all__ = ["BaseRouter", "Lease", "ModelSnapshot", "RouterNotRunning", "RouterSnapshot"]


class BaseRouter(_Reconfigurer):
    """Route requests to model processes: swap, collate and serve, one event at a time.

    ``processes`` maps each handled model to its :class:`~swapcore.Process`;
    ``planner`` decides evictions; ``scheduler`` builds the scheduler
    (default :class:`~swapcore.scheduling.fifo.FIFOScheduler`; use
    ``functools.partial`` for its options). ``swap_timeout`` is passed to
    ``ensure_ready``; ``unload_timeout`` (one value, or per model with 10 s
    for the rest) to ``stop``; ``idle_ttl`` unloads a model after that many
    seconds with nothing in flight or waiting (0 or absent: never).
    ``on_event`` receives :class:`~swapcore.events.RouterEvent` objects.
    ``lease_timeout`` (seconds, None = unbounded) bounds how long each
    granted lease may be held, unless ``acquire`` gives its own (see
    :meth:`acquire`). ``start_retries``: how many times a swap starts a
    model again after its start failed with a ``retryable`` error (a
    process that crashed before it was ready); other failures, timeouts
    included, fail the swap at once. Invalid configuration raises
    :class:`~swapcore.ConfigError` naming the key.

    **Sleeping models.** A process that can sleep
    (:class:`~swapcore.process.SleepingProcess` with a ``sleep_level``) may
    be put to sleep instead of stopped when a swap evicts it: the planner's
    :meth:`~swapcore.SwapPlanner.residency_for` decides (a failed sleep
    becomes a stop), and a swap to a sleeping model wakes it through
    ``ensure_ready``. When the planner has no ``sleep_rules`` and some
    processes can sleep, the router gives it
    ``SleepRules(levels={model: process.sleep_level})``: every such model
    sleeps when evicted, with no host budget. Sleeping models are not
    running (``running_models``): they hold no accelerator memory, and
    ``unload`` and shutdown stop them.

    **Learned costs.** ``costs`` (a :class:`~swapcore.costs.SwapCosts`; a
    new one by default, see :attr:`costs`) receives the duration of every
    cold load, wake, stop and sleep the router runs, per model; each is also
    reported as a :class:`~swapcore.events.CostMeasured` event.

    Hooks that raise never stop the router: a planner fault fails the
    request it concerns with :class:`~swapcore.PolicyError` (inside the
    shipped schedulers); a scheduler hook that raises is logged naming
    ``<Class>.<method>``, and the requests the router knows it concerned
    (the request of ``on_request``; the unresolved requests for the model
    of ``on_swap_done`` or the models of ``on_unload``) fail with
    :class:`~swapcore.PolicyError`.

    Use it as ``async with BaseRouter(...) as router:``; leaving the block
    shuts it down. Requests are stamped with ``time.monotonic()``: a custom
    scheduler clock should agree.
    """

    def __init__(
        self,
        processes: Mapping[str, Process],
        planner: SwapPlanner,
        *,
        scheduler: SchedulerFactory | None = None,
        swap_timeout: float = 120.0,
        unload_timeout: float | Mapping[str, float] = 10.0,
        idle_ttl: Mapping[str, float] | None = None,
        on_event: Callable[[RouterEvent], None] | None = None,
        lease_timeout: float | None = None,
        start_retries: int = 1,
        costs: SwapCosts | None = None,
    ) -> None:
        super().__init__(
            processes,
            swap_timeout=swap_timeout,
            unload_timeout=unload_timeout,
            idle_ttl=idle_ttl,
            on_event=on_event,
            lease_timeout=lease_timeout,
            start_retries=start_retries,
            costs=costs,
        )
        self._planner = planner
        if planner.sleep_rules is None:
            levels = {
                model: process.sleep_level
                for model, process in self._processes.items()
                if isinstance(process, SleepingProcess) and process.sleep_level is not None
            }
            if levels:
                planner.sleep_rules = SleepRules(levels=levels)
        self._leases = {model: Lease(model, process) for model, process in self._processes.items()}
        self._ids = 0
        self._closer: asyncio.Task[None] | None = None
        if scheduler is None:
            from swapcore.scheduling.fifo import FIFOScheduler

            scheduler = FIFOScheduler
        self._effects = RouterEffects(self)
        self._scheduler = scheduler(planner, self._effects)
        self._next_deadline = getattr(self._scheduler, "next_deadline", None)
        self._on_tick = getattr(self._scheduler, "on_tick", None)

    @property
    def planner(self) -> SwapPlanner:
        """The eviction policy (read it; calling its hooks is the scheduler's job)."""
        return self._planner

    @property
    def costs(self) -> SwapCosts:
        """The learned swap costs: every cold load, wake, stop and sleep measured, per model."""
        return self._costs

    def add_listener(self, listener: Callable[[RouterEvent], None]) -> Callable[[], None]:
        """Send every later event to ``listener`` too; return a function that removes it.

        Listeners are called after the constructor's ``on_event``, in the
        order they were added, on the run loop; one that raises is logged and
        never stops the others or the router. Adding one to a running router
        is allowed: it sees the events from then on. Removing twice is harmless.
        """
        if not callable(listener):
            raise ConfigError(f"listener: must be callable, got {type(listener).__name__}")
        self._listeners.append(listener)
        if self._status == RUNNING and not self._seen:
            self._seen = {model: p.state for model, p in self._processes.items()}
        self._rebuild_on_event()

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
                self._rebuild_on_event()

        return remove

    async def __aenter__(self) -> Self:
        """Start the run loop; a router can be entered once (else :class:`RouterNotRunning`)."""
        if self._status != NEW:
            raise RouterNotRunning("a BaseRouter can be entered only once")
        self._loop = asyncio.get_running_loop()
        self._status = RUNNING
        self._start_run_loop()
        if self._on_event is not None:
            self._seen = {model: p.state for model, p in self._processes.items()}
        for model in self._idle_ttl:
            self._maybe_arm_ttl(model)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Shut the router down (see :meth:`shutdown`)."""
        await self.shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Refuse new requests, fail every waiting one, stop every process; idempotent.

        Waiting and queued requests get :class:`~swapcore.RouterShutdown`;
        swap tasks are cancelled; every process is stopped in parallel (with
        ``timeout``, or each model's unload timeout); then every remaining
        router task is cancelled and awaited. Returns when all of that is
        done: no task of the router outlives it. Later and concurrent calls
        wait for the first one (whose ``timeout`` wins). A router never
        entered is just marked closed. Cancelling the caller does not stop
        the shutdown.
        """
        if self._status == NEW:
            self._status = CLOSED
        if self._closer is None:
            if self._status == CLOSED:
                return
            assert self._loop is not None
            self._closer = self._loop.create_task(self._close(timeout))
        await asyncio.shield(self._closer)

    def acquire(
        self,
        model: str,
        *,
        priority: int | None = None,
        on_position: Callable[[int], object] | None = None,
        lease_timeout: float | None = None,
    ) -> AbstractAsyncContextManager[Lease]:
        """Wait until ``model`` is ready and yours: ``async with router.acquire(m) as lease``.

        Entering returns a :class:`Lease` once the scheduler grants the
        request (on the run loop's next turn when the model is ready and
        idle enough: the fast path); leaving ends the request
        (its in-flight count drops), also on an exception. ``priority``
        overrides the model's priority; ``on_position(n)`` is called with the
        1-based queue position whenever it changes (exceptions are logged).

        ``lease_timeout`` (seconds, finite and positive; None = the router's
        ``lease_timeout``) bounds the lease: once it has been held that long
        since its grant, the router takes the model back (its in-flight count
        drops, once), emits :class:`~swapcore.events.RequestExpired`, logs a
        warning and cancels the task that entered the block; leaving the
        block then raises :class:`~swapcore.LeaseExpired` instead of that
        ``CancelledError``. A lease never holds its model longer than
        ``lease_timeout`` plus one event-loop turn. A block released in time
        is unaffected; a cancellation from elsewhere stays a
        ``CancelledError``. An invalid value raises
        :class:`~swapcore.ConfigError` at once.

        Raises :class:`~swapcore.ModelNotFound`,
        :class:`~swapcore.ConcurrencyLimitExceeded`,
        :class:`~swapcore.SwapFailed` (the process error as ``__cause__``),
        :class:`~swapcore.ModelUnloaded`, :class:`~swapcore.RouterShutdown`,
        :class:`~swapcore.PolicyError` (a planner or scheduler hook failed for
        this request), :class:`~swapcore.LeaseExpired` (at the block's exit),
        or :class:`RouterNotRunning` before the router was entered.
        Cancellation is exact: a caller cancelled while waiting is withdrawn
        before any other event (it never triggers a load); one cancelled
        after its grant but before resuming gives the grant back.
        """
        if lease_timeout is not None:
            positive_finite("lease_timeout", lease_timeout)
        return _Acquisition(self, model, priority, on_position, lease_timeout)

    async def preload(self, *models: str) -> None:
        """Load ``models`` one by one through the normal swap path (acquire, then release).

        Unknown models raise :class:`~swapcore.ModelNotFound` before anything
        loads; a failing load raises as ``acquire`` would. With the default
        planner a later model may evict an earlier one.
        """
        self._check_usable()
        for model in models:
            if not self.handles(model):
                raise ModelNotFound(f"model {model!r} is not handled by this router")
        for model in models:
            async with self.acquire(model):
                pass

    async def unload(self, *models: str, timeout: float | None = None) -> None:
        """Stop ``models`` (no models: every handled model); return once they are stopped.

        Requests waiting for them (on their swap or in the queue) get
        :class:`~swapcore.ModelUnloaded` and swaps to them are cancelled.
        Requests already holding a lease are not waited for: their process
        is stopped under them (their work fails in user code; the lease
        still releases normally). With no ``timeout`` each model stops with
        its own unload timeout, models sharing a timeout in parallel,
        shorter timeouts first; an explicit ``timeout`` stops all in
        parallel. Then the scheduler re-examines its queue. Requests for
        these models arriving meanwhile are served by a fresh start after
        the stop, never killed by it. Raises the first process error of a
        failed stop, :class:`~swapcore.ModelNotFound` for an unknown model
        (before anything stops), or :class:`~swapcore.RouterShutdown` when
        shutdown overtakes it. Cancelling the caller does not stop the unload.
        """
        self._check_usable()
        if timeout is not None:
            positive("timeout", timeout)
        targets = tuple(dict.fromkeys(models)) if models else self.models
        for model in targets:
            if not self.handles(model):
                raise ModelNotFound(f"model {model!r} is not handled by this router")
        unload = self._new_unload(targets, timeout, "unload")
        self._post(self._on_unload_event, unload)
        await asyncio.wait((unload.done,))
        error = unload.done.result()
        if error is not None:
            raise error

    @property
    def models(self) -> tuple[str, ...]:
        """Every handled model, in the order the processes were given."""
        if self._retired:
            return tuple(m for m in self._processes if m not in self._retired)
        return tuple(self._processes)

    def handles(self, model: str) -> bool:
        """True when ``model`` has a process in this router."""
        return model in self._processes and model not in self._retired

    def snapshot(self) -> RouterSnapshot:
        """Queued, waiting, in-flight and swapping, per model, from the router's own records."""
        swaps = self._swaps
        queued: dict[str, int] = {}
        waiting: dict[str, int] = {}
        in_queue: list[Ticket] = []
        for ticket in self._pending.values():
            model = ticket.request.model
            if model in swaps:
                waiting[model] = waiting.get(model, 0) + 1
            else:
                queued[model] = queued.get(model, 0) + 1
                in_queue.append(ticket)
        in_queue.sort(key=lambda t: (math.inf if t.position is None else t.position, t.request.id))
        models = {}
        for model in self._processes:
            state = self.model_state(model)
            assert state is not None
            models[model] = ModelSnapshot(
                state=state,
                queued=queued.get(model, 0),
                waiting=waiting.get(model, 0),
                in_flight=self._in_flight.get(model, 0),
                swapping=model in swaps,
            )
        queue = tuple((t.request.id, t.request.model) for t in in_queue)
        return RouterSnapshot(models=models, queue=queue)

    async def _settled(self) -> None:
        """Wait until no router task (swap, stop, unload) or posted event is pending; for tests."""
        while self._tasks or self._backlog or self._dispatching:
            if self._tasks:
                await asyncio.wait(tuple(self._tasks))
            else:
                await asyncio.sleep(0)

    def _submit(
        self,
        model: str,
        priority: int | None,
        on_position: Callable[[int], object] | None,
        lease_timeout: float | None,
    ) -> Ticket:
        status = self._status
        if status == NEW:
            raise RouterNotRunning(
                "acquire() on a router not started: use `async with BaseRouter(...) as router`"
            )
        self._ids += 1
        error: RoutingError | None = None
        if status != RUNNING:
            error = RouterShutdown("the router is shut down")
        elif model not in self._processes or model in self._retired:
            error = ModelNotFound(f"model {model!r} is not handled by this router")
        if error is not None:  # answered before the run loop
            if self._on_event is not None:
                self._emit(RequestRejected(clock(), model, self._ids, error))
            raise error
        request = Request(model, id=self._ids, arrived=clock(), priority=priority)
        if lease_timeout is None:
            lease_timeout = self._lease_timeout
        ticket = Ticket(self, request, on_position, lease_timeout)
        self._post(self._on_request_event, ticket)
        return ticket

    def _on_request_event(self, ticket: Ticket) -> None:
        request = ticket.request
        model = request.model
        if ticket.done() or self._status != RUNNING:  # left, or shutdown, while in the backlog
            self._fail_ticket(ticket, RouterShutdown("the router is shutting down"))
            return
        if self._retired and model in self._retired:  # removed by a reconfiguration meanwhile
            self._fail_ticket(
                ticket, ModelNotFound(f"model {model!r} is not handled by this router")
            )
            return
        self._pending[request] = ticket
        self._waiting[model] = self._waiting.get(model, 0) + 1
        if self._idle_ttl and model in self._idle_ttl:
            self._activity[model] = self._activity.get(model, 0) + 1
            handle = self._ttl_handles.pop(model, None)
            if handle is not None:
                handle.cancel()
        if self._on_event is not None:
            self._observe(model)
        try:
            self._scheduler.on_request(request)
        except Exception as exc:
            error = self._scheduler_failed(f"on_request(request {request.id} for {model!r})", exc)
            if ticket.status == PENDING:  # a scheduler bug must not leave the caller hanging
                self._forget(ticket)
                self._fail_ticket(ticket, error)
                self._withdraw(request)

    def _on_cancel_event(self, ticket: Ticket) -> None:
        if ticket.status != PENDING or ticket.request not in self._pending:
            return  # resolved meanwhile (the grant found the caller gone), or never submitted
        model = self._forget(ticket)
        ticket.status = GONE
        self._withdraw(ticket.request)
        if self._on_event is not None:
            self._emit(RequestCancelled(clock(), model, ticket.request.id))
        if self._idle_ttl:
            self._maybe_arm_ttl(model)

    def _grant_serve(self, request: Request, model: str) -> bool:
        ticket = self._pending.get(request)
        lease = self._leases.get(model)
        if ticket is None or lease is None:
            log.error("scheduler granted %r to unknown request %d", model, request.id)
            return False
        self._forget(ticket)
        if ticket.done():  # the caller was cancelled: never count it
            ticket.status = GONE
            if self._on_event is not None:
                self._emit(RequestCancelled(clock(), request.model, request.id))
            if self._idle_ttl:
                self._maybe_arm_ttl(request.model)
            return False
        ticket.status = GRANTED
        ticket.granted = model
        self._in_flight[model] = self._in_flight.get(model, 0) + 1
        ticket.set_result(lease)
        timeout = ticket.lease_timeout
        if timeout is not None:
            ticket.granted_at = clock()
            self._arm_expiry(ticket, timeout)
        if self._on_event is not None:
            now = clock() if timeout is None else ticket.granted_at
            ticket.granted_at = now
            self._emit(RequestGranted(now, model, request.id, now - request.arrived))
        return True

    def _grant_error(self, request: Request, error: RoutingError) -> None:
        ticket = self._pending.get(request)
        if ticket is None:
            log.error("scheduler failed unknown request %d: %s", request.id, error)
            return
        model = self._forget(ticket)
        self._fail_ticket(ticket, error)
        if self._idle_ttl:
            self._maybe_arm_ttl(model)

    def _report_position(self, request: Request, position: int) -> None:
        ticket = self._pending.get(request)
        if ticket is None or ticket.done():
            return
        first = ticket.position is None
        ticket.position = position
        callback = ticket.on_position
        if callback is not None:
            try:
                callback(position)
            except Exception:
                log.exception("on_position callback of request %d raised", request.id)
        if first and self._on_event is not None:
            self._emit(RequestQueued(clock(), request.model, request.id, position))
