"""``RouterStateMachine``: property-test a router, its scheduler and your planner.

A :class:`hypothesis.stateful.RuleBasedStateMachine` that drives a real
:class:`~swapcore.BaseRouter` over :class:`~swapcore.testing.FakeProcess`
models with random legal operations (requests, cancellations, releases,
readiness, start failures, crashes, unloads, time passing) and checks the
router's invariants after every step. Subclass it with your planner::

    class MyPlannerMachine(RouterStateMachine):
        models = ("a", "b", "c")

        def make_planner(self) -> SwapPlanner:
            return MyPlanner()

    TestMyPlanner = MyPlannerMachine.TestCase

Hypothesis rules cannot be ``async`` (hypothesis issue #4107), so the machine
owns a private event loop and runs it inside each rule until nothing is
runnable. The loop's clock is virtual: it moves only when the ``time_passes``
rule (or teardown) says so, which makes timers (idle TTL, stop delays, swap
timeouts) deterministic and keeps every step to a few hundred microseconds.
See ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from swapcore.errors import RouterShutdown, RoutingError
from swapcore.events import (
    RequestCancelled,
    RequestGranted,
    RequestRejected,
    RouterEvent,
    SwapFinished,
    SwapStarted,
)
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.router import BaseRouter, Lease
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.testing.fakes import FakeProcess

__all__ = ["RouterStateMachine", "mutual_evictions"]

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING
_SHUTDOWN = ProcessState.SHUTDOWN

_SETTINGS_APPLIED = "_hypothesis_internal_settings_applied"  # set by @settings on a machine
_SETTLE_TURNS = 2_000  # loop turns a settle may take before it is called a livelock
_CANCEL_TURNS = st.sampled_from((None, None, None, 0, 1, 2, 3, 4, 5, 6))
_PRIORITIES = st.sampled_from((None, None, 0, 5))
_CRASH_TURNS = st.sampled_from((None, None, 0, 1, 2, 3, 4))


def mutual_evictions(planner: SwapPlanner, running: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs ``(x, y)`` of ``running`` that would each evict the other.

    For a *pairwise* planner (whether ``x`` evicts ``y`` does not depend on
    the other running models, as with :class:`~swapcore.GroupPlanner`), the
    swap that loaded the later of two such models stopped the other before
    starting it, so a router must never run both: an empty list is the
    co-residency invariant. Not meaningful for capacity planners (at most N
    models), whose rule involves more than two models at a time.
    """
    models = sorted(set(running))
    pairs = []
    for i, x in enumerate(models):
        for y in models[i + 1 :]:
            if y in planner.eviction_for(x, [y]) and x in planner.eviction_for(y, [x]):
                pairs.append((x, y))
    return pairs


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when told to (``now``).

    It starts at ``time.monotonic()``, the router's request stamps, so a
    scheduler given ``clock=loop.time`` roughly agrees with them.
    """

    _ready: collections.deque[asyncio.Handle]  # CPython's BaseEventLoop internals
    _scheduled: list[asyncio.TimerHandle]

    def __init__(self) -> None:
        super().__init__()
        self.now = time.monotonic()

    def time(self) -> float:
        """The virtual clock (seconds); timers fire when it reaches them."""
        return self.now

    def idle(self) -> bool:
        """Nothing is runnable: no ready callback and no due timer."""
        if self._ready:
            return False
        now = self.now
        return not any(h.when() <= now and not h.cancelled() for h in self._scheduled)

    def next_timer(self) -> float | None:
        """When the earliest pending timer fires, or None."""
        return min((h.when() for h in self._scheduled if not h.cancelled()), default=None)


class _ErrorLog(logging.Handler):
    """Turns every ERROR record of the ``swapcore`` loggers into a violation."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.violations = violations

    def emit(self, record: logging.LogRecord) -> None:
        detail = f" ({record.exc_info[1]!r})" if record.exc_info else ""
        self.violations.append(f"{record.name} logged: {record.getMessage()}{detail}")


class _Watched:
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

    async def ensure_ready(self, timeout: float) -> None:
        await self.fake.ensure_ready(timeout)

    async def stop(self, timeout: float) -> None:
        self._on_stop(self.model)
        await self.fake.stop(timeout)
        self._stopped(self.model)


