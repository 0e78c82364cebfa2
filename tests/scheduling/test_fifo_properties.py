"""FIFOScheduler under random event sequences: a fake driver and invariants after every step.

The driver follows the Effects contract the way BaseRouter does: swaps and
serves finish later (rules pick which and when), callers may leave, models
may be unloaded (released swaps complete before ``on_unload_done``), process
states may change on their own (a crash), the clock moves. Checked after
every step: each request is resolved at most once and never after its
cancellation, in-flight and admission counts match the driver's view,
positions match the queue, every unresolved request is queued or waiting on
a swap; checked at each call: no swap stops a busy model or starts a second
swap to the same target, every swap starts for a live caller. At the end the
driver finishes everything and every request must be resolved (no deadlock).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from test_fifo_doubles import READY, STARTING, STOPPED, Clock, OneAtATime, TablePlanner

from swapcore import (
    FIFOScheduler,
    MaxLoadedPlanner,
    Request,
    RouterShutdown,
    RoutingError,
    SwapPlanner,
)
from swapcore.process import ProcessState
from swapcore.testing.effects import RecordingEffects

if TYPE_CHECKING:
    from swapcore import ArrivalOrderScheduler, CostAwareScheduler

MODELS = "ABCD"
models_st = st.sampled_from(MODELS)


AnyScheduler: TypeAlias = "FIFOScheduler | CostAwareScheduler | ArrivalOrderScheduler"

SETUP = {
    "planner": st.one_of(
        st.just(OneAtATime()),
        st.dictionaries(models_st, st.sets(models_st)).map(TablePlanner),
        st.builds(MaxLoadedPlanner, st.integers(1, 3)),  # records serves: memo resets
    ),
    "priority": st.dictionaries(models_st, st.integers(-2, 2)),
    "limit": st.integers(1, 4),
    "max_wait": st.none() | st.sampled_from([1.0, 5.0]),
    "ready": st.sets(models_st, max_size=2),
}
"""The strategies of the machine's ``setup``; subclasses may add their own."""


class CheckingEffects(RecordingEffects):
    """RecordingEffects that plays process states and checks each call as it happens."""

    def __init__(self, machine: FIFOMachine) -> None:
        super().__init__({model: STOPPED for model in MODELS})
        self.machine = machine
        self.latest: dict[Request, int] = {}

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        m = self.machine
        for victim in evict:
            assert m.scheduler.in_flight(victim) == 0, f"swap to {model} stops busy {victim}"
        assert not m.outstanding[model], f"second swap to {model} while one is outstanding"
        waiters = m.scheduler.waiters(model)
        assert waiters and all(w in m.unresolved and w not in m.cancelled for w in waiters)
        super().start_swap(model, evict)
        m.outstanding[model].append(False)  # False: not released
        for victim in evict:
            self.states[victim] = ProcessState.STOPPING
        if self.states[model] is not READY:
            self.states[model] = STARTING

    def _resolve(self, request: Request) -> None:
        m = self.machine
        assert request not in m.cancelled, f"request {request.id} resolved after its cancel"
        assert request in m.unresolved, f"request {request.id} resolved twice"
        m.unresolved.discard(request)
        self.latest.pop(request, None)

    def grant_serve(self, request: Request, model: str) -> bool:
        assert model == request.model
        self._resolve(request)
        taken = super().grant_serve(request, model)
        if taken:
            self.machine.serving[model] += 1
        return taken

    def grant_error(self, request: Request, error: RoutingError) -> None:
        self._resolve(request)
        super().grant_error(request, error)

    def report_position(self, request: Request, position: int) -> None:
        assert request in self.machine.unresolved
        assert self.latest.get(request) != position, "position reported without a change"
        self.latest[request] = position
        super().report_position(request, position)


class FIFOMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)
        self.clock = Clock(0.0)
        self.effects = CheckingEffects(self)
        self.unresolved: set[Request] = set()
        self.cancelled: set[Request] = set()
        self.vanished: list[Request] = []
        self.serving: Counter[str] = Counter()
        self.outstanding: dict[str, list[bool]] = {model: [] for model in MODELS}
        self.unloads: list[frozenset[str]] = []
        self.scheduler: AnyScheduler

    @initialize(**SETUP)
    def setup(
        self,
        planner: SwapPlanner,
        priority: dict[str, int],
        limit: int,
        max_wait: float | None,
        ready: set[str],
    ) -> None:
        for model in ready:
            self.effects.states[model] = READY
        self.scheduler = self.build(planner, priority=priority, limit=limit, max_wait=max_wait)

    def build(
        self, planner: SwapPlanner, *, priority: dict[str, int], limit: int, max_wait: float | None
    ) -> AnyScheduler:
        """The scheduler under test; subclasses drive other schedulers with the same rules."""
        return FIFOScheduler(
            planner,
            self.effects,
            priority=priority,
            default_concurrency_limit=limit,
            max_wait=max_wait,
            clock=self.clock,
        )

    # -- arrivals and callers -----------------------------------------------------

    @rule(model=st.sampled_from([*MODELS, "Z"]), priority=st.none() | st.integers(-2, 2))
    def request(self, model: str, priority: int | None) -> None:
        request = Request(model, id=next(self.ids), arrived=self.clock.now, priority=priority)
        self.unresolved.add(request)
        self.scheduler.on_request(request)

    @precondition(lambda self: self.unresolved)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(sorted(self.unresolved, key=lambda r: r.id)))
        self.unresolved.discard(request)
        self.cancelled.add(request)
        self.effects.latest.pop(request, None)
        self.scheduler.on_cancel(request)

    @precondition(lambda self: self.unresolved)
    @rule(data=st.data())
    def caller_vanishes(self, data: st.DataObject) -> None:
        """The caller left; the driver has not delivered the cancel yet."""
        request = data.draw(st.sampled_from(sorted(self.unresolved, key=lambda r: r.id)))
        self.effects.mark_gone(request)
        self.vanished.append(request)

    @precondition(lambda self: self.vanished)
    @rule()
    def deliver_cancel(self) -> None:
        request = self.vanished.pop(0)
        if request in self.unresolved:
            self.unresolved.discard(request)
            self.cancelled.add(request)
            self.effects.latest.pop(request, None)
        self.scheduler.on_cancel(request)  # a no-op once granted

    # -- the driver's work finishing -----------------------------------------------

    @precondition(lambda self: any(self.outstanding.values()))
    @rule(data=st.data(), ok=st.booleans())
    def finish_swap(self, data: st.DataObject, ok: bool) -> None:
        model = data.draw(st.sampled_from([m for m in MODELS if self.outstanding[m]]))
        self._finish_swap(model, ok)

    def _finish_swap(self, model: str, ok: bool) -> None:
        self.outstanding[model].pop(0)
        self.effects.apply_swap(model, ok=ok)
        self.scheduler.on_swap_done(model, None if ok else OSError("load failed"))

    @precondition(lambda self: +self.serving)
    @rule(data=st.data())
    def finish_serve(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(sorted(+self.serving)))
        self.serving[model] -= 1
        self.scheduler.on_serve_done(model)

    @rule(models=st.sets(models_st, min_size=1))
    def unload(self, models: set[str]) -> None:
        for model in models:
            if self.outstanding[model]:
                self.outstanding[model] = [True] * len(self.outstanding[model])
            if self.effects.states[model].is_running:
                self.effects.states[model] = ProcessState.STOPPING
        self.unloads.append(frozenset(models))
        self.scheduler.on_unload(models)

    @precondition(lambda self: self.unloads)
    @rule()
    def unload_done(self) -> None:
        models = self.unloads.pop(0)
        for model in models:  # the router cancels and awaits released swaps first
            while self.outstanding[model] and self.outstanding[model][0]:
                self.outstanding[model].pop(0)
                self.scheduler.on_swap_done(model, OSError("cancelled by unload"))
            self.effects.states[model] = STOPPED
        self.scheduler.on_unload_done(models)

    @rule(model=models_st)
    def crash(self, model: str) -> None:
        """A process stops on its own (crash, operator): the scheduler hears nothing."""
        if self.effects.states[model] is READY:
            self.effects.states[model] = STOPPED

    @rule(dt=st.sampled_from([0.5, 2.0, 6.0]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def tick(self) -> None:
        self.scheduler.on_tick()

    @precondition(lambda self: not self.scheduler.is_shut_down)
    @rule(chance=st.integers(0, 9))
    def shutdown(self, chance: int) -> None:
        if chance == 0:
            self.scheduler.on_shutdown(RouterShutdown("shutting down"))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def counts_match_the_driver(self) -> None:
        pending = Counter(r.model for r in self.unresolved if r.model in MODELS)
        for model in MODELS:
            assert self.scheduler.in_flight(model) == self.serving[model]
            assert self.scheduler.admitted(model) == pending[model] + self.serving[model]

    @invariant()
    def every_unresolved_request_is_queued_or_waiting(self) -> None:
        queued = self.scheduler.queued
        waiting = [w for model in MODELS for w in self.scheduler.waiters(model)]
        assert len(set(queued)) == len(queued)
        assert set(queued) | set(waiting) == self.unresolved
        assert len(queued) + len(waiting) == len(self.unresolved)
        for index, request in enumerate(queued, start=1):
            assert self.effects.latest[request] == index

    @invariant()
    def one_swap_per_target(self) -> None:
        for target in self.scheduler.swaps:
            assert self.outstanding[target] and not self.outstanding[target][-1]

    def _let_time_pass(self) -> bool:
        """Teardown hook: move time on when only the clock can unblock work; True if it did."""
        return False

    def teardown(self) -> None:
        if not hasattr(self, "scheduler"):
            return
        for _ in range(1000):
            if self.unloads:
                self.unload_done()
            elif any(self.outstanding.values()):
                self._finish_swap(next(m for m in MODELS if self.outstanding[m]), True)
            elif +self.serving:
                model = min(+self.serving)
                self.serving[model] -= 1
                self.scheduler.on_serve_done(model)
            elif not self._let_time_pass():
                break
        assert not self.unresolved, f"deadlock: {sorted(r.id for r in self.unresolved)}"
        assert self.scheduler.queued == () and self.scheduler.swaps == {}


TestFIFOProperties = FIFOMachine.TestCase
