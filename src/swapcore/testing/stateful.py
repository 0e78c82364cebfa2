"""``RouterStateMachine``: property-test a router, its scheduler and your planner.

A :class:`hypothesis.stateful.RuleBasedStateMachine` that drives a real
:class:`~swapcore.BaseRouter` over :class:`~swapcore.testing.FakeProcess`
models with random legal operations (requests, cancellations, releases,
readiness, start failures and crashes, unloads, time passing, and, when
asked, expiring leases and failing planner hooks) and checks the router's
invariants after every step. Subclass it with your planner::

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

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import SleepRules
from swapcore.process import ProcessState
from swapcore.router import BaseRouter
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.testing._clients import Client
from swapcore.testing._stateful_checks import Watched
from swapcore.testing._stateful_faults import FaultRules
from swapcore.testing.fakes import FakeProcess

__all__ = ["RouterStateMachine", "mutual_evictions"]

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_SHUTDOWN = ProcessState.SHUTDOWN
_SLEEPING = ProcessState.SLEEPING
_STOPPING = ProcessState.STOPPING

_SETTINGS_APPLIED = "_hypothesis_internal_settings_applied"  # set by @settings on a machine

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


class RouterStateMachine(FaultRules):
    """Check a router's invariants under random operations; subclass it with your planner.

    **Subclassing API.** Override :meth:`make_planner` (required), and as
    needed :meth:`configure` (draw a per-example configuration),
    :meth:`make_scheduler`, :meth:`make_process`, :meth:`make_idle_ttl`,
    :meth:`make_unload_timeout` and :meth:`check_coresidency` (your
    planner's co-residency rule, given the models whose processes are
    ``READY`` or ``STARTING`` after every step). ``models`` lists the
    handled models (a class attribute, or set it in :meth:`configure`).
    ``concurrency_limit``, ``swap_timeout``, ``slow_stop`` and
    ``idle_ttl_seconds`` configure the defaults. Faults: ``lease_timeout``
    (the router's, virtual seconds; default None) and ``lease_timeouts``
    (values each ``request`` draws its own from; default none) make leases
    expire; ``start_retries`` (default 1) is the router's; ``planner_faults
    = True`` wraps the planner in a :class:`~swapcore.testing.FaultyPlanner`
    and adds the ``planner_fault`` rule. Sleep: ``sleepers = True`` makes
    the default fakes sleep when evicted (level 1; every 4th model level 2,
    every 5th unable to sleep; on the slow stoppers of odd index, sleeping
    and waking take ``slow_stop`` virtual seconds) and adds the ``sleep_fault`` rule;
    ``host_sizes`` and ``host_budget`` give the planner's ``sleep_rules``
    their host memory (unless :meth:`make_planner` set rules itself). During
    a run, ``self.router``,
    ``self.planner`` (yours, unwrapped), ``self.faulty`` (the wrapper, or
    None), ``self.processes`` (the fakes), ``self.loop`` and :meth:`held`
    are available.

    **Rules.** ``request`` (one to three clients that acquire and hold their
    lease, maybe with a priority and a lease timeout; sometimes all
    cancelled 0-6 rounds of ready callbacks later, 0 while the request is
    in the router's backlog),
    ``finish`` (release a lease), ``cancel`` (a waiting or holding client),
    ``cancel_on_grant`` (at a model's next grant, cancel its waiting clients
    from inside the router), ``mark_ready`` (maybe crashing 0-4 loop turns
    later), ``fail_start`` (the model's next start fails), ``crash_start``
    (it crashes: retryable), ``planner_fault`` (with ``planner_faults``:
    the next 1-3 calls of a planner hook fail), ``crash``,
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
    grant ends once (one ``RequestReleased`` or ``RequestExpired``); a
    swap never evicts a model with leases held, and no process with leases
    held is ever stopped except by an explicit ``unload`` or the shutdown;
    no swap starts while every caller waiting for its target was cancelled
    (``forbid_loads_for_cancelled``; callers cancelled from inside a router
    handler excepted); ``unload()`` returns only after its models' stops
    returned; no ERROR record on the ``swapcore`` loggers and no unhandled
    error on the loop; queue positions are 1-based; the sleeping models
    (and those falling asleep) never hold more than the host budget; a
    model is never put to sleep with leases held; your
    :meth:`check_coresidency`. After a step that settled the
    loop also: in-flight counts equal the leases the clients hold, per model
    (router snapshot, and the scheduler's ``in_flight``/``admitted`` when it
    has them); pending counts equal the waiting clients; no client holds a
    lease past its lease timeout; queued requests are never stuck with
    nothing left to wake them. **At teardown**: every
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
    lease_timeout: ClassVar[float | None] = None
    lease_timeouts: ClassVar[tuple[float | None, ...]] = ()
    start_retries: ClassVar[int] = 1
    planner_faults: ClassVar[bool] = False
    sleepers: ClassVar[bool] = False
    host_sizes: ClassVar[Mapping[str, float] | None] = None
    host_budget: ClassVar[float | None] = None

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
        self.planner: SwapPlanner | None = None
        self._overlap: int | None = None  # set by the overlap rule for the next action
        self._quiet = True  # the last step ended with the loop settled

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
        slow = self.slow_stop if kind == 1 else 0.0
        if not self.sleepers:
            return FakeProcess(model, auto_ready=kind != 0, stop_delay=slow)
        # Sleepers: level 1, but every 4th model at level 2; every 5th cannot sleep.
        # The slow stoppers of every other index sleep and wake slowly too.
        level = None if index % 5 == 4 else 2 if index % 4 == 3 else 1
        transition = slow if index % 2 else 0.0
        return FakeProcess(
            model,
            auto_ready=kind != 0,
            stop_delay=slow,
            sleep_level=level,
            sleep_delay=transition,
            wake_delay=transition,
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

    # -- driving the loop -----------------------------------------------------------

    def settle(self) -> None:
        """Run the loop until nothing is runnable (the virtual clock stands still)."""
        self.loop.settle()

    def run_turns(self, turns: int) -> None:
        """Run exactly ``turns`` iterations of the loop."""
        self.loop.run_turns(turns)

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
        self._leases = st.sampled_from(self.lease_timeouts) if self.lease_timeouts else None
        self.processes = {m: self.make_process(m, i) for i, m in enumerate(self.models)}
        self.planner = self.make_planner()
        if self.sleepers and self.planner.sleep_rules is None:
            self.planner.sleep_rules = SleepRules(
                levels={
                    m: p.sleep_level for m, p in self.processes.items() if p.sleep_level is not None
                },
                host_memory=dict(self.host_sizes or {}),
                host_budget=self.host_budget,
            )
        watched = {
            m: Watched(m, p, self._on_stop, self._on_stopped) for m, p in self.processes.items()
        }
        self._router = BaseRouter(
            watched,
            self._router_planner(self.planner),
            scheduler=self.make_scheduler(),
            swap_timeout=self.swap_timeout,
            unload_timeout=self.make_unload_timeout(),
            idle_ttl=self.make_idle_ttl(),
            on_event=self._on_event,
            lease_timeout=self.lease_timeout,
            start_retries=self.start_retries,
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
        lease = None if self._leases is None else data.draw(self._leases, label="lease timeout")
        self._guarded(self._request, models, priority, cancel_after, lease)

    def _request(
        self,
        models: list[str],
        priority: int | None,
        cancel_after: int | None,
        lease_timeout: float | None = None,
    ) -> None:
        clients = [self._new_client(m, priority, lease_timeout) for m in models]
        if cancel_after is not None:

            def cancel() -> None:
                for client in clients:
                    client.cancel()

            # 0 hops: right after the clients' first step, while their requests
            # are still in the router's backlog.
            self._soon(cancel_after, cancel)
        self._end_step()

    def _holders(self) -> list[Client]:
        return [c for c in self._clients if c.holding and c.live and not c.release.done()]

    def _has_holders(self) -> bool:
        return bool(self._holders())

    @precondition(_has_holders)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """A client holding a lease releases it."""
        client = data.draw(st.sampled_from(self._holders()))
        self._guarded(self._finish_one, client, self._draw_race(data))

    def _finish_one(self, client: Client, race: tuple[int, str] | None) -> None:
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

    def _cancel_one(self, client: Client) -> None:
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

    @precondition(lambda self: self.sleepers)
    @rule(data=st.data(), which=st.sampled_from(("wake", "sleep")))
    def sleep_fault(self, data: st.DataObject, which: str) -> None:
        """The model's next wake fails (it starts cold), or its next sleep (it is stopped)."""
        fake = self.processes[data.draw(self._model)]
        if which == "wake":
            fake.fail_wake += 1
        else:
            fake.fail_sleep += 1

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
        self._check_host_budget()

    def _check_host_budget(self) -> None:
        """Sleeping models (and those falling asleep) never hold more than the host budget."""
        planner = self.planner
        rules = planner.sleep_rules if planner is not None else None
        if rules is None or rules.host_budget is None:
            return
        asleep = [
            m
            for m, p in self.processes.items()
            if p.state is _SLEEPING or (p.state is _STOPPING and p.falling_asleep)
        ]
        held = rules.held_by(asleep)
        if held > rules.host_budget:
            raise AssertionError(
                f"sleeping models {asleep} hold {held} of host memory, over the budget "
                f"{rules.host_budget}"
            )