class _Client:
    """One caller of ``router.acquire``: waits, then holds its lease until released."""

    __slots__ = (
        "cancelled",
        "holding",
        "in_handler",
        "model",
        "number",
        "outcome",
        "priority",
        "release",
        "started",
        "task",
    )

    def __init__(
        self, number: int, model: str, priority: int | None, release: asyncio.Future[None]
    ) -> None:
        self.number = number
        self.model = model
        self.priority = priority
        self.release = release  # resolved by `finish`
        self.task: asyncio.Task[None] | None = None
        self.started = False  # its acquire() was entered (the request was submitted)
        self.outcome: str | None = None  # "granted", "cancelled" or a RoutingError's name
        self.holding = False
        self.cancelled = False  # the machine cancelled its task
        self.in_handler = False  # ... from inside a router event handler

    def __repr__(self) -> str:
        state = "holding" if self.holding else self.outcome or "waiting"
        return f"client{self.number}({self.model!r}, {state})"

    @property
    def waiting(self) -> bool:
        """Its request was submitted and has no outcome yet."""
        return self.started and self.outcome is None

    @property
    def live(self) -> bool:
        """Waiting or holding, and not cancelled yet."""
        return self.task is not None and not self.task.done() and not self.cancelled

    def cancel(self) -> None:
        """Cancel its task (once)."""
        if self.task is not None and not self.cancelled:
            self.cancelled = True
            self.task.cancel()


