"""The ``RouterStateMachine``'s invariant checks, and the instruments that feed them.

:class:`RouterChecks` watches the router (its events, each process's
``stop()``, the ``swapcore`` loggers and the loop's unhandled errors),
records violations as they happen, and compares the router's and the
scheduler's counts with the clients' books after a step and at the end.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from swapcore.errors import RouterShutdown
from swapcore.events import (
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestRejected,
    RequestReleased,
    RouterEvent,
    SwapFinished,
    SwapStarted,
)
from swapcore.process import ProcessState
from swapcore.testing._clients import ClientBooks
from swapcore.testing.fakes import FakeProcess
from swapcore.testing.faults import INVALID_ANSWER, InjectedFault

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING


class ErrorLog(logging.Handler):
    """Turns every ERROR record of the ``swapcore`` loggers into a violation.

    Except the planner faults the machine injected itself (see ``planner_faults``).
    """

    def __init__(self, violations: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.violations = violations

    def emit(self, record: logging.LogRecord) -> None:
        if _injected(record):
            return
        detail = f" ({record.exc_info[1]!r})" if record.exc_info else ""
        self.violations.append(f"{record.name} logged: {record.getMessage()}{detail}")


def _injected(record: logging.LogRecord) -> bool:
    """A scheduler's log line about a fault a :class:`FaultyPlanner` injected."""
    if record.name not in ("swapcore.scheduling", "swapcore.planners"):
        return False
    if record.exc_info and isinstance(record.exc_info[1], InjectedFault):
        return True
    return INVALID_ANSWER in record.getMessage()


class Watched:
    """A :class:`~swapcore.Process` proxy that reports ``stop()`` calls and returns."""

    __slots__ = ("_on_stop", "_stopped", "fake", "model")

    def __init__(
        self,
        model: str,
        fake: FakeProcess,
        on_stop: Callable[[str], None],
        stopped: Callable[[str], None],
    ) -> None:
        self.model = model
        self.fake = fake
        self._on_stop = on_stop
        self._stopped = stopped

    @property
    def state(self) -> ProcessState:
        return self.fake.state

    @property
    def sleep_level(self) -> int | None:
        return self.fake.sleep_level

    async def ensure_ready(self, timeout: float) -> None:
        await self.fake.ensure_ready(timeout)

    async def sleep(self, timeout: float) -> None:
        self._on_stop(self.model)  # putting a busy model to sleep is as bad as stopping it
        await self.fake.sleep(timeout)

    async def stop(self, timeout: float) -> None:
        self._on_stop(self.model)
        await self.fake.stop(timeout)
        self._stopped(self.model)