class RouterStateMachine(RuleBasedStateMachine):
    """Check a router's invariants under random operations; subclass it with your planner.

    **Subclassing API.** Override :meth:`make_planner` (required), and as
    needed :meth:`configure` (draw a per-example configuration),
    :meth:`make_scheduler`, :meth:`make_process`, :meth:`make_idle_ttl`,
    :meth:`make_unload_timeout` and :meth:`check_coresidency` (your
    planner's co-residency rule, given the models whose processes are
    ``READY`` or ``STARTING`` after every step). ``models`` lists the
    handled models (a class attribute, or set it in :meth:`configure`).
    ``concurrency_limit``, ``swap_timeout``, ``slow_stop`` and
    ``idle_ttl_seconds`` configure the defaults. During a run,
    ``self.router``, ``self.planner``, ``self.processes`` (the fakes),
    ``self.loop`` and :meth:`held` are available.

    **Rules.** ``request`` (one to three clients that acquire and hold their
    lease, maybe with a priority; sometimes all cancelled 0-6 rounds of
    ready callbacks later, 0 while the request is in the router's backlog),
    ``finish`` (release a lease), ``cancel`` (a waiting or holding client),
    ``cancel_on_grant`` (at a model's next grant, cancel its waiting clients
    from inside the router), ``mark_ready`` (maybe crashing 0-4 loop turns
    later), ``fail_start`` (the model's next start fails), ``crash``,
    ``unload`` (as a task; no models = all; maybe with a timeout),
    ``time_passes`` (virtual seconds: idle TTLs, slow stops and swap
    timeouts fire) and ``overlap`` (the next action runs only 0-3 loop turns,
    so it interleaves with the one after). ``finish``, ``crash``, ``unload``
    and ``time_passes`` may start a racing request 0-4 loop turns after
    their action. Every action then runs the loop until nothing is runnable
    (unless ``overlap`` said otherwise).

    **Invariants** (after every step): each request resolves at most once
    (one outcome event per request id; one outcome per client); a grant goes
    to a ``READY`` process (or one that crashed after its swap finished); a
    swap never evicts a model with leases held, and no process with leases
    held is ever stopped except by an explicit ``unload`` or the shutdown;
    no swap starts while every caller waiting for its target was cancelled
    (``forbid_loads_for_cancelled``; callers cancelled from inside a router
    handler excepted); ``unload()`` returns only after its models' stops
    returned; no ERROR record on the ``swapcore`` loggers and no unhandled
    error on the loop; queue positions are 1-based; your
    :meth:`check_coresidency`. After a step that settled the
    loop also: in-flight counts equal the leases the clients hold, per model
    (router snapshot, and the scheduler's ``in_flight``/``admitted`` when it
    has them); pending counts equal the waiting clients; queued requests are
    never stuck with nothing left to wake them. **At teardown**: every
    starting model is marked ready and every lease released until all
    clients and unloads are done and no swap is in flight (a bounded number
    of rounds, else a deadlock is reported), every request resolved exactly
    once, all counts back at 0; or, in about half the examples, the router
    is shut down while busy and every waiter must get its answer. After the
    shutdown every process is stopped and no task is left on the loop.

    **Settings.** Each subclass's ``TestCase.settings`` defaults to
    :meth:`default_settings` (no deadline, ``stateful_step_count`` =
    ``step_count``, ``max_examples`` from the active hypothesis profile).
    Override with ``@settings(...)`` on your subclass or by assigning
    ``YourMachine.TestCase.settings``; run it with ``TestX =
    YourMachine.TestCase`` (pytest/unittest) or
    :func:`hypothesis.stateful.run_state_machine_as_test` from a synchronous
    test (the machine runs its own event loop, so not from an ``async`` test).
    """

    models: tuple[str, ...] = ("a", "b", "c", "d")
    step_count: ClassVar[int] = 40
    concurrency_limit: ClassVar[int] = 4
    swap_timeout: ClassVar[float] = 100.0
    slow_stop: ClassVar[float] = 1.0
    idle_ttl_seconds: ClassVar[float] = 20.0
    forbid_loads_for_cancelled: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # hypothesis keeps settings per class (TestCase) and refuses to decorate
        # a subclass of a decorated machine: inherit the nearest decorated
        # ancestor's settings instead, and let this class be decorated again.
        inherited = next(
            (
                base.TestCase.settings
                for base in cls.__mro__[1:]
                if issubclass(base, RouterStateMachine) and vars(base).get(_SETTINGS_APPLIED, False)
            ),
            None,
        )
        setattr(cls, _SETTINGS_APPLIED, False)
        cls.TestCase.settings = cls.default_settings() if inherited is None else inherited

    @classmethod
    def default_settings(cls) -> settings:
        """The settings each subclass starts with (active profile + the values below)."""
        return settings(
            deadline=None,
            stateful_step_count=cls.step_count,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )

    def __init__(self) -> None:
        super().__init__()
        self.loop = _VirtualTimeLoop()
        self._router: BaseRouter | None = None
        self.planner: SwapPlanner | None = None
        self.processes: dict[str, FakeProcess] = {}
        self.abrupt_shutdown = False
        self._clients: list[_Client] = []
        self._unloads: list[asyncio.Task[BaseException | None]] = []
        self._held: collections.Counter[str] = collections.Counter()  # by granted model
        self._pending: collections.Counter[str] = collections.Counter()  # by requested model
        self._unloading: collections.Counter[str] = collections.Counter()
        self._stops_done: collections.Counter[str] = collections.Counter()  # stop() returned
        self._shutting_down = False
        self._outcomes: dict[int, str] = {}  # request id -> outcome event
        self._outcome_counts: collections.Counter[str] = collections.Counter()
        self._swapping: dict[str, tuple[str, ...]] = {}
        self._traps: set[str] = set()
        self._crashed_ready: dict[str, int] = {}  # model -> ready_count when it crashed ready
        self._overlap: int | None = None  # set by the overlap rule for the next action
        self._quiet = True  # the last step ended with the loop settled
        self._violations: list[str] = []
        self.loop.set_exception_handler(self._on_loop_error)
        self._error_log = _ErrorLog(self._violations)
        logging.getLogger("swapcore").addHandler(self._error_log)
        self._failed = False

    # -- hooks ------------------------------------------------------------------

    def configure(self, data: st.DataObject) -> None:
        """Draw this example's configuration (before anything is built); default: nothing.

        Set ``self.models`` here when the models depend on the drawing.
        """

    def make_planner(self) -> SwapPlanner:
        """Return the planner under test (required)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_planner()")

    def make_scheduler(self) -> SchedulerFactory | None:
        """The router's scheduler; default: FIFOScheduler with ``concurrency_limit``."""
        from swapcore.scheduling.fifo import FIFOScheduler

        return functools.partial(FIFOScheduler, default_concurrency_limit=self.concurrency_limit)

    def make_process(self, model: str, index: int) -> FakeProcess:
        """The fake for the ``index``-th model; default: three kinds, by ``index % 3``.

        0: manual readiness (the ``mark_ready`` rule finishes each start);
        1: ready on the next loop turn, stops in ``slow_stop`` virtual seconds;
        2: ready and stopped on the next loop turn.
        """
        kind = index % 3
        return FakeProcess(
            model, auto_ready=kind != 0, stop_delay=self.slow_stop if kind == 1 else 0.0
        )

    def make_idle_ttl(self) -> Mapping[str, float]:
        """The router's ``idle_ttl``; default: ``idle_ttl_seconds`` for every other model."""
        return {m: self.idle_ttl_seconds for i, m in enumerate(self.models) if i % 2 == 1}

    def make_unload_timeout(self) -> float | Mapping[str, float]:
        """The router's ``unload_timeout``; default: half of ``slow_stop`` for every 6th model.

        Those slow stoppers are cut short, and ``unload()`` of several models
        then stops them in two timeout groups, shorter first.
        """
        return {m: self.slow_stop / 2 for i, m in enumerate(self.models) if i % 6 == 1}

    def check_coresidency(self, running: frozenset[str]) -> None:
        """Assert your planner's rule about which models may run together; default: none.

        ``running`` holds the models whose processes are ``READY`` or
        ``STARTING`` after a step (stopping ones excluded). Raise
        ``AssertionError`` on a violation.
        """

    # -- accessors ----------------------------------------------------------------

    @property
    def router(self) -> BaseRouter:
        """The router under test (built by the ``start`` initialize rule)."""
        if self._router is None:
            raise RuntimeError("the router is built by the first (initialize) step")
        return self._router

    def held(self, model: str) -> int:
        """Leases on ``model`` the clients hold right now."""
        return self._held[model]

    # -- driving the loop -----------------------------------------------------------

    async def _idle(self) -> None:
        loop = self.loop
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
            if loop.idle():
                return
        raise AssertionError(f"the event loop never went idle in {_SETTLE_TURNS} turns")

    async def _spin(self, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    def settle(self) -> None:
        """Run the loop until nothing is runnable (the virtual clock stands still)."""
        self.loop.run_until_complete(self._idle())

    def run_turns(self, turns: int) -> None:
        """Run exactly ``turns`` iterations of the loop."""
        if turns:
            self.loop.run_until_complete(self._spin(turns))

    def advance_clock(self, seconds: float) -> None:
        """Move the virtual clock forward (timers fire at the next settle)."""
        self.loop.now += seconds

    # -- the machine's rules ------------------------------------------------------

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """Configure, build the fakes, planner and router, and enter the router."""
        self._guarded(self._start, data)

    def _start(self, data: st.DataObject) -> None:
        self.configure(data)
        self.abrupt_shutdown = data.draw(st.booleans(), label="shut down while busy")
        self.models = tuple(self.models)
        if not self.models:
            raise ValueError("RouterStateMachine needs at least one model")
        # Strategies built once per example: building one costs more than drawing it.
        self._model = st.sampled_from(self.models)
        self._models = st.lists(self._model, min_size=1, max_size=3)
        self._models_to_unload = st.lists(self._model, max_size=2, unique=True)
        self._unload_timeouts = st.sampled_from((None, self.slow_stop / 2))
        self._races = st.none() | st.tuples(st.integers(0, 4), self._model)
        self.processes = {m: self.make_process(m, i) for i, m in enumerate(self.models)}
        self.planner = self.make_planner()
        watched = {
            m: _Watched(m, p, self._on_stop, self._on_stopped) for m, p in self.processes.items()
        }
        self._router = BaseRouter(
            watched,
            self.planner,
            scheduler=self.make_scheduler(),
            swap_timeout=self.swap_timeout,
            unload_timeout=self.make_unload_timeout(),
            idle_ttl=self.make_idle_ttl(),
            on_event=self._on_event,
        )
        self.loop.run_until_complete(self._router.__aenter__())
        self.settle()

    def _draw_race(self, data: st.DataObject) -> tuple[int, str] | None:
        """Maybe a request racing the rule's action: (loop turns after it, model)."""
        return data.draw(self._races, label="then a request (after turns, model)")

    def _then(self, race: tuple[int, str] | None) -> None:
        if race is not None:
            turns, model = race
            self.run_turns(turns)
            self._new_client(model, None)
        self._end_step()

    def _end_step(self) -> None:
        """Settle the loop, or (after ``overlap``) run only a few turns of it."""
        overlap, self._overlap = self._overlap, None
        if overlap is None:
            self.settle()
            self._quiet = True
        else:
            self.run_turns(overlap)
            self._quiet = False

    def _soon(self, hops: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` after ``hops`` more rounds of ready callbacks."""
        if hops:
            self.loop.call_soon(self._soon, hops - 1, callback)
        else:
            self.loop.call_soon(callback)

    @precondition(lambda self: self._overlap is None)
    @rule(turns=st.integers(0, 3))
    def overlap(self, turns: int) -> None:
        """The next action runs only ``turns`` loop turns, so it overlaps the one after it."""
        self._overlap = turns

    @rule(data=st.data())
    def request(self, data: st.DataObject) -> None:
        """One to three clients acquire; optionally all are cancelled after N loop turns."""
        models = data.draw(self._models, label="models")
        priority = data.draw(_PRIORITIES, label="priority")
        cancel_after = data.draw(_CANCEL_TURNS, label="cancel after turns")
        self._guarded(self._request, models, priority, cancel_after)

    def _request(self, models: list[str], priority: int | None, cancel_after: int | None) -> None:
        clients = [self._new_client(m, priority) for m in models]
        if cancel_after is not None:

            def cancel() -> None:
                for client in clients:
                    client.cancel()

            # 0 hops: right after the clients' first step, while their requests
            # are still in the router's backlog.
            self._soon(cancel_after, cancel)
        self._end_step()

    def _holders(self) -> list[_Client]:
        return [c for c in self._clients if c.holding and c.live and not c.release.done()]

    def _has_holders(self) -> bool:
        return bool(self._holders())

    @precondition(_has_holders)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """A client holding a lease releases it."""
        client = data.draw(st.sampled_from(self._holders()))
        self._guarded(self._finish_one, client, self._draw_race(data))

    def _finish_one(self, client: _Client, race: tuple[int, str] | None) -> None:
        client.release.set_result(None)
        self._then(race)

    def _has_live(self) -> bool:
        return any(c.live for c in self._clients)

    @precondition(_has_live)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """Cancel a client that is waiting or holding its lease."""
        client = data.draw(st.sampled_from([c for c in self._clients if c.live]))
        self._guarded(self._cancel_one, client)

    def _cancel_one(self, client: _Client) -> None:
        client.cancel()
        self._end_step()

    def _waiting_models(self) -> list[str]:
        return sorted({c.model for c in self._clients if c.started and c.outcome is None})

    @precondition(lambda self: bool(self._waiting_models()))
    @rule(data=st.data())
    def cancel_on_grant(self, data: st.DataObject) -> None:
        """At the next grant of a model, cancel its waiting clients from inside the router.

        The granted one is cancelled after its grant but before it resumes
        (it must give the grant back); the others while the router is busy.
        """
        self._traps.add(data.draw(st.sampled_from(self._waiting_models())))

    def _startable(self) -> list[str]:
        return [m for m, p in self.processes.items() if p.state is _STARTING and not p.auto_ready]

    @precondition(lambda self: bool(self._startable()))
    @rule(data=st.data())
    def mark_ready(self, data: st.DataObject) -> None:
        """A manually started model finishes its start; it may crash N loop turns later."""
        model = data.draw(st.sampled_from(self._startable()))
        crash_after = data.draw(_CRASH_TURNS, label="crash after turns")
        self._guarded(self._mark_ready, model, crash_after)

    def _mark_ready(self, model: str, crash_after: int | None) -> None:
        self.processes[model].mark_ready()
        if crash_after is not None:
            self.run_turns(crash_after)
            self._crash_process(model)
        self._end_step()

    @rule(data=st.data())
    def fail_start(self, data: st.DataObject) -> None:
        """The model's next start fails (a start in progress keeps its script)."""
        self.processes[data.draw(self._model)].fail_start = 1

    def _crashable(self) -> list[str]:
        return [m for m, p in self.processes.items() if p.state not in (_STOPPED, _SHUTDOWN)]

    @precondition(lambda self: bool(self._crashable()))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A starting, ready or stopping process dies."""
        model = data.draw(st.sampled_from(self._crashable()))
        self._guarded(self._crash, model, self._draw_race(data))

    def _crash(self, model: str, race: tuple[int, str] | None) -> None:
        self._crash_process(model)
        self._then(race)

    def _crash_process(self, model: str) -> None:
        fake = self.processes[model]
        if fake.state is _READY:
            # A grant already decided (its swap-done posted) may find it dead.
            self._crashed_ready[model] = fake.ready_count
        fake.crash()

    @rule(data=st.data())
    def unload(self, data: st.DataObject) -> None:
        """``router.unload(*models, timeout=...)`` as a task (no models = every model)."""
        models = data.draw(self._models_to_unload, label="models")
        timeout = data.draw(self._unload_timeouts, label="timeout")
        self._guarded(self._unload, tuple(models), timeout, self._draw_race(data))

    def _unload(
        self, models: tuple[str, ...], timeout: float | None, race: tuple[int, str] | None
    ) -> None:
        targets = models or self.models
        self._unloading.update(targets)
        self._unloads.append(self.loop.create_task(self._run_unload(models, targets, timeout)))
        self._then(race)

    @rule(seconds=st.sampled_from((1.0, 25.0, 120.0)), data=st.data())
    def time_passes(self, seconds: float, data: st.DataObject) -> None:
        """Virtual time passes: slow stops end, idle TTLs and swap timeouts fire."""
        self._guarded(self._time_passes, seconds, self._draw_race(data))

    def _time_passes(self, seconds: float, race: tuple[int, str] | None) -> None:
        self.advance_clock(seconds)
        self._then(race)  # after 0 turns: in the same loop turn as the timers

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def router_invariants(self) -> None:
        """Counts, outcomes, evictions and co-residency (see the class docstring)."""
        if self._router is None or self._failed:
            return
        self._guarded(self._check_step)

    def _check_step(self) -> None:
        self._raise_violations()
        if self._quiet:
            self._check_counts()
        running = frozenset(
            m for m, p in self.processes.items() if p.state is _READY or p.state is _STARTING
        )
        self.check_coresidency(running)

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
        if snapshot.queue and not self._busy():
            raise AssertionError(
                f"requests are queued ({snapshot.queue}) but nothing is in flight, "
                "swapping, unloading, starting or stopping to wake the scheduler"
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

    # -- teardown -----------------------------------------------------------------

    def teardown(self) -> None:
        """Drain (or shut down while busy), check the end state, close the loop."""
        try:
            if self._router is not None and not self._failed:
                self._guarded(self._wind_down)
        finally:
            self._close_loop()

    def _wind_down(self) -> None:
        if self.abrupt_shutdown:
            self._shutdown()
            self._drain("after the shutdown")
        else:
            self._drain("before the shutdown")
            self._check_idle()
            self._shutdown()
        self._check_resolved()
        self._check_idle()
        for model, fake in self.processes.items():
            assert fake.state is _STOPPED, f"{model!r} is {fake.state.value} after shutdown"
        left = asyncio.all_tasks(self.loop)
        assert not left, f"tasks left after shutdown: {left}"
        self._raise_violations()

    def _drain(self, when: str) -> None:
        """Mark starts ready and release leases until every client and unload is done."""
        limit = 4 * len(self._clients) + 4 * len(self._unloads) + 20
        for _ in range(limit):
            self.settle()
            if self._all_done():
                return
            acted = False
            for model in self._startable():
                self.processes[model].mark_ready()
                acted = True
            for client in self._clients:
                if client.holding and not client.release.done():
                    client.release.set_result(None)
                    acted = True
            if not acted:
                when_next = self.loop.next_timer()
                if when_next is None:
                    raise AssertionError(f"deadlock {when}: {self._describe_waiting()}")
                self.loop.now = max(self.loop.now, when_next)
        raise AssertionError(f"no progress {when} after {limit} rounds: {self._describe_waiting()}")

    def _all_done(self) -> bool:
        return (
            not self._swapping
            and all(c.task is None or c.task.done() for c in self._clients)
            and all(t.done() for t in self._unloads)
        )

    def _describe_waiting(self) -> str:
        waiting = [c for c in self._clients if c.task is not None and not c.task.done()]
        return f"clients still waiting {waiting}; router {self.router.snapshot()}"

    def _shutdown(self) -> None:
        self._shutting_down = True
        task = self.loop.create_task(self.router.shutdown())
        for _ in range(100):
            self.settle()
            if task.done():
                task.result()
                return
            when_next = self.loop.next_timer()
            if when_next is None:
                break
            self.loop.now = max(self.loop.now, when_next)
        raise AssertionError(f"shutdown() did not return: {self.router.snapshot()}")

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

    def _close_loop(self) -> None:
        logging.getLogger("swapcore").removeHandler(self._error_log)
        loop = self.loop
        if loop.is_closed():
            return
        try:
            for _ in range(10):
                tasks = asyncio.all_tasks(loop)
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                self.run_turns(5)
        finally:
            loop.close()

    # -- clients, unloads and callbacks ---------------------------------------------

    def _new_client(self, model: str, priority: int | None) -> _Client:
        client = _Client(len(self._clients), model, priority, self.loop.create_future())
        client.task = self.loop.create_task(self._serve(client))
        self._clients.append(client)
        return client

    async def _serve(self, client: _Client) -> None:
        client.started = True
        self._pending[client.model] += 1
        try:
            acquire = self.router.acquire(
                client.model, priority=client.priority, on_position=self._on_position
            )
            async with acquire as lease:
                self._granted(client, lease)
                try:
                    await client.release
                finally:
                    self._held[lease.model] -= 1
                    client.holding = False
        except RoutingError as exc:
            self._resolve(client, type(exc).__name__)
        except asyncio.CancelledError:
            if client.outcome is None:
                self._resolve(client, "cancelled")
            raise
        except Exception as exc:
            self._violations.append(f"acquire({client.model!r}) raised {exc!r}")

    def _granted(self, client: _Client, lease: Lease) -> None:
        self._resolve(client, "granted")
        client.holding = True
        self._held[lease.model] += 1

    def _resolve(self, client: _Client, outcome: str) -> None:
        if client.outcome is not None:
            self._violations.append(f"{client} resolved twice: then {outcome}")
            return
        client.outcome = outcome
        self._pending[client.model] -= 1

    def _on_position(self, position: int) -> None:
        if position < 1:
            self._violations.append(f"queue position {position} reported (1-based)")

    async def _run_unload(
        self, models: tuple[str, ...], targets: tuple[str, ...], timeout: float | None
    ) -> BaseException | None:
        before = {m: self._stops_done[m] for m in targets}
        try:
            await self.router.unload(*models, timeout=timeout)
        except RoutingError as exc:
            return exc
        finally:
            self._unloading.subtract(targets)
        for model in targets:  # "returns once they are stopped"
            if self._stops_done[model] == before[model]:
                self._violations.append(f"unload{models} returned before {model!r} stopped")
        return None

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An unhandled error reached the event loop (a task's unretrieved exception...)."""
        error = context.get("exception")
        self._violations.append(f"event loop: {context.get('message')} {error!r}")

    def _on_stopped(self, model: str) -> None:
        self._stops_done[model] += 1

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
            # REFERENCE §5: a caller that left must never trigger a load. (A caller
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

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        """Run ``action``; a failure marks the machine failed (teardown then only cleans up)."""
        try:
            action(*args)
        except BaseException:
            self._failed = True
            raise