class RouterChecks(ClientBooks):
    """The invariants and what they watch (a base of ``RouterStateMachine``)."""

    models: tuple[str, ...]
    forbid_loads_for_cancelled: ClassVar[bool]

    def __init__(self) -> None:
        super().__init__()
        self.processes: dict[str, FakeProcess] = {}
        self._shutting_down = False
        self._outcomes: dict[int, str] = {}  # request id -> outcome event
        self._released: set[int] = set()  # request ids with a RequestReleased or RequestExpired
        self._expired_events = 0
        self._outcome_counts: collections.Counter[str] = collections.Counter()
        self._swapping: dict[str, tuple[str, ...]] = {}
        self._traps: set[str] = set()
        self._crashed_ready: dict[str, int] = {}  # model -> ready_count when it crashed ready
        self.loop.set_exception_handler(self._on_loop_error)
        self._error_log = ErrorLog(self._violations)
        logging.getLogger("swapcore").addHandler(self._error_log)

    # -- after a step and at the end ------------------------------------------------

    def _check_counts(self) -> None:
        """The checks that need a settled loop (every task ran as far as it can)."""
        snapshot = self.router.snapshot()
        in_flight = self._scheduler_count("in_flight")
        admitted = self._scheduler_count("admitted")
        for model, view in snapshot.models.items():
            held, pending = self._held[model], self._pending[model]
            assert view.in_flight == held, (
                f"{model!r}: the router counts {view.in_flight} in flight, "
                f"the clients hold {held} leases"
            )
            assert view.queued + view.waiting == pending, (
                f"{model!r}: the router has {view.queued} queued + {view.waiting} waiting, "
                f"{pending} clients wait"
            )
            if in_flight is not None:
                assert in_flight(model) == held, (
                    f"{model!r}: scheduler in_flight={in_flight(model)}, leases held={held}"
                )
            if admitted is not None:
                assert admitted(model) == held + pending, (
                    f"{model!r}: scheduler admitted={admitted(model)}, "
                    f"leases held + waiting = {held + pending}"
                )
        self._check_lease_bounds()
        if snapshot.queue and not self._busy():
            raise AssertionError(
                f"requests are queued ({snapshot.queue}) but nothing is in flight, "
                "swapping, unloading, starting or stopping to wake the scheduler"
            )

    def _check_lease_bounds(self) -> None:
        """No client has held a lease longer than its lease timeout (on the loop's clock)."""
        default = self.router._lease_timeout
        now = self.loop.time()
        for client in self._clients:
            timeout = default if client.lease_timeout is None else client.lease_timeout
            if client.holding and timeout is not None and now - client.granted_at >= timeout:
                raise AssertionError(
                    f"{client} has held its lease {now - client.granted_at}s, "
                    f"past its lease_timeout of {timeout}s"
                )

    def _scheduler_count(self, name: str) -> Callable[[str], int] | None:
        """The scheduler's ``in_flight(model)``/``admitted(model)`` introspection, if any."""
        count = getattr(self.router._scheduler, name, None)
        return count if callable(count) else None

    def _busy(self) -> bool:
        return bool(
            +self._held
            or self._swapping
            or any(not t.done() for t in self._unloads)
            or any(p.state is _STARTING or p.state is _STOPPING for p in self.processes.values())
        )

    def _raise_violations(self) -> None:
        if self._violations:
            raise AssertionError("; ".join(self._violations))

    def _check_resolved(self) -> None:
        submitted = 0
        for client in self._clients:
            assert client.task is not None and client.task.done(), client
            if client.started:
                submitted += 1
                assert client.outcome is not None, f"{client} never got an outcome"
        assert len(self._outcomes) == submitted, (
            f"{submitted} requests submitted, {len(self._outcomes)} outcome events"
        )
        # A client cancelled after its grant or error was set, before it resumed,
        # sees CancelledError: the router's outcome stands (a grant is given back).
        clients = collections.Counter(c.outcome or "" for c in self._clients if c.started)
        events = self._outcome_counts
        for outcome, count in clients.items():
            if outcome != "cancelled":
                assert events[outcome] >= count, f"{count} clients {outcome}, events: {events}"
        assert events["cancelled"] <= clients["cancelled"], f"clients {clients}, events {events}"
        expired = sum(client.expired for client in self._clients)
        assert expired <= self._expired_events, (
            f"{expired} clients got LeaseExpired, {self._expired_events} RequestExpired events"
        )
        for task in self._unloads:
            error = task.result()
            assert error is None or isinstance(error, RouterShutdown), f"unload raised {error!r}"

    def _check_idle(self) -> None:
        self._raise_violations()
        snapshot = self.router.snapshot()
        assert snapshot.queue == (), f"still queued: {snapshot.queue}"
        for model, view in snapshot.models.items():
            assert (view.in_flight, view.queued, view.waiting, view.swapping) == (
                0,
                0,
                0,
                False,
            ), f"{model!r} not idle at the end: {view}"
        for name in ("in_flight", "admitted"):
            count = self._scheduler_count(name)
            if count is not None:
                for model in self.models:
                    assert count(model) == 0, f"scheduler {name}({model!r}) = {count(model)}"

    # -- as it happens ----------------------------------------------------------------

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An unhandled error reached the event loop (a task's unretrieved exception...)."""
        error = context.get("exception")
        self._violations.append(f"event loop: {context.get('message')} {error!r}")

    def _on_stop(self, model: str) -> None:
        """A process is asked to stop: a busy one only by an unload or the shutdown."""
        if self._shutting_down or self._unloading[model] > 0:
            return
        in_flight = self.router.snapshot().models[model].in_flight
        if in_flight:
            self._violations.append(
                f"{model!r} was stopped with {in_flight} requests in flight "
                f"(swaps in flight: {self._swapping})"
            )

    def _on_event(self, event: RouterEvent) -> None:
        if isinstance(event, (RequestGranted, RequestRejected, RequestCancelled)):
            self._on_outcome(event)
        elif isinstance(event, SwapStarted):
            snapshot = self.router.snapshot()
            for victim in event.evict:
                busy = snapshot.models[victim].in_flight
                if busy:
                    self._violations.append(
                        f"swap to {event.model!r} evicts {victim!r} with {busy} in flight"
                    )
            self._swapping[event.model] = event.evict
            # A caller that left must never trigger a load (llama-swap's rule). (A caller
            # cancelled from inside this very handler cannot be withdrawn in time.)
            waiting = [c for c in self._clients if c.model == event.model and c.waiting]
            if (
                self.forbid_loads_for_cancelled
                and waiting
                and all(c.cancelled and not c.in_handler for c in waiting)
            ):
                self._violations.append(
                    f"swap to {event.model!r} started for cancelled callers only: {waiting}"
                )
        elif isinstance(event, SwapFinished):
            self._swapping.pop(event.model, None)
        elif isinstance(event, (RequestReleased, RequestExpired)):
            # A grant ends once: released by its caller, or taken back at its lease timeout.
            rid = event.request_id
            what = "released" if isinstance(event, RequestReleased) else "expired"
            if self._outcomes.get(rid) != "granted" or rid in self._released or event.held < 0:
                self._violations.append(
                    f"request {rid} {what} {event.model!r} (held {event.held}) after "
                    f"outcome {self._outcomes.get(rid)}, ended before: {rid in self._released}"
                )
            self._released.add(rid)
            if what == "expired":
                self._expired_events += 1

    def _on_outcome(self, event: RequestGranted | RequestRejected | RequestCancelled) -> None:
        if isinstance(event, RequestGranted):
            outcome = "granted"
            fake = self.processes[event.model]
            state = fake.state
            crashed = state is _STOPPED and self._crashed_ready.get(event.model) == fake.ready_count
            if state is not _READY and not crashed:
                self._violations.append(
                    f"request {event.request_id} granted {event.model!r} while {state.value}"
                )
            if event.model in self._traps:
                self._traps.discard(event.model)
                for client in self._clients:
                    if client.model == event.model and client.outcome is None:
                        client.in_handler = True
                        client.cancel()
        elif isinstance(event, RequestRejected):
            outcome = type(event.error).__name__
        else:
            outcome = "cancelled"
        previous = self._outcomes.get(event.request_id)
        if previous is not None:
            self._violations.append(
                f"request {event.request_id} resolved twice: {previous}, then {outcome}"
            )
            return
        self._outcomes[event.request_id] = outcome
        self._outcome_counts[outcome] += 1
